#!/usr/bin/env bash
# Builds a tiny Linux guest that reads /dev/hwrng (virtio-rng) and reports on its serial console.
#
#   tests/guest/build-guest.sh OUTDIR
#
# Installs nothing: scripts/install-deps.sh installs qemu-system-x86, busybox-static and
# cpio, and unpacks Debian's cloud kernel (linux-image-cloud-amd64) with `dpkg-deb -x` into
# ${RNGMUX_GUEST_KERNEL_DIR:-/var/cache/rngmux-test-guest/kernel}/current, outside the
# host's /boot and /lib/modules. This script fails, naming the step, if any is missing.
# Produces OUTDIR/vmlinuz and OUTDIR/initramfs.cpio.gz, and OUTDIR/guest.stamp describing
# what they were built from; a second run with the same kernel, busybox and script does nothing.
#
# The guest's /init loads the virtio-rng modules, waits (bounded) for virtio_rng to become the
# current hwrng, reads N bytes (kernel command line rngbytes=N, default 65536) from /dev/hwrng,
# prints ONE line
#     RNGMUX-RESULT bytes=N ns=T sha256=HEX head=HEX32 tail=HEX32 ... kthread_switches=K
# (or RNGMUX-RESULT error=WORD ...) and powers off. Boot it with:
#   qemu-system-x86_64 -accel tcg -m 256 -nodefaults -display none -serial stdio -no-reboot \
#     -kernel OUTDIR/vmlinuz -initrd OUTDIR/initramfs.cpio.gz \
#     -append 'console=ttyS0 quiet rngbytes=32768' \
#     -chardev socket,id=c0,... -object rng-egd,id=rng0,chardev=c0 -device virtio-rng-pci,rng=rng0
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
OUTDIR=$1
SCRIPT=$(readlink -f "$0")
PACKAGES=(qemu-system-x86 busybox-static cpio)
KERNEL_ROOT=${RNGMUX_GUEST_KERNEL_DIR:-/var/cache/rngmux-test-guest/kernel}/current

log() { echo "build-guest: $*" >&2; }

# --- inputs ---------------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    case "$status" in
        ii*) ;;
        *) missing+=("$p") ;;
    esac
