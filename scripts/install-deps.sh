#!/usr/bin/env bash
# Installs the Debian 12 packages rngmux needs to build and test, and unpacks the kernel
# of the QEMU test guest (tests/guest/build-guest.sh) into a cache directory. Idempotent:
# only missing packages are installed, `apt-get update` runs only if something is
# missing, and the kernel is downloaded only when Debian has a newer one.
set -euo pipefail

PACKAGES=(
  build-essential cmake g++ clang-14 clang-format libclang-rt-14-dev git
  libasio-dev libcli11-dev libssl-dev libgtest-dev googletest nlohmann-json3-dev
  libtomlplusplus-dev
  python3 rng-tools5 ent ekeyd-egd-linux socat iproute2 openssl
  pkg-config libftdi1-dev strace libseccomp-dev
  scdoc man-db
  debhelper dpkg-dev lintian mmdebstrap systemd util-linux
  prometheus
  qemu-system-x86 busybox-static cpio kmod xz-utils zstd
)

# The guest kernel: Debian's cloud kernel, downloaded with `apt-get download` and unpacked
# with `dpkg-deb -x` under this directory (never installed: nothing lands in /boot or
# /lib/modules of this machine). build-guest.sh reads $GUEST_KERNEL_DIR/current.
GUEST_KERNEL_DIR="${RNGMUX_GUEST_KERNEL_DIR:-/var/cache/rngmux-test-guest/kernel}"
GUEST_KERNEL_META=linux-image-cloud-amd64

guest_kernel_package() {
  apt-cache depends "$GUEST_KERNEL_META" 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[^ ]*-cloud-amd64\)$/\1/p' | head -n1
}

guest_kernel() {
  local pkg
  pkg="$(guest_kernel_package)"
  if [[ -z "$pkg" ]]; then
    apt-get update -q
    pkg="$(guest_kernel_package)"
  fi
  if [[ -z "$pkg" ]]; then
    echo "install-deps: error: apt-cache cannot resolve $GUEST_KERNEL_META" >&2
    return 1
  fi
  local dest="$GUEST_KERNEL_DIR/$pkg"
  if [[ ! -f "$dest/.unpacked" ]]; then
    echo "install-deps: downloading $pkg for the test guest into $dest (not installed)"
    local work
    work="$(mktemp -d)"
    chmod 0755 "$work" # apt-get download drops privileges to _apt
    if ! (cd "$work" && apt-get download -q "$pkg"); then
      apt-get update -q
      (cd "$work" && apt-get download -q "$pkg") || { rm -rf "$work"; return 1; }
    fi
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"
    dpkg-deb -x "$work"/*.deb "$dest.tmp"
    rm -rf "$work"
    local kver
    kver="$(basename "$(ls -d "$dest.tmp"/lib/modules/*-cloud-amd64 | head -n1)")"
    # The package ships no modules.dep (its postinst makes it): make it here.
    depmod -b "$dest.tmp" "$kver"
    touch "$dest.tmp/.unpacked"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
  fi
  ln -sfn "$pkg" "$GUEST_KERNEL_DIR/current"
  echo "install-deps: guest kernel: $GUEST_KERNEL_DIR/current -> $pkg"
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
elif [[ "$(id -u)" -ne 0 ]]; then
  echo "install-deps: error: missing packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
else
  echo "install-deps: installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [[ -f "$GUEST_KERNEL_DIR/current/.unpacked" && "$(id -u)" -ne 0 ]]; then
  echo "install-deps: guest kernel present in $GUEST_KERNEL_DIR/current (not root: not checked for updates)"
elif [[ "$(id -u)" -ne 0 ]]; then
  echo "install-deps: error: no guest kernel in $GUEST_KERNEL_DIR/current; run as root" >&2
  exit 1
else
  guest_kernel
fi

# The group QEMU's device nodes belong to on a Debian host (udev makes it); the example
# configuration and the man pages use it in allow-group=, and the tests validate them.
if ! getent group kvm >/dev/null; then
  if [[ "$(id -u)" -eq 0 ]]; then
    echo "install-deps: adding the system group kvm (as udev does on a Debian host)"
    groupadd --system kvm
  else
    echo "install-deps: warning: no group kvm; the configuration examples that name it will not validate" >&2
  fi
fi
