"""`rngmux check`: a good source passes, biased, stuck and low-entropy ones are judged
right, the JSON form carries the same verdicts, and bad input is a usage error.

Non-test sources are FIFOs the test writes (file:PATH), fed by a writer thread that stops
when the reader goes away or after a bounded amount of data.
"""

import json
import os
import random
import threading
import time

from harness import RngmuxTestCase, run_cli


class FifoWriter(threading.Thread):
    """Writes `make(n)` chunks into a FIFO until `limit` bytes or the reader closes."""

    def __init__(self, path, make, limit=4 << 20):
        super().__init__(daemon=True)
        self.path, self.make, self.limit = path, make, limit

    def run(self):
        sent = 0
        deadline = time.monotonic() + 30
        try:
            with open(self.path, "wb", buffering=0) as f:  # blocks until check opens it
                while sent < self.limit and time.monotonic() < deadline:
                    chunk = self.make(65536)
                    f.write(chunk)
                    sent += len(chunk)
        except (BrokenPipeError, OSError):
            pass


def biased_bytes(rng, p_one):
    def make(n):
        out = bytearray(n)
        for i in range(n):
            x = 0
            for _ in range(8):
                x = (x << 1) | (rng.random() < p_one)
            out[i] = x
        return bytes(out)
    return make


class CheckTest(RngmuxTestCase):
    def check(self, source, n, *extra, feed=None, timeout=120):
        """Runs `check --json`; returns (rc, report dict, stderr)."""
        writer = None
        if feed is not None:
            fifo = self.path("trng.fifo")
            os.mkfifo(fifo)
            source = source.replace("FIFO", fifo)
            writer = FifoWriter(fifo, feed)
            writer.start()
        proc = run_cli(["check", "--source", source, "-n", str(n), "--json"] + list(extra),
                       timeout=timeout)
        if writer is not None:
            writer.join(10)
            self.assertFalse(writer.is_alive(), "the FIFO writer did not finish")
        stderr = proc.stderr.decode("utf-8", "replace")
        lines = proc.stdout.decode().splitlines()
        self.assertEqual(len(lines), 1, "expected one JSON line: %r %s" % (proc.stdout, stderr))
        return proc.returncode, json.loads(lines[0]), stderr

    def test_good_source_passes(self):
        rc, r, err = self.check("test:5", 262144)
        self.assertEqual(rc, 0, "%r %s" % (r, err))
        self.assertTrue(r["pass"])
        self.assertEqual(r["source"], "test:5[TEST-ONLY]")
        self.assertEqual(r["bytes"], 262144)
        self.assertEqual(r["fips140_2"]["blocks"], 262144 // 2500)
        self.assertEqual(r["health"]["blocks_failed"], 0)
        self.assertGreater(r["health"]["blocks_passed"], 0)
        self.assertEqual(r["entropy"]["min_entropy_upper_bound"], 8)
        self.assertGreater(r["chi_square_p"], 1e-4)
        self.assertLess(abs(r["serial_correlation"]), 0.01)

    def test_human_report(self):
        proc = run_cli(["check", "--source", "test:5", "-n", "65536"])
        out = proc.stdout.decode()
        self.assertEqual(proc.returncode, 0, out)
        self.assertIn("rngmux check: test:5[TEST-ONLY] (claims 8 bits/byte)", out)
        for word in ("SP 800-90B", "FIPS 140-2", "min-entropy", "chi-square",
                     "serial correlation"):
            self.assertIn(word, out)
        self.assertTrue(out.rstrip().endswith("verdict: PASS"), out)

    def test_biased_source_fails(self):
        # bits that are 1 with probability 0.58: RCT/APT at 8 bits/byte may or may not
        # trip, but FIPS monobit and the min-entropy bound must
        rc, r, _ = self.check("file:FIFO,entropy=8", 100000, feed=biased_bytes(random.Random(1), 0.58))
        self.assertEqual(rc, 1, r)
        self.assertFalse(r["pass"])
        self.assertFalse(r["fips140_2"]["pass"])
        self.assertEqual(r["fips140_2"]["monobit"], r["fips140_2"]["blocks"])
        self.assertFalse(r["entropy"]["pass"])
        self.assertLess(r["entropy"]["min_entropy_upper_bound"], 7.5)

    def test_stuck_source_fails_the_health_tests(self):
        rng = random.Random(2)

        def stuck_now_and_then(n):
            data = bytearray(rng.getrandbits(8) for _ in range(n))
            data[1000:1064] = bytes(64)  # a stuck run in every chunk
            return bytes(data)
        rc, r, _ = self.check("file:FIFO,entropy=8", 200000, feed=stuck_now_and_then)
        self.assertEqual(rc, 1, r)
        self.assertGreater(r["health"]["blocks_failed"], 0)
        self.assertEqual(r["health"]["last_failure"], "RCT")
        self.assertFalse(r["health"]["pass"])

    def test_low_claim_is_judged_against_the_claim(self):
        # Each byte is one of 16 values: 4 bits of entropy per byte. Claimed as 4 it
        # passes (FIPS is not judged below 8 bits/byte); claimed as 8 it fails.
        def four_bits(seed):
            rng = random.Random(seed)
            return lambda n: bytes(rng.getrandbits(4) * 17 for _ in range(n))
        rc, r, _ = self.check("file:FIFO,entropy=4", 100000, feed=four_bits(3))
        self.assertEqual(rc, 0, r)
        self.assertFalse(r["fips140_2"]["judged"])
        self.assertEqual(r["claimed_bits_per_byte"], 4)
        self.assertGreaterEqual(r["entropy"]["min_entropy_upper_bound"], 4)

    def test_low_entropy_claimed_as_full_fails(self):
        rc, r, _ = self.check("file:FIFO,entropy=8", 100000,
                              feed=lambda n: bytes(random.getrandbits(4) * 17 for _ in range(n)))
        self.assertEqual(rc, 1)
        self.assertFalse(r["entropy"]["pass"])

    def test_source_that_cannot_be_read_fails_with_its_error(self):
        rc, r, _ = self.check("file:%s" % self.path("missing"), 4096, timeout=30)
        self.assertEqual(rc, 1)
        self.assertEqual(r["bytes"], 0)
        self.assertIn("missing: open: No such file or directory", r["read_error"])
        self.assertFalse(r["pass"])

    def test_source_that_is_too_slow_times_out(self):
        def trickle(n):  # a byte now and then: far too slow, and the writer sees EPIPE
            time.sleep(0.05)
            return b"\x5a"
        t0 = time.monotonic()
        rc, r, _ = self.check("file:FIFO", 4096, "--timeout", "1", feed=trickle, timeout=30)
        self.assertLess(time.monotonic() - t0, 20)
        self.assertEqual(rc, 1)
        self.assertLess(r["bytes"], 100)
        self.assertEqual(r["read_error"], "timed out after 1 s")
        self.assertFalse(r["pass"])

    def test_bad_flags_are_usage_errors(self):
        for args, word in ((["-n", "5"], "--bytes"), (["--source", "nope"], "nope"),
                           (["--health-alpha", "3"], "--health-alpha")):
            proc = run_cli(["check"] + args)
            err = proc.stderr.decode()
            self.assertEqual(proc.returncode, 2, err)
            self.assertIn(word, err)
            self.assertEqual(len(err.strip().splitlines()), 1, err)


if __name__ == "__main__":
    import unittest
    unittest.main()
