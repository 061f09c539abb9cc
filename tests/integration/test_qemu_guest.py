"""A real Linux guest (QEMU, TCG) reads /dev/hwrng through virtio-rng, rng-egd and rngmux.

Each case boots the tiny guest from tests/guest/build-guest.sh (cached in
$RNGMUX_GUEST_CACHE or /var/cache/rngmux-test-guest), serves it from
`--source test:SEED --allow-test-source`, and checks what the guest read:

  * it got all N bytes (a stall shows up as a bounded timeout with the console log);
  * its bytes are ONE CONTIGUOUS SLICE of the reference stream `rngmux read --source test:SEED`:
    the guest reports the sha256 of its N bytes and its first 32 bytes; we find those 32 bytes
    in the reference (they occur once: 2^-256 odds of a false hit) and compare the sha256 of
    ref[off:off+N]. Equality proves no byte was lost, duplicated or reordered in between.

Why a contiguous slice is the right expectation, and when it would not be:
  * The guest is the daemon's only consumer, so the daemon's pool stream goes to this one
    connection in order. With `qemu` (lead) mode the daemon pushes 4096 bytes before any
    request; the kernel itself takes the first bytes (hwrng early randomness, the hwrng
    kthread), so the guest's read starts at some small offset, found by the search.
  * A reconnect would break it: bytes in flight to a dropped connection are wiped by design,
    so a read spanning two connections has a hole. Every case therefore arranges exactly one
    connection (the listening side is up before the connecting side starts; rngmux connecting
    to QEMU only retries until QEMU's socket exists) and asserts connections_total == 1.
  * The guest kernel's hwrng kthread reads the same device (64 bytes, then sleeps >= 1 s
    during early boot); one of its reads in the middle of ours would cut a hole as well. The
    guest starts right after a kthread read and reports the kthread's context switches during
    its read; kthread_switches=0 proves the kthread did not read meanwhile (the guest retries
    up to 3 times otherwise).

The cases where QEMU listens start rngmux only after the guest's virtio-rng driver is up, so
its first request was lost (nobody was connected); the lead must un-stick it.

Run from tests/integration with RNGMUX_BINARY set. Prints the guest's bytes/s per case.
"""

import hashlib
import sys
import time

from harness import RngmuxTestCase, free_tcp_port, reference_stream
from guest import Guest, ensure_guest

NBYTES = 32768
REF_SIZE = 1 << 20     # the guest's slice starts a few KiB into the stream at most
BOOT_TIMEOUT = 45      # a boot to the result line takes about 3-5 s under TCG
READY_RE = r"rngmux-guest: hwrng virtio_rng\S* ready"

_refs = {}
_summary = []


def reference(seed):
    if seed not in _refs:
        _refs[seed] = reference_stream(seed, REF_SIZE)
    return _refs[seed]


