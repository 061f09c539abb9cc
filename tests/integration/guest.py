"""A tiny QEMU guest that reads /dev/hwrng through virtio-rng + rng-egd (Python 3 stdlib only).

    kernel, initrd = ensure_guest()          # builds/caches with tests/guest/build-guest.sh
    result = boot_guest(["-chardev", "socket,id=c0,host=127.0.0.1,port=1024,reconnect=1"],
                        nbytes=32768, timeout=60)
    # {'bytes': 32768, 'ns': 75697294, 'sha256': '...', 'head': '...', 'bytes_per_s': 432875.3, ...}

The guest prints one line `RNGMUX-RESULT k=v ...` on its serial console and powers off.
Every wait is bounded: QEMU is killed at the deadline, and the failure (GuestError, an
AssertionError) carries the console log; the logs are then kept in a temp dir whose path
is printed. QEMU runs under TCG (KVM does not work on the build machines).
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from harness import RngmuxTestCase, parse_key_values, reference_stream

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_SCRIPT = os.path.normpath(os.path.join(HERE, "..", "guest", "build-guest.sh"))
DEFAULT_CACHE = "/var/cache/rngmux-test-guest"
QEMU = os.environ.get("RNGMUX_QEMU", "qemu-system-x86_64")
CHARDEV_ID = "c0"
# The -object behind the guest's virtio-rng-pci: rngmux through rng-egd, or QEMU's own.
RNG_OBJECTS = {
    "egd": "rng-egd,id=rng0,chardev=%s" % CHARDEV_ID,
    "random": "rng-random,id=rng0,filename=/dev/urandom",
    "builtin": "rng-builtin,id=rng0",
}
# vhost-user-rng-pci: rngmux owns the virtqueue; guest RAM is shared memory (memfd).
VHOST_USER = "vhost-user"

# only a whole line: the console file may end in the middle of the result line while QEMU
# is still writing it
RESULT_RE = re.compile(r"RNGMUX-RESULT ([^\r\n]*)\r?\n")
BUILD_TIMEOUT = 300  # packages and kernel come from scripts/install-deps.sh

_built = None


class GuestError(AssertionError):
    pass


def cache_dir():
    """$RNGMUX_GUEST_CACHE, or a directory per version of the build script under
    /var/cache/rngmux-test-guest (checkouts of different versions never rebuild each
    other's guest)."""
    if os.environ.get("RNGMUX_GUEST_CACHE"):
        return os.environ["RNGMUX_GUEST_CACHE"]
    with open(BUILD_SCRIPT, "rb") as f:
        version = hashlib.sha256(f.read()).hexdigest()[:12]
    return os.path.join(DEFAULT_CACHE, version)


def ensure_guest(outdir=None, timeout=BUILD_TIMEOUT):
    """Builds the guest into `outdir` (default $RNGMUX_GUEST_CACHE or /var/cache/rngmux-test-guest)
    unless it is already current. Returns (kernel_path, initrd_path)."""
    global _built
    outdir = outdir or cache_dir()
    if _built is not None and _built[0] == outdir:
        return _built[1]
    try:
        proc = subprocess.run(["bash", BUILD_SCRIPT, outdir], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise GuestError("%s %s did not finish within %ds\n%s"
                         % (BUILD_SCRIPT, outdir, timeout,
                            (e.stderr or b"").decode("utf-8", "replace")[-4000:]))
    if proc.returncode != 0:
        raise GuestError("%s %s failed with rc=%d\n%s%s"
                         % (BUILD_SCRIPT, outdir, proc.returncode,
                            proc.stdout.decode("utf-8", "replace")[-2000:],
                            proc.stderr.decode("utf-8", "replace")[-6000:]))
    paths = (os.path.join(outdir, "vmlinuz"), os.path.join(outdir, "initramfs.cpio.gz"))
    for p in paths:
        if not os.path.isfile(p):
            raise GuestError("%s did not produce %s" % (BUILD_SCRIPT, p))
    _built = (outdir, paths)
    return paths


def parse_result(line):
    """'RNGMUX-RESULT k=v ...' (or just the part after the tag) -> dict, ints where numeric."""
    m = RESULT_RE.search(line)
    text = m.group(1) if m else line
    out = {}
    if "error=" in text:
        # error=WORD and free text after it
        before, _, err = text.partition("error=")
        out["error"] = err.strip()
        text = before
    out.update(parse_key_values(text))
    if isinstance(out.get("bytes"), int) and isinstance(out.get("ns"), int) and out["ns"] > 0:
        out["bytes_per_s"] = out["bytes"] * 1e9 / out["ns"]
    return out


def chardev_arg_list(chardev):
    """A -chardev value (str) or a full argument list -> QEMU argument list."""
    if isinstance(chardev, str):
        return ["-chardev", chardev]
    return list(chardev)


class Guest:
    """One QEMU process running the test guest, its console captured in a file."""

    def __init__(self, chardev, nbytes=65536, append_extra="", memory=256, name="guest",
                 backend="egd", logdir=None, qmp=None, reboot=False):
        """`chardev`: the -chardev value (or argument list) defining id c0, for backend "egd"
        (rng-egd, what rngmux serves); backend "random" (rng-random on /dev/urandom) and
        "builtin" (rng-builtin) are QEMU's own, for comparison, and take chardev=None.
        `logdir`: where the console and QEMU logs go (kept); default a temp dir removed
        unless a failure keeps it."""
        if backend not in RNG_OBJECTS and backend != VHOST_USER:
            raise ValueError("unknown guest backend %r" % backend)
        if (backend in ("egd", VHOST_USER)) != (chardev is not None):
            raise ValueError("backend %r %s a chardev" % (backend, "needs" if backend == "egd"
                                                          else "takes no"))
        self.chardev_args = chardev_arg_list(chardev) if chardev is not None else []
        self.backend = backend
        self.nbytes = nbytes
        self.append_extra = append_extra
        self.memory = memory
        self.name = name
        self.proc = None
        self.logdir = logdir
        self.own_logdir = logdir is None
        self.keep_logs = False
        self.qmp = qmp        # a unix socket path for QMP (system_reset), or None
        self.reboot = reboot  # without -no-reboot (a reset reboots instead of exiting)

    def command(self, kernel, initrd):
        append = "console=ttyS0 quiet panic=-1 rngbytes=%d %s" % (self.nbytes, self.append_extra)
        cmd = [QEMU, "-accel", "tcg", "-m", str(self.memory), "-nodefaults", "-display", "none",
               "-serial", "stdio"] + ([] if self.reboot else ["-no-reboot"]) \
            + ["-kernel", kernel, "-initrd", initrd, "-append", append.strip()]
        if self.qmp:
            cmd += ["-qmp", "unix:%s,server=on,wait=off" % self.qmp]
        if self.backend == VHOST_USER:
            # the backend maps guest RAM: shared memory of exactly -m
            return cmd + ["-object", "memory-backend-memfd,id=mem,size=%dM,share=on" % self.memory,
                          "-numa", "node,memdev=mem"] + self.chardev_args \
                + ["-device", "vhost-user-rng-pci,chardev=%s" % CHARDEV_ID]
        return cmd + self.chardev_args \
            + ["-object", RNG_OBJECTS[self.backend], "-device", "virtio-rng-pci,rng=rng0"]

    def qmp_command(self, command, timeout=10):
        """Runs one QMP command (e.g. "system_reset") and returns its reply (a dict)."""
        import json
        import socket as socketlib
        deadline = time.monotonic() + timeout
        s = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            while True:
                try:
                    s.connect(self.qmp)
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)
            f = s.makefile("rwb")
            json.loads(f.readline())  # greeting
            for cmd in ("qmp_capabilities", command):
                f.write(json.dumps({"execute": cmd}).encode() + b"\n")
                f.flush()
                while True:
                    reply = json.loads(f.readline())
                    if "return" in reply or "error" in reply:
                        break
            return reply
        finally:
            s.close()

    def start(self):
        kernel, initrd = ensure_guest()
        if self.own_logdir:
            self.logdir = tempfile.mkdtemp(prefix="rngmux-guest-%s-" % self.name)
        else:
            os.makedirs(self.logdir, exist_ok=True)
        self.console_path = os.path.join(self.logdir, "console.log")
        self.stderr_path = os.path.join(self.logdir, "qemu.stderr.log")
        self.cmd = self.command(kernel, initrd)
        with open(os.path.join(self.logdir, "command"), "w") as f:
            f.write(" ".join(self.cmd) + "\n")
        self._out = open(self.console_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, start_new_session=True)
        return self

    # -- logs ------------------------------------------------------------------------------
    def _read(self, path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def console(self):
        return self._read(self.console_path)

    def qemu_stderr(self):
        return self._read(self.stderr_path)

    def fail(self, why, extra=""):
        """Kills QEMU, keeps the logs, and raises GuestError with the console log."""
        self.kill()
        self.keep_logs = True
        msg = ("%s: %s\nQEMU command: %s\nQEMU exit status: %r\n----- console -----\n%s\n"
               "----- QEMU stderr -----\n%s\n%s----- logs kept in %s -----"
               % (self.name, why, " ".join(self.cmd), self.proc.returncode if self.proc else None,
                  self.console()[-8000:], self.qemu_stderr()[-3000:], extra, self.logdir))
        raise GuestError(msg)

    # -- waiting -----------------------------------------------------------------------------
    def wait_console(self, pattern, timeout):
        """Waits (bounded) for a console line matching `pattern`; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.console())
            if m:
                return m
            if self.proc.poll() is not None:
                self.fail("QEMU exited (rc=%r) before the console showed %r"
                          % (self.proc.returncode, pattern))
            if time.monotonic() >= deadline:
                self.fail("no console line matching %r within %.0fs" % (pattern, timeout))
            time.sleep(0.05)

    def wait_result(self, timeout):
        """Waits (bounded) for the RNGMUX-RESULT line, then for QEMU to power off.
        Returns the parsed dict; raises GuestError on timeout, early exit or a guest error."""
        deadline = self.started + timeout
        line = None
        while line is None:
            m = RESULT_RE.search(self.console())
            if m:
                line = m.group(0).strip()
                break
            if self.proc.poll() is not None:
                self.fail("QEMU exited (rc=%r) without a RNGMUX-RESULT line" % self.proc.returncode)
            if time.monotonic() >= deadline:
                self.fail("no RNGMUX-RESULT within %.0fs (guest stalled?)" % timeout)
            time.sleep(0.05)
        try:
            self.proc.wait(max(1.0, min(15.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            self.fail("guest printed its result but QEMU did not exit after poweroff")
        result = parse_result(line)
        result["line"] = line
        result["boot_seconds"] = time.monotonic() - self.started
        if "error" in result:
            self.fail("guest reported an error: %s" % result["error"])
        return result

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f is not None and not f.closed:
                f.close()

    def close(self, keep_logs=None):
        """Kills QEMU if still running; removes the logs unless a failure kept them."""
        self.kill()
        if not self.own_logdir:
            return  # the caller's directory: the caller decides what to keep
        keep = self.keep_logs if keep_logs is None else keep_logs
        if self.logdir and not keep:
            shutil.rmtree(self.logdir, ignore_errors=True)
        elif self.logdir and keep:
            sys.stderr.write("guest logs kept in %s\n" % self.logdir)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(keep_logs=True if exc_type is not None else None)
        return False


def boot_guest(chardev_args, nbytes=65536, timeout=60, after_start=None, name="guest",
               append_extra=""):
    """Boots the guest with `chardev_args` (a -chardev value or an argument list defining
    chardev id 'c0'), waits (bounded by `timeout` seconds in all) for its result and returns
    it as a dict: bytes, ns, sha256, head (hex of the first 32 bytes), bytes_per_s, ...

    after_start(guest), if given, runs once QEMU has started (e.g. to start a daemon that
    connects to QEMU's server socket)."""
    with Guest(chardev_args, nbytes=nbytes, append_extra=append_extra, name=name) as g:
        g.start()
        if after_start is not None:
            after_start(g)
        return g.wait_result(timeout)


# --------------------------------------------------------------------------
# What a guest read, checked against the deterministic test source
# --------------------------------------------------------------------------

REF_SIZE = 1 << 20  # a guest's slice starts a few KiB into the stream at most
_refs = {}


def reference(seed):
    """The first REF_SIZE bytes of `--source test:SEED` (cached per seed)."""
    if seed not in _refs:
        _refs[seed] = reference_stream(seed, REF_SIZE)
    return _refs[seed]


def find_once(testcase, ref, piece, what):
    """Offset of `piece` in `ref`, asserting it occurs exactly once."""
    off = ref.find(piece)
    testcase.assertGreaterEqual(off, 0, "%s is not in the first %d bytes of the reference "
                                "stream" % (what, len(ref)))
    testcase.assertEqual(ref.find(piece, off + 1), -1, "%s occurs twice in the reference" % what)
    return off


def assert_contiguous(testcase, seed, result, nbytes, stats):
    """The guest read all `nbytes`, with no hwrng-kthread read in between, and they are
    one contiguous slice of test:SEED: its first 32 bytes occur once in the reference,
    and the sha256 of the reference from there matches the guest's. Returns the offset."""
    testcase.assertEqual(result.get("bytes"), nbytes, "guest read %r of %d bytes: %s"
                         % (result.get("bytes"), nbytes, result["line"]))
    testcase.assertEqual(result.get("kthread_switches"), 0,
                         "the guest kernel's hwrng kthread read /dev/hwrng's device during the "
                         "guest's read in every try, so contiguity cannot be judged: %s"
                         % result["line"])
    ref = reference(seed)
    head = bytes.fromhex(result["head"])
    testcase.assertEqual(len(head), 32, result["line"])
    off = find_once(testcase, ref, head, "the guest's first 32 bytes (test:%d)" % seed)
    testcase.assertLessEqual(off + nbytes, len(ref))
    want = hashlib.sha256(ref[off:off + nbytes]).hexdigest()
    testcase.assertEqual(result["sha256"], want,
                         "the guest's %d bytes are not the contiguous reference slice starting "
                         "at offset %d (lost, duplicated or reordered bytes): %s; stats %r"
                         % (nbytes, off, result["line"], stats))
    # the daemon served the guest's slice (plus the kernel's bytes before it and the lead)
    testcase.assertLessEqual(off + nbytes, stats["served_bytes"], stats)
    return off


def print_summary(title, lines):
    """The per-case rates, once at the end of a test class."""
    if lines:
        sys.stdout.write("\n%s\n" % title)
        for line in lines:
            sys.stdout.write("  %s\n" % line)
        sys.stdout.flush()


class GuestTestCase(RngmuxTestCase):
    """A test class booting guests against rngmux: the guest image is made once, every
    case's rate is recorded, and the rates are printed under SUMMARY_TITLE at the end."""

    NBYTES = 32768
    SUMMARY_TITLE = "guest /dev/hwrng through rngmux (%d bytes in 64-byte reads, TCG):"
    MODE_WIDTH = 34

    @classmethod
    def setUpClass(cls):
        ensure_guest()
        cls.summary = []

    @classmethod
    def tearDownClass(cls):
        print_summary(cls.SUMMARY_TITLE % cls.NBYTES, cls.summary)

    def daemon_args(self, seed, *endpoint_args, rate=None):
        source = "test:%d" % seed + (",rate=%d" % rate if rate else "")
        return ["--source", source, "--allow-test-source", "--log-level", "debug"] \
            + list(endpoint_args)

    def check(self, mode, seed, result, d):
        """One connection served the guest one contiguous slice of the reference stream."""
        stats = d.stats()
        self.assertEqual(stats["connections_total"], 1,
                         "expected exactly one connection (a reconnect loses in-flight bytes "
                         "by design): %r" % stats)
        off = assert_contiguous(self, seed, result, self.NBYTES, stats)
        self.record(mode, result, "offset %d, served %d" % (off, stats["served_bytes"]))

    def record(self, mode, result, detail):
        line = ("%-*s %7.0f kB/s  (%d bytes in %.1f ms, %s, boot %.1f s)"
                % (self.MODE_WIDTH, mode, result["bytes_per_s"] / 1000, result["bytes"],
                   result["ns"] / 1e6, detail, result["boot_seconds"]))
        self.summary.append(line)
        sys.stdout.write("\n%s\n" % line)
        sys.stdout.flush()