done
if [ ${#missing[@]} -gt 0 ]; then
    log "missing packages ${missing[*]}: run scripts/install-deps.sh"
    exit 1
fi

KERNEL=$(ls -1 "$KERNEL_ROOT"/boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$KERNEL" ] || [ ! -r "$KERNEL" ]; then
    log "no $KERNEL_ROOT/boot/vmlinuz-*-cloud-amd64: run scripts/install-deps.sh (it unpacks the guest kernel there)"
    exit 1
fi
KVER=${KERNEL##*/vmlinuz-}
MODDIR=$KERNEL_ROOT/lib/modules/$KVER
BUSYBOX=/bin/busybox
for f in "$MODDIR/modules.dep" "$BUSYBOX"; do
    [ -r "$f" ] || { log "missing $f (run scripts/install-deps.sh)"; exit 1; }
done

stamp_text() {
    echo "kernel=$KERNEL $(stat -c '%s %Y' "$KERNEL")"
    echo "modules.dep=$(sha256sum < "$MODDIR/modules.dep" | cut -d' ' -f1)"
    echo "busybox=$(sha256sum < "$BUSYBOX" | cut -d' ' -f1)"
    echo "script=$(sha256sum < "$SCRIPT" | cut -d' ' -f1)"
}
STAMP=$(stamp_text)
if [ -f "$OUTDIR/guest.stamp" ] && [ -f "$OUTDIR/vmlinuz" ] && [ -f "$OUTDIR/initramfs.cpio.gz" ] \
        && [ "$(cat "$OUTDIR/guest.stamp")" = "$STAMP" ]; then
    log "up to date: $OUTDIR ($KVER)"
    exit 0
fi

# --- build ----------------------------------------------------------------------------------
mkdir -p "$OUTDIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rngmux-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,tmp,lib/modules}

# busybox: must be static (no libc in the initramfs)
if command -v ldd >/dev/null && ldd "$BUSYBOX" 2>&1 | grep -q '=>'; then
    log "$BUSYBOX is dynamically linked; busybox-static is needed"
    exit 1
fi
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    case "$applet" in busybox) continue ;; esac
    ln -sf busybox "$ROOT/bin/$applet"
done

# modules: virtio_pci, virtio_rng, rng_core and their dependencies, in load order
declare -A MODPATH=()   # normalised name -> path relative to MODDIR
declare -A MODDEPS=()   # normalised name -> space-separated normalised deps
norm() { local b=${1##*/}; b=${b%%.ko*}; echo "${b//-/_}"; }
while IFS= read -r line; do
    mod=${line%%:*}
    deps=${line#*:}
    n=$(norm "$mod")
    MODPATH[$n]=$mod
    d=""
    for dep in $deps; do d+="$(norm "$dep") "; done
    MODDEPS[$n]=$d
done < "$MODDIR/modules.dep"

builtin_has() {
    [ -r "$MODDIR/modules.builtin" ] && sed 's/-/_/g' "$MODDIR/modules.builtin" | grep -q "/$1\.ko"
}

ORDER=()
declare -A SEEN=()
visit() {
    local n=$1
    [ -n "${SEEN[$n]:-}" ] && return 0
    SEEN[$n]=1
    if [ -z "${MODPATH[$n]:-}" ]; then
        if builtin_has "$n"; then
            log "module $n is built into $KVER"
            return 0
        fi
        log "module $n not found for $KVER"
        return 1
    fi
    local dep
    for dep in ${MODDEPS[$n]}; do visit "$dep"; done
    ORDER+=("$n")
}
for want in rng_core virtio_pci virtio_rng; do visit "$want"; done

: > "$ROOT/lib/modules/load-order"
for n in "${ORDER[@]}"; do
    src=$MODDIR/${MODPATH[$n]}
    dst=$ROOT/lib/modules/$n.ko
    # busybox insmod reads plain .ko files only: decompress whatever the kernel ships
    case "$src" in
        *.ko) cp "$src" "$dst" ;;
        *.ko.xz) xz -dc "$src" > "$dst" ;;
        *.ko.gz) gzip -dc "$src" > "$dst" ;;
        *.ko.zst) zstd -qdc "$src" > "$dst" ;;
        *) log "unknown module format: $src"; exit 1 ;;
    esac
    echo "$n" >> "$ROOT/lib/modules/load-order"
done
log "modules (load order): ${ORDER[*]}"

cat > "$ROOT/init" <<'GUEST_INIT_EOF'
#!/bin/sh
# /init of the rngmux test guest (generated by tests/guest/build-guest.sh).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

say() { echo "rngmux-guest: $*"; }
finish() {
    echo "RNGMUX-RESULT $*"
    sync
    poweroff -f
    sleep 10
}
fail() { finish "error=$*"; }

uptime_s() { cut -d' ' -f1 /proc/uptime; }
# monotonic nanoseconds: /proc/timer_list when readable, else /proc/uptime (10 ms steps)
now_ns() {
    t=$(head -n 5 /proc/timer_list 2>/dev/null | sed -n 's/^now at \([0-9][0-9]*\) nsecs.*/\1/p')
    if [ -n "$t" ]; then echo "$t"; return; fi
    u=$(uptime_s); echo $(( ${u%.*} * 1000000000 + ${u#*.} * 10000000 ))
}

N=65536
BS=64
TRIES=3
SYNC=1
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        rngbytes=*) N=${arg#rngbytes=} ;;
        rngbs=*) BS=${arg#rngbs=} ;;
        rngtries=*) TRIES=${arg#rngtries=} ;;
        rngsync=*) SYNC=${arg#rngsync=} ;;
    esac
done
case "$N$BS$TRIES$SYNC" in *[!0-9]*|'') fail "bad-cmdline $(cat /proc/cmdline)" ;; esac
[ $((N % BS)) -eq 0 ] || BS=1

for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m.ko" || fail "insmod-$m"
done

i=0
cur=""
while [ $i -lt 200 ]; do
    cur=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
    case "$cur" in virtio_rng*) break ;; esac
    sleep 0.1
    i=$((i + 1))
done
case "$cur" in virtio_rng*) ;; *) fail "no-virtio-rng rng_current=${cur:-missing}" ;; esac
say "hwrng $cur ready at uptime $(uptime_s)"

