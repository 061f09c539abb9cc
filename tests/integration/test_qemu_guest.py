"""A real Linux guest (QEMU, TCG) reads /dev/hwrng through virtio-rng, rng-egd and rngmux.

Each case boots the tiny guest from tests/guest/build-guest.sh (cached in
$RNGMUX_GUEST_CACHE or /var/cache/rngmux-test-guest) and checks what the guest read.
Run one case by name with `bash scripts/e2e.sh NAME` (a substring of the test name, e.g.
`two_guests`). A failing case keeps its logs (rngmux's log, the guest console, QEMU's
stderr and command line) in $RNGMUX_TEST_LOGS/<test id>/ and prints the console's tail.

Integrity (every single-connection case): rngmux serves `--source test:SEED
--allow-test-source`, and the guest's N bytes must be ONE CONTIGUOUS SLICE of the reference
stream `rngmux read --source test:SEED`. The guest reports the sha256 of its bytes and its
first 32 bytes; we find those 32 bytes in the reference (they occur once: 2^-256 odds of a
false hit) and compare the sha256 of ref[off:off+N]. Equality proves no byte was lost,
duplicated or reordered on the way. Why that is the right expectation, and when not:
  * The guest is the daemon's only consumer, so the pool's stream goes to this one
    connection in order. With `qemu` (lead) mode the daemon pushes 4096 bytes before any
    request; the guest kernel takes the first bytes itself (early randomness, the hwrng
    kthread), so the guest's read starts at a small offset, found by the search.
  * A reconnect breaks it: bytes in flight to a dropped connection are wiped by design,
    so those cases check what does hold (which daemon served which end of the read).
  * The guest's hwrng kthread reads the same device (64 bytes, then sleeps >= 1 s in early
    boot); a read of it in the middle of ours would cut a hole. The guest starts right after
    a kthread read and reports the kthread's context switches during its read;
    kthread_switches=0 proves it did not read meanwhile (the guest retries up to 3 times).

Cases where QEMU listens start rngmux only after the guest's virtio-rng driver is up, so the
guest's first request was lost (nobody was connected): only the lead can un-stick it.
"""

import hashlib
import re
import signal
import sys
import time

from harness import free_tcp_port, render_config, wait_until
from guest import Guest, GuestTestCase, assert_contiguous, find_once, reference
import guest_throughput

NBYTES = 32768
BOOT_TIMEOUT = 60      # a boot to the result line takes about 3-5 s under TCG
READY_RE = r"rngmux-guest: hwrng virtio_rng\S* ready"
READING_RE = r"rngmux-guest: reading \d+ bytes"


