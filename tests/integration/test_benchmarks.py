"""bench/benchmarks.py runs to its end: each benchmark BENCHMARKS.md quotes, in its
--quick form, against the binary under test. The numbers are not judged here (they are
measurements, recorded in BENCHMARKS.md); a benchmark that crashes, cannot read the
daemon's stats or prints no result fails the test command instead of leaving a silent
gap. The QEMU guest comparison (`--only guest`) is left to the guest test files, which
drive the same guest and backends.
"""

import os
import subprocess
import sys
import unittest

from harness import BINARY

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "benchmarks.py")


class BenchmarksRunTest(unittest.TestCase):
    def run_benchmark(self, name, timeout=240):
        proc = subprocess.run([sys.executable, SCRIPT, "--binary", BINARY, "--quick", "--only",
                               name], capture_output=True, timeout=timeout)
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        if "skipped, " in out:
            self.skipTest(out.strip())
        self.assertEqual(proc.returncode, 0, "benchmarks.py --only %s:\n%s\n%s"
                         % (name, out, err[-3000:]))
        self.assertNotIn("FAILED", out)
        lines = [line for line in out.splitlines() if line.strip()]
        self.assertTrue(lines, "no result line:\n%s" % err[-3000:])
        # One result per benchmark: a line that starts with its name, continued on
        # indented lines.
        self.assertTrue(lines[0].startswith(name), out)
        self.assertTrue(all(line.startswith((name, " ")) for line in lines), out)
        return out

    def test_capacity(self):
        out = self.run_benchmark("capacity")
        self.assertIn("s/GB", out)

    def test_latency(self):
        self.assertIn("p99", self.run_benchmark("latency"))

    def test_guests(self):
        out = self.run_benchmark("guests")
        self.assertIn("loopback TCP", out)
        self.assertIn("unix socket", out)

    def test_floor(self):
        out = self.run_benchmark("floor")
        self.assertIn("rngmux (test source)", out)
        self.assertIn("floor_server, 2 event loops", out)

    def test_slow(self):
        self.assertIn("Jain", self.run_benchmark("slow"))

    def test_scale(self):
        self.assertIn("idle connections", self.run_benchmark("scale"))

    def test_startup(self):
        self.assertIn("median", self.run_benchmark("startup"))

    def test_tenants(self):
        self.run_benchmark("tenants")

    def test_operate(self):
        self.run_benchmark("operate")

    def test_relay(self):
        self.run_benchmark("relay")


if __name__ == "__main__":
    unittest.main()