# The kernel's hwrng kthread also reads /dev/hwrng's device (64 bytes, then sleeps at least
# 1 s in early boot). A read of it in the middle of ours would cut a hole into our bytes, so
# start right after one of its reads (it is then asleep) and count its context switches
# during our read: kthread_switches=0 proves it did not read meanwhile.
KT=""
for d in /proc/[0-9]*; do
    [ "$(cat "$d/comm" 2>/dev/null)" = hwrng ] && { KT=${d#/proc/}; break; }
done
kt_switches() {
    awk '/^(non)?voluntary_ctxt_switches/ { s += $2 } END { print s + 0 }' "/proc/$KT/status" 2>/dev/null
}
kt_state() { awk '/^State:/ { print $2 }' "/proc/$KT/status" 2>/dev/null; }
kt_sync() {
    [ -n "$KT" ] && [ "$SYNC" -ne 0 ] || return 0
    a=$(kt_switches)
    j=0
    while [ $j -lt 400 ] && [ "$(kt_switches)" = "$a" ]; do sleep 0.02; j=$((j + 1)); done
    j=0
    while [ $j -lt 100 ] && [ "$(kt_state)" != S ]; do sleep 0.01; j=$((j + 1)); done
}

try=1
while :; do
    kt_sync
    k0=$(kt_switches)
    say "reading $N bytes, try $try"
    t0=$(now_ns)
    dd if=/dev/hwrng of=/tmp/rng bs=$BS count=$((N / BS)) iflag=fullblock 2>/tmp/dd.err
    rc=$?
    t1=$(now_ns)
    sleep 0.05
    k1=$(kt_switches)
    [ $rc -eq 0 ] || fail "dd-rc-$rc $(tr '\n' ' ' </tmp/dd.err)"
    got=$(wc -c </tmp/rng)
    if [ -z "$KT" ]; then kd=unknown; else kd=$((k1 - k0)); fi
    if [ "$kd" = 0 ] || [ "$kd" = unknown ] || [ $try -ge $TRIES ]; then break; fi
    say "hwrng kthread ran during read $try ($kd switches); reading again"
    try=$((try + 1))
done
sum=$(sha256sum </tmp/rng | cut -d' ' -f1)
head=$(head -c 32 /tmp/rng | od -An -v -tx1 | tr -d ' \n')
tail=$(tail -c 32 /tmp/rng | od -An -v -tx1 | tr -d ' \n')
finish "bytes=$got ns=$((t1 - t0)) sha256=$sum head=$head tail=$tail bs=$BS tries=$try kthread_switches=$kd uptime=$(uptime_s)"
GUEST_INIT_EOF
chmod 0755 "$ROOT/init"

# /dev/console for the kernel's initial console (devtmpfs is mounted over /dev by /init)
if [ "$(id -u)" -eq 0 ]; then
    mknod -m 600 "$ROOT/dev/console" c 5 1 || true
fi

(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z \
    | cpio --null --create --format=newc --owner=0:0 --quiet) | gzip -9n > "$WORK/initramfs.cpio.gz"
cp "$KERNEL" "$WORK/vmlinuz"
mv -f "$WORK/vmlinuz" "$OUTDIR/vmlinuz"
mv -f "$WORK/initramfs.cpio.gz" "$OUTDIR/initramfs.cpio.gz"
echo "$STAMP" > "$OUTDIR/guest.stamp"
log "built $OUTDIR/vmlinuz ($KVER) and $OUTDIR/initramfs.cpio.gz ($(stat -c %s "$OUTDIR/initramfs.cpio.gz") bytes)"