class QemuGuestTest(GuestTestCase):
    NBYTES = NBYTES

    # -- helpers ---------------------------------------------------------------------------
    def guest(self, chardev, name, nbytes=NBYTES, append_extra="", **kw):
        """A Guest whose logs live in this test's directory (kept if the test fails)."""
        g = Guest(chardev, nbytes=nbytes, name=name, append_extra=append_extra,
                  logdir=self.path("guest-" + name), **kw)
        self.addCleanup(g.close)
        return g

    def boot(self, mode, chardev, daemon_args, seed, daemon_first, expect_listen=None):
        """Boots the guest with `chardev`, runs rngmux with `daemon_args` (before QEMU when
        daemon_first, else once the guest's virtio-rng driver is up), returns (result, daemon)."""
        args = self.daemon_args(seed, *daemon_args)
        d = None
        if daemon_first:
            d = self.start_daemon(args, name="rngmux-" + mode, expect_listen=expect_listen)
        g = self.guest(chardev, mode)
        g.start()
        if not daemon_first:
            g.wait_console(READY_RE, BOOT_TIMEOUT)
            d = self.start_daemon(args, name="rngmux-" + mode, expect_listen=0)
            d.wait_log(r"connected to ", timeout=15)
        return g.wait_result(BOOT_TIMEOUT), d

    # -- 1. TCP, QEMU connects, rngmux listens -------------------------------------------------
    def test_tcp_qemu_connects(self):
        seed = 101
        d = self.start_daemon(self.daemon_args(seed, "--listen", "tcp:127.0.0.1:0,qemu"),
                              name="rngmux-tcp")
        port = int(d.endpoints[0].rsplit(":", 1)[1])
        g = self.guest("socket,id=c0,host=127.0.0.1,port=%d,reconnect=1" % port, "tcp")
        g.start()
        self.check("tcp, QEMU connects", seed, g.wait_result(BOOT_TIMEOUT), d)

    # -- 2. TCP, QEMU listens, rngmux connects (started after the guest's driver is up) -------
    def test_tcp_qemu_listens(self):
        seed = 102
        port = free_tcp_port()
        result, d = self.boot("tcp-listen",
                              "socket,id=c0,host=127.0.0.1,port=%d,server=on,wait=off" % port,
                              ["--connect", "tcp:127.0.0.1:%d,qemu" % port], seed,
                              daemon_first=False)
        self.check("tcp, QEMU listens (late connect)", seed, result, d)

    # -- 3. unix, both directions ----------------------------------------------------------
    def test_unix_qemu_connects(self):
        seed = 103
        path = self.path("rng.sock")
        result, d = self.boot("unix", "socket,id=c0,path=%s,reconnect=1" % path,
                              ["--listen", "unix:%s,qemu" % path], seed, daemon_first=True)
        self.check("unix, QEMU connects", seed, result, d)

    def test_unix_qemu_listens(self):
        seed = 104
        path = self.path("qemu.sock")
        result, d = self.boot("unix-listen", "socket,id=c0,path=%s,server=on,wait=off" % path,
                              ["--connect", "unix:%s,qemu" % path], seed, daemon_first=False)
        self.check("unix, QEMU listens (late connect)", seed, result, d)

    # -- 4. --qemu-chardev with QEMU's own -chardev value ------------------------------------
    def test_qemu_chardev_tcp(self):
        seed = 105
        spec = "socket,id=c0,host=127.0.0.1,port=%d,reconnect=1" % free_tcp_port()
        result, d = self.boot("chardev-tcp", spec, ["--qemu-chardev", spec], seed,
                              daemon_first=True, expect_listen=1)
        self.check("--qemu-chardev tcp, QEMU connects", seed, result, d)

    def test_qemu_chardev_unix(self):
        seed = 106
        spec = "socket,id=c0,path=%s,server=on,wait=off" % self.path("qemu.sock")
        result, d = self.boot("chardev-unix", spec, ["--qemu-chardev", spec], seed,
                              daemon_first=False)
        self.check("--qemu-chardev unix, QEMU listens", seed, result, d)

    # -- 5. two guests at once on one slow source ------------------------------------------
    def test_two_guests_share_a_slow_source_fairly(self):
        """Both guests read at once from a 20 kB/s source. While both read, each must get
        40-60% of what is served (Jain's index >= 0.96), and both must finish. Measured on the
        daemon's per-client counters between two snapshots taken while both guests are
        inside their read (their consoles say so), so boot-time skew does not count."""
        seed, rate, nbytes = 107, 20000, 262144
        # A small pool: a big one fills while the guests boot, and whoever reads first
        # drains it uncontended, which says nothing about sharing.
        # Each guest on its own endpoint, as the README advises: both QEMUs run as one
        # user here, and one user on one endpoint is one tenant with one share.
        d = self.start_daemon(self.daemon_args(seed, "--listen", "tcp:127.0.0.1:0,qemu",
                                               "--listen", "tcp:127.0.0.1:0,qemu",
                                               "--pool-size", "8192", rate=rate),
                              name="rngmux-two-guests")
        ports = [int(ep.rsplit(":", 1)[1]) for ep in d.endpoints]
        # rngsync=0: start reading at once instead of waiting for the kernel's hwrng
        # thread (that wait is for contiguity checks and skews the two starts by seconds)
        guests = [self.guest("socket,id=c0,host=127.0.0.1,port=%d,reconnect=1" % port,
                             "fair-%d" % i, nbytes=nbytes, append_extra="rngtries=1 rngsync=0")
                  for i, port in ((1, ports[0]), (2, ports[1]))]
        for g in guests:
            g.start()
        for g in guests:
            g.wait_console(READING_RE, BOOT_TIMEOUT)
        time.sleep(0.5)  # both have requests in flight now
        # The guest that started reading first has a head start (two TCG guests on two
        # cores boot seconds apart), so it may finish early. Snapshot every half second
        # and judge the last window in which both were still reading.
        first = self.per_client(d)
        start = time.monotonic()
        second, window = None, 0.0
        for _ in range(6):
            time.sleep(0.5)
            snap = self.per_client(d)
            # served_bytes >= nbytes: that guest has (or has in flight) all it asked for
            if any(re.search(r"RNGMUX-RESULT", g.console()) for g in guests) \
                    or sorted(snap) != sorted(first) or max(snap.values()) >= nbytes:
                break
            second, window = snap, time.monotonic() - start
        self.assertIsNotNone(second, "a guest finished within 0.5 s of both reading: no "
                             "overlap to judge fairness (raise nbytes)")
        self.assertGreaterEqual(window, 1.5, "only %.1f s in which both guests read: too "
                                "short to judge fairness (raise nbytes)" % window)
        self.assertEqual(len(second), 2, "expected two clients: %r" % second)
        deltas = [second[p] - first[p] for p in sorted(second)]
        total = sum(deltas)
        self.assertGreater(total, rate * window * 0.5, "the source delivered far less than "
                           "its rate while two guests waited: %r in %.1f s" % (deltas, window))
        shares = [x / total for x in deltas]
        jain = total ** 2 / (len(deltas) * sum(x * x for x in deltas))
        for share in shares:
            self.assertTrue(0.4 <= share <= 0.6, "unfair split between two equal guests: "
                            "%r bytes (shares %r)" % (deltas, shares))
        self.assertGreaterEqual(jain, 0.96, "Jain's index %.3f for %r" % (jain, deltas))
        results = [g.wait_result(BOOT_TIMEOUT) for g in guests]
        for r in results:
            self.assertEqual(r.get("bytes"), nbytes, r["line"])
        sys.stdout.write("\ntwo guests on a %d B/s source: %d and %d bytes in %.1f s "
                         "(shares %.3f/%.3f, Jain %.4f)\n"
                         % (rate, deltas[0], deltas[1], window, shares[0], shares[1], jain))
        sys.stdout.flush()
        self.assertEqual(d.stats()["connections_total"], 2)

    def per_client(self, d):
        """{peer: served_bytes} from the daemon's per-client stats lines."""
        return {c["peer"]: c["served_bytes"] for c in d.stats()["client_list"]}

    # -- 6. rngmux restarted mid-read, QEMU reconnecting ------------------------------------
    def test_rngmux_restarted_mid_read(self):
        """rngmux is killed (SIGKILL, like a crash) while the guest is in the middle of a
        slow read, and a new rngmux with another seed comes up on the same port. QEMU
        (reconnect=1) reconnects but does not re-send its pending request; the new daemon's
        lead completes it, and the guest's read finishes: its first bytes come from the
        first daemon's stream, its last bytes from the second's."""
        seed1, seed2, nbytes = 108, 109, 65536
        port = free_tcp_port()
        # max-conns=1: QEMU's reconnect must get in through the per-identity limit.
        listen = "tcp:127.0.0.1:%d,qemu,max-conns=1" % port
        # A small pool: a big one fills while the guest boots and a slow boot would let
        # the guest read everything from it before the kill.
        d1 = self.start_daemon(self.daemon_args(seed1, "--listen", listen,
                                                "--pool-size", "8192", rate=16000),
                               name="rngmux-before")
        g = self.guest("socket,id=c0,host=127.0.0.1,port=%d,reconnect=1" % port, "restart",
                       nbytes=nbytes, append_extra="rngtries=1 rngsync=0")
        g.start()
        g.wait_console(READING_RE, BOOT_TIMEOUT)
        served = wait_until(lambda: d1.stats()["served_bytes"] >= 4096 + 16384, 30,
                            interval=0.2)
        self.assertTrue(served, "the first daemon never served 20 KiB: %r" % d1.stats())
        before_kill = d1.stats()["served_bytes"]
        d1.kill()
        self.assertNotIn("RNGMUX-RESULT", g.console(), "the guest finished before the kill")
        self.assertLess(before_kill, nbytes, "the first daemon served the whole read before "
                        "the kill: nothing left for the restarted one")
        d2 = self.start_daemon(self.daemon_args(seed2, "--listen", listen),
                               name="rngmux-after")
        d2.wait_log(r"client \S+ \(uid=\d+\(\w+\) 127\.0\.0\.1\): connected on", timeout=15)
        result = g.wait_result(BOOT_TIMEOUT)
        self.assertEqual(result.get("bytes"), nbytes, result["line"])
        self.assertIn("RNGMUX-RESULT", g.console())
        find_once(self, reference(seed1), bytes.fromhex(result["head"]),
                  "the guest's first 32 bytes (from the first daemon, test:%d)" % seed1)
        find_once(self, reference(seed2), bytes.fromhex(result["tail"]),
                  "the guest's last 32 bytes (from the restarted daemon, test:%d)" % seed2)
        stats = d2.stats()
        self.assertEqual(stats["connections_total"], 1, stats)
        self.record("tcp, rngmux restarted mid-read", result,
                    "%d bytes from the restarted daemon" % stats["served_bytes"])

    # -- 7. QEMU restarted while rngmux connects to it --------------------------------------
    def test_qemu_restarted_while_rngmux_connects(self):
        """rngmux connects to QEMU's server socket. The first guest reads and powers off
        (QEMU exits); rngmux notices, keeps retrying with back-off while nothing listens, and
        reconnects to the second QEMU on the same port, whose guest then reads a contiguous
        slice of the stream after everything the first one got."""
        seed = 110
        port = free_tcp_port()
        chardev = "socket,id=c0,host=127.0.0.1,port=%d,server=on,wait=off" % port
        g1 = self.guest(chardev, "qemu-first")
        g1.start()
        g1.wait_console(READY_RE, BOOT_TIMEOUT)
        d = self.start_daemon(self.daemon_args(seed, "--connect", "tcp:127.0.0.1:%d,qemu" % port),
                              name="rngmux-connects", expect_listen=0)
        first = g1.wait_result(BOOT_TIMEOUT)
        self.assertEqual(first.get("bytes"), NBYTES, first["line"])
        d.wait_log(r"connection to \S+ ended; reconnecting", timeout=15)
        time.sleep(1.5)  # several refused attempts while no QEMU listens
        g2 = self.guest(chardev, "qemu-second")
        g2.start()
        d.wait_log(r"connected to \S+ after [1-9]\d* failed attempts", timeout=30)
        second = g2.wait_result(BOOT_TIMEOUT)
        stats = d.stats()
        self.assertEqual(stats["connections_total"], 2, stats)
        off1 = find_once(self, reference(seed), bytes.fromhex(first["head"]),
                         "the first guest's first 32 bytes")
        off2 = assert_contiguous(self, seed, second, NBYTES, stats)
        self.assertGreater(off2, off1 + NBYTES, "the second guest got bytes the first one "
                           "was sent (offsets %d and %d)" % (off1, off2))
        self.record("tcp, QEMU restarted (rngmux connects)", second, "offset %d" % off2)

    # -- 8. the configuration reloaded while the guest reads ---------------------------------
    def test_reload_while_guest_reads(self):
        """The guest reads slowly (a 16 kB/s source) while the daemon reloads twice: an
        endpoint is added, the guest's endpoint gets another weight, the log level
        changes. The guest's connection survives and its bytes stay ONE contiguous slice
        of the stream: nothing lost, duplicated or reordered across the reloads."""
        seed, nbytes = 111, 65536
        port, added = free_tcp_port(), free_tcp_port()
        settings = {"allow-test-source": True, "control": "", "pool-size": 8192}
        source = ["test:%d,rate=16000" % seed]
        guest_ep = {"address": "tcp:127.0.0.1:%d" % port, "qemu": True}
        config = self.path("rngmux.toml")

        def write(text):
            with open(config, "w") as f:
                f.write(text)

        write(render_config(settings, source, [guest_ep]))
        d = self.start_daemon(["--config", config], name="rngmux-reload", expect_listen=1)
        g = self.guest("socket,id=c0,host=127.0.0.1,port=%d,reconnect=1" % port, "reload",
                       nbytes=nbytes)
        g.start()
        g.wait_console(READING_RE, BOOT_TIMEOUT)
        write(render_config(dict(settings, **{"log-level": "debug"}), source,
                            [dict(guest_ep, weight=3),
                             {"address": "tcp:127.0.0.1:%d" % added}]))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"reloaded: .*1 endpoint added.*1 endpoint changed", timeout=15)
        self.assertNotIn("RNGMUX-RESULT", g.console(), "the guest finished before the reload")
        write(render_config(settings, source, [guest_ep]))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"reloaded: .*1 endpoint removed", timeout=15)
        result = g.wait_result(BOOT_TIMEOUT)
        stats = d.stats()
        self.assertEqual(stats["connections_total"], 1, stats)
        off = assert_contiguous(self, seed, result, nbytes, stats)
        self.record("tcp, reloaded twice mid-read", result, "offset %d" % off)

    # -- throughput against QEMU's own backends, in the same run ----------------------------
    def test_throughput_against_qemu_backends(self):
        """One boot per backend (rngmux over TCP and unix, rng-random, rng-builtin), each
        reading 256 KiB: all must complete; the rates are printed with their ratios (the
        recorded numbers come from guest_throughput.py with more bytes and rounds, see
        BENCHMARKS.md)."""
        nbytes = 256 * 1024
        seed = 131
        results = {}
        rates = guest_throughput.measure(nbytes, 1, self.tmp, source="test:%d" % seed,
                                         results=results)
        ref = reference(seed)
        for backend, values in rates.items():
            self.assertEqual(len(values), 1, backend)
            self.assertGreater(values[0], 0, backend)
            result = results[backend][0]
            head, tail = bytes.fromhex(result["head"]), bytes.fromhex(result["tail"])
            self.assertEqual((len(head), len(tail)), (32, 32), result["line"])
            if not backend.startswith("rngmux-"):
                # QEMU's own backends: no reference, but never a constant or repeated block
                self.assertNotEqual(head, tail, "%s: %s" % (backend, result["line"]))
                self.assertGreater(len(set(head)), 8, "%s: %s" % (backend, result["line"]))
                continue
            # rngmux serves test:SEED: the guest's first and last 32 bytes are pieces of the
            # stream, in order, nbytes apart plus at most what the guest kernel's hwrng
            # kthread took in between (this run does not wait for it to sleep)
            h = find_once(self, ref, head, "%s: the guest's first 32 bytes" % backend)
            t = find_once(self, ref, tail, "%s: the guest's last 32 bytes" % backend)
            self.assertGreaterEqual(t - h, nbytes - 32, "%s: bytes lost or reordered: %s"
                                    % (backend, result["line"]))
            self.assertLessEqual(t - h, nbytes - 32 + 64 * 64, "%s: far more bytes between "
                                 "first and last than the guest read: %s"
                                 % (backend, result["line"]))
            if result.get("kthread_switches") == 0:
                want = hashlib.sha256(ref[h:h + nbytes]).hexdigest()
                self.assertEqual(result["sha256"], want, "%s: not one contiguous slice: %s"
                                 % (backend, result["line"]))
        sys.stdout.write("\n%s\n" % guest_throughput.table(rates, nbytes))
        sys.stdout.flush()


if __name__ == "__main__":
    import unittest
    unittest.main()