class QemuGuestTest(RngmuxTestCase):
    @classmethod
    def setUpClass(cls):
        ensure_guest()

    @classmethod
    def tearDownClass(cls):
        if _summary:
            sys.stdout.write("\nguest /dev/hwrng throughput through rngmux (%d bytes, TCG):\n"
                             % NBYTES)
            for line in _summary:
                sys.stdout.write("  %s\n" % line)
            sys.stdout.flush()

    # -- helpers ---------------------------------------------------------------------------
    def boot(self, mode, chardev, daemon_args, seed, daemon_first, expect_listen=None):
        """Boots the guest with `chardev`, runs rngmux with `daemon_args` (before QEMU when
        daemon_first, else once the guest's virtio-rng driver is up), returns (result, daemon)."""
        args = ["--source", "test:%d" % seed, "--allow-test-source", "--log-level", "debug"] \
            + daemon_args
        d = None
        if daemon_first:
            d = self.start_daemon(args, name="rngmux-" + mode, expect_listen=expect_listen)
        g = Guest(chardev, nbytes=NBYTES, name=mode)
        self.addCleanup(g.close)
        try:
            g.start()
            if not daemon_first:
                g.wait_console(READY_RE, BOOT_TIMEOUT)
                d = self.start_daemon(args, name="rngmux-" + mode, expect_listen=0)
                d.wait_log(r"connected to ", timeout=15)
            result = g.wait_result(BOOT_TIMEOUT)
        except AssertionError:
            g.keep_logs = True
            raise
        return result, d

    def check(self, mode, seed, result, d):
        stats = d.stats()
        self.assertEqual(result.get("bytes"), NBYTES, "guest read %r of %d bytes: %s"
                         % (result.get("bytes"), NBYTES, result["line"]))
        self.assertEqual(result.get("kthread_switches"), 0,
                         "the guest kernel's hwrng kthread read /dev/hwrng's device during the "
                         "guest's read in every try, so contiguity cannot be judged: %s"
                         % result["line"])
        self.assertEqual(stats["connections_total"], 1,
                         "expected exactly one connection (a reconnect loses in-flight bytes "
                         "by design): %r" % stats)

        ref = reference(seed)
        head = bytes.fromhex(result["head"])
        self.assertEqual(len(head), 32, result["line"])
        off = ref.find(head)
        self.assertGreaterEqual(off, 0, "the guest's first 32 bytes are not in the first %d bytes "
                                "of the reference stream test:%d: %s" % (REF_SIZE, seed,
                                                                         result["line"]))
        self.assertEqual(ref.find(head, off + 1), -1, "the guest's first 32 bytes occur twice")
        self.assertLessEqual(off + NBYTES, len(ref))
        want = hashlib.sha256(ref[off:off + NBYTES]).hexdigest()
        self.assertEqual(result["sha256"], want,
                         "the guest's %d bytes are not the contiguous reference slice starting at "
                         "offset %d (lost, duplicated or reordered bytes): %s; stats %r"
                         % (NBYTES, off, result["line"], stats))
        # the daemon served the guest's slice (plus the kernel's bytes before it and the lead)
        self.assertLessEqual(off + NBYTES, stats["served_bytes"], stats)

        rate = result["bytes_per_s"]
        line = ("%-34s %7.0f kB/s  (%d bytes in %.1f ms, offset %d, served %d, boot %.1f s)"
                % (mode, rate / 1000, NBYTES, result["ns"] / 1e6, off, stats["served_bytes"],
                   result["boot_seconds"]))
        _summary.append(line)
        sys.stdout.write("\n%s\n" % line)
        sys.stdout.flush()

    # -- (a) TCP, QEMU connects, rngmux listens ------------------------------------------------
    def test_a_tcp_qemu_connects(self):
        seed = 101
        d = self.start_daemon(["--source", "test:%d" % seed, "--allow-test-source",
                               "--log-level", "debug", "--listen", "tcp:127.0.0.1:0,qemu"],
                              name="rngmux-a")
        port = int(d.endpoints[0].rsplit(":", 1)[1])
        g = Guest("socket,id=c0,host=127.0.0.1,port=%d,reconnect=1" % port, nbytes=NBYTES,
                  name="a-tcp")
        self.addCleanup(g.close)
        try:
            g.start()
            result = g.wait_result(BOOT_TIMEOUT)
        except AssertionError:
            g.keep_logs = True
            raise
        self.check("tcp, QEMU connects", seed, result, d)

    # -- (b) TCP, QEMU listens, rngmux connects (started after the guest's driver is up) -------
    def test_b_tcp_qemu_listens(self):
        seed = 102
        port = free_tcp_port()
        result, d = self.boot("b-tcp-listen",
                              "socket,id=c0,host=127.0.0.1,port=%d,server=on,wait=off" % port,
                              ["--connect", "tcp:127.0.0.1:%d,qemu" % port], seed,
                              daemon_first=False)
        self.check("tcp, QEMU listens (late connect)", seed, result, d)

    # -- (c) unix, both directions ----------------------------------------------------------
    def test_c1_unix_qemu_connects(self):
        seed = 103
        path = self.path("rng.sock")
        result, d = self.boot("c1-unix", "socket,id=c0,path=%s,reconnect=1" % path,
                              ["--listen", "unix:%s,qemu" % path], seed, daemon_first=True)
        self.check("unix, QEMU connects", seed, result, d)

    def test_c2_unix_qemu_listens(self):
        seed = 104
        path = self.path("qemu.sock")
        result, d = self.boot("c2-unix-listen", "socket,id=c0,path=%s,server=on,wait=off" % path,
                              ["--connect", "unix:%s,qemu" % path], seed, daemon_first=False)
        self.check("unix, QEMU listens (late connect)", seed, result, d)

    # -- (d) --qemu-chardev with QEMU's own -chardev value ------------------------------------
    def test_d1_qemu_chardev_tcp_qemu_connects(self):
        seed = 105
        spec = "socket,id=c0,host=127.0.0.1,port=%d,reconnect=1" % free_tcp_port()
        result, d = self.boot("d1-chardev-tcp", spec, ["--qemu-chardev", spec], seed,
                              daemon_first=True, expect_listen=1)
        self.check("--qemu-chardev tcp, QEMU connects", seed, result, d)

    def test_d2_qemu_chardev_unix_qemu_listens(self):
        seed = 106
        spec = "socket,id=c0,path=%s,server=on,wait=off" % self.path("qemu.sock")
        result, d = self.boot("d2-chardev-unix", spec, ["--qemu-chardev", spec], seed,
                              daemon_first=False)
        self.check("--qemu-chardev unix, QEMU listens", seed, result, d)


if __name__ == "__main__":
    import unittest
    unittest.main()
