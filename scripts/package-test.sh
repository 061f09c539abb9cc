#!/usr/bin/env bash
# The Debian package, end to end:
#  1. builds it (dpkg-buildpackage -b) from a copy of the tree under build-package/, so
#     the repository stays clean; the .deb lands in build-package/;
#  2. runs lintian on it (any E: fails);
#  3. makes a fresh Debian 12 root with mmdebstrap (from the Debian archive; the tarball
#     is cached under /var/cache/rngmux-test-root, one a day and set of dependencies),
#     installs the .deb into it with apt, and checks where its files went and that the
#     user rngmux exists;
#  4. runs the installed daemon in that root as rngmux.service would (as the user
#     rngmux, with the packaged configuration, /run/rngmux its own), in private mount,
#     PID and network namespaces, and fetches bytes from it inside the root over the
#     packaged TCP and unix endpoints and asks it for its status on the control socket;
#  5. if the daemon adopts sockets passed by systemd, does the same under
#     systemd-socket-activate with the sockets and names of rngmux.socket.
# With --reuse, a package already in build-package/ is tested instead of building one.
# On a failure the daemon's log is printed. Needs root (chroot, namespaces) and network
# access to the Debian archive the first time a day.
#
# Ends with "N passed, N failed, N skipped" (each step counts once). Environment:
# RNGMUX_PACKAGE_MIRROR (default http://deb.debian.org/debian),
# RNGMUX_TEST_ROOT_CACHE (default /var/cache/rngmux-test-root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

OUT="$REPO/build-package"
MIRROR="${RNGMUX_PACKAGE_MIRROR:-http://deb.debian.org/debian}"
CACHE="${RNGMUX_TEST_ROOT_CACHE:-/var/cache/rngmux-test-root}"
SUITE=bookworm

