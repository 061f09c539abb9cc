"""Several sources: failover and failback, mixing, and conditioning, seen from outside.

The sources are FIFOs the test writes (file:PATH). Each writer can be switched between
good bytes (a seeded PRNG stream, recorded) and stuck bytes (zeros) while the daemon
runs. A client streams EGD reads all along, and the test checks from the client side
that no byte of a failing block ever reached it, and from the stats that the serving
source changed and changed back.
"""

import os
import random
import threading
import time

from harness import Collector, RngmuxTestCase, wait_until

CHUNK = 4096
STUCK_BYTES = 600  # more than one 512-byte block: at least one whole block is stuck


class FifoSource(threading.Thread):
    """Writes a FIFO: good (recorded) or stuck bytes, switchable; bounded in time."""

    def __init__(self, path, seed, max_seconds=60):
        super().__init__(daemon=True)
        self.path = path
        self.rng = random.Random(seed)
        self.mode = "good"
        self.good = bytearray()
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        # The good stream is uniform bytes: claimed as such (files default to 4 bits/byte).
        self.spec = "file:%s,entropy=8" % path
        os.mkfifo(path)

    def run(self):
        try:
            with open(self.path, "wb", buffering=0) as f:
                stuck_sent = False
                while time.monotonic() < self.deadline:
                    if self.mode == "good":
                        chunk = self.rng.randbytes(CHUNK)
                        with self.lock:
                            self.good += chunk
                        stuck_sent = False
                    elif not stuck_sent:
                        # A device that gets stuck: a run of one value, then nothing until
                        # it recovers (a FIFO would otherwise queue 64 KiB of stale zeros).
                        chunk = bytes(STUCK_BYTES)
                        stuck_sent = True
                    else:
                        time.sleep(0.02)
                        continue
                    f.write(chunk)
        except OSError:
            pass  # the daemon went away

    def recorded(self):
        with self.lock:
            return bytes(self.good)


