"""--source-mode mix, checked byte for byte against the test sources' reference streams.

`rngmux read --source test:SEED...` prints the exact stream a test source puts into the
pool (after its start-up test), so what a mixing daemon serves from its first byte on
must be the XOR of the configured sources' reference streams: never one source's bytes
alone, neither at start-up (whichever source passes its start-up test first) nor while
a healthy source is slow (a block every 5.12 s, more than the 5 s silence timeout).
Serving fewer sources is an explicit option (--mix-min-sources) that logs DEGRADED.
"""

import re

from harness import RngmuxTestCase, reference_stream, run_cli, wait_until

SLOW = "test:2,rate=100,block=512"  # a 512-byte block every 5.12 s


def shown(spec):
    """How logs and stats name a test source."""
    return spec + "[TEST-ONLY]"


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


class MixTest(RngmuxTestCase):
    def start_mix(self, sources, extra=()):
        args = []
        for spec in sources:
            args += ["--source", spec]
        args += ["--source-mode", "mix", "--allow-test-source",
                 "--listen", "unix:%s" % self.path("rng.sock")] + list(extra)
        return self.start_daemon(args)

    def fetch(self, d, n, timeout=90):
        proc = run_cli(["fetch", d.endpoints[0], "-n", str(n), "--timeout", str(timeout)],
                       timeout=timeout + 30)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(len(proc.stdout), n)
        return proc.stdout

    def assert_xor_of(self, served, streams, what):
        expected = streams[0]
        for s in streams[1:]:
            expected = xor(expected, s)
        for i in range(len(served)):
            if served[i] != expected[i]:
                self.fail("%s: byte %d of %d is not the XOR of the reference streams"
                          % (what, i, len(served)))

    def assert_never_served_alone(self, d):
        lines = [l for l in d.log_lines() if "serving from" in l]
        self.assertTrue(lines, "no serving line in the log")
        for line in lines:
            self.assertIn("+", line.split("serving from", 1)[1], line)
        self.assertEqual(d.count_log(r"DEGRADED"), 0)

    def test_two_fast_sources_are_mixed_from_the_first_byte(self):
        # More than the 256 KiB pool: the whole first fill and what follows it.
        n = 300 * 1024
        d = self.start_mix(["test:1", "test:2"])
        served = self.fetch(d, n)
        self.assert_xor_of(served, [reference_stream("1", n), reference_stream("2", n)],
                           "test:1 + test:2")
        s = d.stats()
        self.assertEqual(s["serving"], shown("test:1") + "+" + shown("test:2"))
        self.assertEqual(s["mix_degraded"], 0)
        self.assertEqual(s["source_switches"], 0)
        self.assert_never_served_alone(d)
        d.stop()

    def test_a_slow_source_is_waited_for_not_left_out(self):
        n = 1024  # two of the slow source's blocks, after its 1024-byte start-up test
        d = self.start_mix(["test:1", SLOW])
        served = self.fetch(d, n)
        self.assert_xor_of(served, [reference_stream("1", n),
                                    reference_stream("2,block=512", n)],
                           "test:1 + " + SLOW)
        s = d.stats()
        self.assertEqual(s["serving"], shown("test:1") + "+" + shown(SLOW))
        self.assertEqual(s["mix_degraded"], 0)
        self.assertEqual(s["source2_state"], "serving")
        self.assert_never_served_alone(d)
        d.stop()

    def test_three_sources(self):
        n = 64 * 1024
        d = self.start_mix(["test:1", "test:2", "test:3,block=512"])
        served = self.fetch(d, n)
        self.assert_xor_of(served, [reference_stream("1", n), reference_stream("2", n),
                                    reference_stream("3,block=512", n)], "three sources")
        d.stop()

    def test_fewer_sources_only_when_allowed_and_loudly(self):
        # The slow source is still in its start-up test (10 s) when the 3 s grace ends:
        # with --mix-min-sources 1 test:1 serves alone, and says so.
        d = self.start_mix(["test:1", SLOW], ["--mix-min-sources", "1"])
        d.wait_log(re.escape("DEGRADED: mixing only %s of 2 configured sources" % shown("test:1")),
                   timeout=20)
        self.assertEqual(d.stats()["mix_degraded"], 1)
        n = 4096
        served = self.fetch(d, n)
        self.assertEqual(served, reference_stream("1", n),
                         "degraded mix serves the remaining source's stream")
        d.stop()

    def test_min_sources_is_checked_once_at_start(self):
        cases = [
            (["--source", "test:1", "--source", "test:2", "--source-mode", "mix",
              "--mix-min-sources", "3"], "--mix-min-sources 3: more than the 2 sources given"),
            (["--source", "test:1", "--source", "test:2", "--mix-min-sources", "1"],
             "--mix-min-sources needs --source-mode mix"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                proc = run_cli(["serve", "--allow-test-source"] + args)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertIn(message, proc.stderr.decode())


if __name__ == "__main__":
    import unittest
    unittest.main()