passed=0
failed=0
skipped=0
skips=()
step() {
  local name="$1"
  shift
  echo
  echo "--- package: ${name}"
  if "$@"; then
    echo "--- package: ${name}: ok"
    passed=$((passed + 1))
  else
    echo "--- package: ${name}: FAILED"
    failed=$((failed + 1))
    return 1
  fi
}
finish() {
  [[ ${#skips[@]} -eq 0 ]] || printf 'skipped: %s\n' "${skips[@]}"
  echo "${passed} passed, ${failed} failed, ${skipped} skipped"
  [[ $failed -eq 0 ]] || exit 1
  exit 0
}

if [[ "$(id -u)" -ne 0 ]]; then
  echo "package-test: needs root (chroot, namespaces, mmdebstrap)" >&2
  failed=1
  finish
fi

# 1. Build, from a copy of the tracked and new (not ignored) files.
build_package() {
  rm -rf "$OUT"
  mkdir -p "$OUT/src"
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"; done |
    tar -c --null -T - -f - | tar -x -C "$OUT/src"
  (cd "$OUT/src" && dpkg-buildpackage -b -us -uc -j"${JOBS:-2}") >"$OUT/build.log" 2>&1 || {
    tail -n 60 "$OUT/build.log"
    return 1
  }
  DEB="$(ls "$OUT"/rngmux_*.deb)"
  echo "built $DEB"
  dpkg-deb --info "$DEB" | sed -n '/Package:/,$p'
}

# 2. lintian: errors fail, the rest is shown.
run_lintian() {
  local log="$OUT/lintian.log"
  lintian --fail-on error --display-info "$OUT"/rngmux_*.changes >"$log" 2>&1 || {
    cat "$log"
    return 1
  }
  cat "$log"
}

# 3. A fresh root with the package's dependencies, then the package by apt. The
# dependencies are installed when the root is made (one cached tarball per day and
# dependency list), so apt installs the .deb without going to the network.
deb_dependencies() {
  # "libc6 (>= 2.34), systemd | systemd-sysusers" -> "libc6,systemd"
  dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/[[:space:]]//g' |
    grep -v '^$' | sort -u | paste -sd, -
}

ROOT=""
make_root() {
  local deps key tarball
  deps="$(deb_dependencies)"
  key="$(date -u +%Y%m%d)-$(printf '%s' "$SUITE $MIRROR $deps" | sha256sum | cut -c1-12)"
  tarball="$CACHE/$SUITE-$key.tar"
  mkdir -p "$CACHE"
  if [[ ! -s "$tarball" ]]; then
    echo "making $tarball with $deps"
    find "$CACHE" -name "$SUITE-*.tar" -mtime +2 -delete || true
    rm -rf "$tarball.tmp"
    mmdebstrap --quiet --format=tar --variant=apt --include="$deps" "$SUITE" "$tarball.tmp" \
      "$MIRROR" || return 1
    mv "$tarball.tmp" "$tarball"
  else
    echo "using cached $tarball"
  fi
  ROOT="$(mktemp -d /tmp/rngmux-root.XXXXXX)"
  tar -x -C "$ROOT" -f "$tarball"
  cp "$DEB" "$ROOT/tmp/"
  chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q "/tmp/$(basename "$DEB")"
}

check_installed() {
  local ok=0 f
  for f in /usr/bin/rngmux /etc/rngmux/rngmux.toml \
    /lib/systemd/system/rngmux.service /lib/systemd/system/rngmux.socket \
    /usr/lib/sysusers.d/rngmux.conf /lib/udev/rules.d/60-rngmux.rules \
    /usr/share/man/man8/rngmux.8.gz /usr/share/man/man5/rngmux.toml.5.gz \
    /usr/share/doc/rngmux/copyright; do
    if [[ -e "$ROOT$f" ]]; then echo "present: $f"; else
      echo "MISSING: $f"
      ok=1
    fi
  done
  if ! grep -qx "/etc/rngmux/rngmux.toml" "$ROOT/var/lib/dpkg/info/rngmux.conffiles"; then
    echo "/etc/rngmux/rngmux.toml is not a conffile"
    ok=1
  fi
  # The postinst made the user (systemd-sysusers), with no login.
  local entry
  entry="$(chroot "$ROOT" getent passwd rngmux || true)"
  echo "passwd: $entry"
  [[ "$entry" == rngmux:*:/nonexistent:/usr/sbin/nologin ]] || {
    echo "user rngmux missing or wrong"
    ok=1
  }
  chroot "$ROOT" getent group rngmux >/dev/null || {
    echo "group rngmux missing"
    ok=1
  }
  # Not enabled at install: no links in the root's wants directories.
  if compgen -G "$ROOT/etc/systemd/system/*.wants/rngmux.*" >/dev/null; then
    echo "a unit was enabled at install:" "$ROOT"/etc/systemd/system/*.wants/rngmux.*
    ok=1
  fi
  # The installed unit starts the installed binary with the installed configuration.
  grep -qx 'ExecStart=/usr/bin/rngmux serve --config /etc/rngmux/rngmux.toml' \
    "$ROOT/lib/systemd/system/rngmux.service" || {
    echo "ExecStart of the installed unit is not /usr/bin/rngmux with the packaged config"
    ok=1
  }
  chroot "$ROOT" rngmux check-config --config /etc/rngmux/rngmux.toml >/dev/null || ok=1
  return $ok
}

# 4. and 5. The daemon and a client inside the root. The namespaces end with the
# command, and with them the mounts and the processes.
in_root() {
  # $1: a shell script run inside the root, after the namespace setup below.
  unshare --mount --pid --fork --net --mount-proc="$ROOT/proc" -- bash -c '
    set -e
    root="$1"
    ip link set lo up
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    mount -t tmpfs -o mode=0755 tmpfs "$root/run"
    # RuntimeDirectory=rngmux
    install -d -m 0755 -o "$(chroot "$root" id -u rngmux)" -g "$(chroot "$root" id -g rngmux)" \
      "$root/run/rngmux"
    exec chroot "$root" /bin/bash -c "$2"
  ' in-root "$ROOT" "$1"
}

# Runs inside the root: start DAEMON_CMD as the user rngmux, wait for its endpoints,
# fetch from each, ask for status; print the log on failure.
CLIENT_SCRIPT='
set -u
log=/tmp/rngmux.log
as_rngmux() { setpriv --reuid=rngmux --regid=rngmux --init-groups --no-new-privs -- "$@"; }
# (not through the function: a function in the background is a subshell, not the daemon)
setpriv --reuid=rngmux --regid=rngmux --init-groups --no-new-privs -- $DAEMON_CMD >"$log" 2>&1 &
pid=$!
fail() { echo "FAILED: $*"; echo "--- daemon log:"; cat "$log"; kill $pid 2>/dev/null; exit 1; }
# Socket-activated (ACTIVATED=1), the daemon starts at the first client: only the
# sockets exist before it.
wait_socket() {
  for _ in $(seq 1 100); do
    [ -S "$1" ] && return 0
    kill -0 $pid 2>/dev/null || fail "the daemon exited"
    sleep 0.1
  done
  fail "no $1 after 10 s"
}
wait_socket /run/rngmux/egd.sock
[ "${ACTIVATED:-0}" = 1 ] || wait_socket /run/rngmux/control.sock
stat -c "%n %a %U:%G" /run/rngmux/egd.sock
for endpoint in tcp:127.0.0.1:1024 unix:/run/rngmux/egd.sock; do
  n=$(as_rngmux timeout 30 rngmux fetch "$endpoint" --bytes 4096 --timeout 20 | wc -c)
  echo "fetched $n bytes from $endpoint"
  [ "$n" = 4096 ] || fail "fetch from $endpoint gave $n bytes, not 4096"
done
wait_socket /run/rngmux/control.sock
if [ "${ACTIVATED:-0}" = 1 ]; then
  for address in tcp:127.0.0.1:1024 unix:/run/rngmux/egd.sock; do
    grep -q "endpoint listen $address.* adopts the socket systemd passed: .*($address)" "$log" ||
      fail "socket $address not adopted by its endpoint"
  done
  echo "both sockets of rngmux.socket adopted by their endpoints"
fi
as_rngmux timeout 10 rngmux status >/tmp/status.txt 2>&1 || { cat /tmp/status.txt; fail "rngmux status"; }
sed -n 1,6p /tmp/status.txt
grep -q "^Endpoints" /tmp/status.txt || fail "status shows no endpoints"
kill -TERM $pid
for _ in $(seq 1 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "the daemon did not stop on SIGTERM"
wait $pid; rc=$?
[ $rc = 0 ] || fail "the daemon exited $rc on SIGTERM"
echo "--- daemon log:"; cat "$log"
'

serve_installed() {
  in_root "DAEMON_CMD='rngmux serve --config /etc/rngmux/rngmux.toml'; $CLIENT_SCRIPT"
}

# systemd-socket-activate with the sockets of the installed rngmux.socket, named as
# systemd names them: every socket of a unit gets the unit's FileDescriptorName= (the
# last one given), or the unit's name when it sets none.
serve_socket_activated() {
  local unit="$ROOT/lib/systemd/system/rngmux.socket" listen=() names=() name
  while IFS= read -r line; do listen+=("-l" "$line"); done < <(sed -n 's/^ListenStream=//p' "$unit")
  name="$(sed -n 's/^FileDescriptorName=//p' "$unit" | tail -n1)"
  name="${name:-rngmux.socket}"
  [[ ${#listen[@]} -eq 4 ]] || {
    echo "rngmux.socket: expected 2 ListenStream=" >&2
    return 1
  }
  names=("$name" "$name")
  local fdnames
  fdnames="$(IFS=:; echo "${names[*]}")"
  in_root "ACTIVATED=1; DAEMON_CMD='systemd-socket-activate ${listen[*]} --fdname=$fdnames rngmux serve --config /etc/rngmux/rngmux.toml'; $CLIENT_SCRIPT"
}

cleanup() {
  if [[ -n "$ROOT" && -d "$ROOT" ]]; then
    rm -rf --one-file-system "$ROOT"
  fi
}
trap cleanup EXIT

if [[ "${1:-}" == "--reuse" && -n "$(ls "$OUT"/rngmux_*.deb 2>/dev/null)" ]]; then
  DEB="$(ls "$OUT"/rngmux_*.deb)"
  echo "--- package: reusing $DEB (--reuse)"
else
  step "build (dpkg-buildpackage -b)" build_package || finish
fi
step "lintian" run_lintian || true
step "install into a fresh $SUITE root" make_root || finish
step "installed files, conffile, user rngmux" check_installed || true
step "installed daemon serves a client in the root" serve_installed || true
step "socket activation with rngmux.socket's sockets" serve_socket_activated || true
finish