class FailoverTest(RngmuxTestCase):
    def start_sources(self, n):
        sources = [FifoSource(self.path("src%d.fifo" % i), seed=1000 + i) for i in range(n)]
        for s in sources:
            s.start()
        return sources

    def assert_only_good_bytes(self, data, sources):
        self.assertNotIn(bytes(32), data, "stuck bytes reached the client")
        good = [s.recorded() for s in sources]
        for off in range(0, len(data) - 32, 1024):
            window = data[off:off + 32]
            self.assertTrue(any(g.find(window) >= 0 for g in good),
                            "bytes at %d came from no source's good stream" % off)

    def test_failover_and_failback(self):
        a, b = self.start_sources(2)
        d = self.start_daemon(["--source", a.spec, "--source", b.spec,
                               "--listen", "unix:%s" % self.path("rng.sock"),
                               "--pool-size", "16384"])
        self.wait_stats(d, lambda s: s["serving"] == a.spec, "A serves first")
        client = Collector(d.endpoints[0])
        client.start()
        self.assertTrue(wait_until(lambda: client.size() > 50000, 20), "no data")

        a.mode = "stuck"
        s = self.wait_stats(d, lambda s: s["serving"] == b.spec, "failover to B")
        self.assertGreaterEqual(s["source_switches"], 1)
        self.assertGreater(s["blocks_failed"], 0, s)
        at_failover = client.size()
        self.assertTrue(wait_until(lambda: client.size() > at_failover + 50000, 20),
                        "clients are not served by B")

        a.mode = "good"
        s = self.wait_stats(d, lambda s: s["serving"] == a.spec, "failback to A")
        self.assertGreaterEqual(s["source_switches"], 2)
        at_failback = client.size()
        self.assertTrue(wait_until(lambda: client.size() > at_failback + 50000, 20),
                        "clients are not served after failback")
        data = client.stop()
        self.assertIsNone(client.error)
        self.assert_only_good_bytes(data, [a, b])
        self.assertGreaterEqual(d.count_log(r"now serving from"), 2)
        d.stop()

    def test_mix_serves_neither_source_alone(self):
        a, b = self.start_sources(2)
        d = self.start_daemon(["--source", a.spec, "--source", b.spec,
                               "--source-mode", "mix", "--pool-size", "16384",
                               "--listen", "unix:%s" % self.path("rng.sock")])
        self.wait_stats(d, lambda s: s["serving"] == a.spec + "+" + b.spec,
                        "both serve")
        client = Collector(d.endpoints[0])
        client.start()
        self.assertTrue(wait_until(lambda: client.size() > 100000, 20), "no data")
        data = client.stop()
        good = [a.recorded(), b.recorded()]
        # once both are healthy, a window of output is in neither stream
        tail = data[-4096:]
        for off in range(0, len(tail) - 32, 512):
            for g in good:
                self.assertEqual(g.find(tail[off:off + 32]), -1,
                                 "mixed output contains a source's own bytes")
        d.stop()

    def test_low_claim_is_conditioned(self):
        (a,) = self.start_sources(1)
        d = self.start_daemon(["--source", "file:%s,entropy=4" % a.path,
                               "--listen", "unix:%s" % self.path("rng.sock")])
        d.wait_log(r"SHA-256 conditioned, 80 bytes in per 32 out")
        client = Collector(d.endpoints[0])
        client.start()
        self.assertTrue(wait_until(lambda: client.size() > 32000, 20), "no data")
        data = client.stop()
        s = d.stats()
        # what entered the pool is 32/80 of what passed the health tests; the last
        # passed block's output may still wait for room in the pool (the client has
        # stopped reading), so up to one block is in flight
        passed_raw = s["blocks_passed"] * 512
        self.assertLessEqual(s["source_bytes_accepted"], passed_raw * 32 // 80)
        self.assertGreaterEqual(s["source_bytes_accepted"], (passed_raw - 512 - 80) * 32 // 80)
        # and what clients got is not the raw stream
        raw = a.recorded()
        for off in range(0, len(data) - 32, 4096):
            self.assertEqual(raw.find(data[off:off + 32]), -1, "raw bytes reached a client")
        d.stop()

    def test_fips_screen_stops_what_the_sp800_90b_tests_let_through(self):
        """Random bytes with the top bit always clear: 7 bits of entropy each, so RCT and
        APT (cutoffs for a claim of 8) pass them, but every 20,000-bit block has about 8,750
        ones and fails FIPS 140-2's monobit test."""
        rng = random.Random(5)
        counting = bytes(b & 0x7f for b in rng.randbytes(16384))

        def feed(path):
            def run():
                try:
                    with open(path, "wb", buffering=0) as f:
                        deadline = time.monotonic() + 30
                        while time.monotonic() < deadline:
                            f.write(counting)
                except OSError:
                    pass
            os.mkfifo(path)
            t = threading.Thread(target=run, daemon=True)
            t.start()
            return t

        for fips in ("off", "on"):
            with self.subTest(fips=fips):
                fifo = self.path("count-%s.fifo" % fips)
                feed(fifo)
                d = self.start_daemon(["--source", "file:%s,entropy=8,fips=%s" % (fifo, fips),
                                       "--listen", "unix:%s" % self.path("c-%s.sock" % fips)],
                                      name="rngmux-fips-" + fips)
                if fips == "off":
                    self.wait_stats(d, lambda s: s["blocks_passed"] > 4, "blocks pass")
                    self.assertEqual(d.stats()["fips_failures"], 0)
                else:
                    # The failure is counted on the source's thread, and the selector
                    # drops the source from serving a moment later: wait for both.
                    s = self.wait_stats(d, lambda s: s["fips_failures"] > 0 and
                                        s["serving"] == "none", "FIPS rejects, nothing serves")
                    self.assertEqual(s["blocks_passed"], 0, s)
                    self.assertEqual(s["source_bytes_accepted"], 0, s)
                    d.wait_log(r"health test FIPS 140-2 monobit")
                d.stop()

    def test_bad_source_mode_is_a_usage_error(self):
        from harness import run_cli
        proc = run_cli(["serve", "--source-mode", "both"])
        self.assertEqual(proc.returncode, 2)
        self.assertIn('--source-mode "both": expected failover or mix', proc.stderr.decode())
        # Every spec problem is found by the one validation, before anything opens.
        for spec, message in (("getrandom,fips=maybe", 'fips must be on or off, got "maybe"'),
                              ("getrandom,foo=1", 'unknown option "foo" (known: entropy, block, threads)'),
                              ("nope", 'unknown kind "nope"'),
                              ("test:1,speed=5", 'unknown option "speed"')):
            with self.subTest(spec=spec):
                proc = run_cli(["serve", "--source", spec])
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertIn('source "%s": %s' % (spec, message), proc.stderr.decode())
        proc = run_cli(["serve", "--source", "getrandom,entropy=4,fips=on"])
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("fips=on needs a claim of 8 bits/byte", proc.stderr.decode())


if __name__ == "__main__":
    import unittest
    unittest.main()
