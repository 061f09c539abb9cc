"""Statistical sanity of served bytes with external tools (rng-tools5 rngtest, ent)."""

import re
import shutil
import subprocess
import sys
import unittest

from harness import BINARY, RngmuxTestCase, has_cpu_flag

# rngtest uses the first 32 bits to seed its continuous-run test, then tests
# 20000-bit blocks: 4 + 1000 * 2500 bytes give exactly 1000 blocks.
BLOCKS = 1000
RNGTEST_BYTES = 4 + BLOCKS * 2500
ENT_BYTES = 1000000


def fetch_into(ep, n, tool_argv, timeout=120):
    """rngmux fetch EP -n N | tool; returns (fetch rc, fetch stderr, tool CompletedProcess-like)."""
    fetch = subprocess.Popen([BINARY, "fetch", ep, "-n", str(n)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        tool = subprocess.Popen(tool_argv, stdin=fetch.stdout, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        fetch.stdout.close()
        try:
            out, err = tool.communicate(timeout=timeout)
        finally:
            if tool.poll() is None:
                tool.kill()
                tool.wait(5)
        fetch_err = fetch.stderr.read()
        fetch_rc = fetch.wait(10)
    finally:
        if fetch.poll() is None:
            fetch.kill()
            fetch.wait(5)
        fetch.stderr.close()
    return fetch_rc, fetch_err, tool.returncode, out.decode(), err.decode()


class RngtestTest(RngmuxTestCase):
    def setUp(self):
        super().setUp()
        for tool in ("rngtest", "ent"):
            if shutil.which(tool) is None:
                self.fail("%s is not installed (scripts/install-deps.sh installs it)" % tool)
        self.source = "rdseed" if has_cpu_flag("rdseed") else "getrandom"

    def test_fips_140_2_and_ent(self):
        d = self.start_daemon(["--source", self.source, "--listen", "tcp:127.0.0.1:0"])
        d.wait_log(r"serving entropy from ", timeout=10)
        ep = d.endpoints[0]

        frc, ferr, rc, out, err = fetch_into(ep, RNGTEST_BYTES, ["rngtest"])
        self.assertEqual(frc, 0, ferr)
        ok = re.search(r"FIPS 140-2 successes: (\d+)", err)
        bad = re.search(r"FIPS 140-2 failures: (\d+)", err)
        self.assertTrue(ok and bad, "cannot parse rngtest output:\n" + err)
        successes, failures = int(ok.group(1)), int(bad.group(1))
        sys.stderr.write("\nrngtest (source %s): %d successes, %d failures\n"
                         % (self.source, successes, failures))
        self.assertEqual(successes + failures, BLOCKS, err)
        self.assertLessEqual(failures, 5, "rngtest (source %s):\n%s" % (self.source, err))

        frc, ferr, rc, out, err = fetch_into(ep, ENT_BYTES, ["ent"])
        self.assertEqual(frc, 0, ferr)
        self.assertEqual(rc, 0, err)
        m = re.search(r"Entropy = ([0-9.]+) bits per byte", out)
        self.assertTrue(m, "cannot parse ent output:\n" + out)
        self.assertIn("of this %d byte file" % ENT_BYTES, out)
        sys.stderr.write("ent: entropy %s bits/byte\n" % m.group(1))
        self.assertGreater(float(m.group(1)), 7.999, out)

        stats = d.stats()
        self.assertEqual(stats["source"], self.source)
        self.assertGreaterEqual(stats["served_bytes"], RNGTEST_BYTES + ENT_BYTES)
        self.assertEqual(stats["bad_requests"], 0)
        d.stop()


if __name__ == "__main__":
    unittest.main()
