"""Command-line contract: version, help, errors, read."""

import os
import random
import re
import shutil
import tempfile
import threading
import unittest

from harness import BINARY, has_cpu_flag, run_cli


def err_lines(proc):
    return [l for l in proc.stderr.decode("utf-8", "replace").splitlines() if l.strip()]


class CliTest(unittest.TestCase):
    def setUp(self):
        if not os.access(BINARY, os.X_OK):
            self.fail("rngmux binary %r is missing (set RNGMUX_BINARY)" % BINARY)

    def assert_one_line_error(self, args, must_contain):
        p = run_cli(args, timeout=10)
        self.assertNotEqual(p.returncode, 0, "rngmux %s succeeded" % " ".join(args))
        lines = err_lines(p)
        self.assertEqual(len(lines), 1, "expected exactly one stderr line for %r, got %r"
                         % (args, lines))
        self.assertIn(must_contain, lines[0])
        return lines[0]

    def test_version(self):
        p = run_cli(["--version"], timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertEqual(p.stdout.decode().strip(), "rngmux 0.1.0")

    def test_help(self):
        for args in (["--help"], ["serve", "--help"], ["read", "--help"], ["fetch", "--help"]):
            with self.subTest(args=args):
                p = run_cli(args, timeout=10)
                self.assertEqual(p.returncode, 0, p.stderr)
                text = (p.stdout + p.stderr).decode()
                self.assertIn("--", text)
        p = run_cli(["serve", "--help"], timeout=10)
        text = (p.stdout + p.stderr).decode()
        for flag in ("--source", "--listen", "--connect", "--allow-test-source"):
            self.assertIn(flag, text)

    def test_bad_flags(self):
        self.assert_one_line_error(["serve", "--bogus-flag"], "--bogus-flag")
        self.assert_one_line_error(["read", "-n", "4", "--frobnicate"], "--frobnicate")
        self.assert_one_line_error(["fetch", "tcp:127.0.0.1:1", "-n", "4", "--nope"], "--nope")

    def test_unknown_subcommand_is_named(self):
        self.assert_one_line_error(["no-such-command"], "no-such-command")

    def test_bad_endpoint_exact_message(self):
        p = run_cli(["serve", "--listen", "tcp:127.0.0.1"], timeout=10)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(p.stderr.decode(),
                         'rngmux: error: listen "tcp:127.0.0.1": expected tcp:HOST:PORT\n')

    def test_bad_specs_name_the_input(self):
        self.assert_one_line_error(["serve", "--listen", "sctp:1.2.3.4:5"], "sctp:1.2.3.4:5")
        self.assert_one_line_error(["serve", "--listen", "udp:127.0.0.1:5,allow=0.0.0.0/0"],
                                   "0.0.0.0/0")
        self.assert_one_line_error(["serve", "--listen", "tcp:127.0.0.1:99999"],
                                   "tcp:127.0.0.1:99999")
        self.assert_one_line_error(["serve", "--listen", "unix:/tmp/x.sock,mode=999"],
                                   "mode=999")
        self.assert_one_line_error(["serve", "--connect", "tcp:localhost"], "tcp:localhost")
        self.assert_one_line_error(["serve", "--source", "bogus:1"], "bogus:1")
        self.assert_one_line_error(["read", "--source", "nonsense", "-n", "4"], "nonsense")
        self.assert_one_line_error(["serve", "--pool-size", "banana"], "banana")
        self.assert_one_line_error(["fetch", "tcp:127.0.0.1:1", "-n", "4", "--chunk", "256"],
                                   "256")

    def test_test_source_needs_explicit_flag(self):
        line = self.assert_one_line_error(["serve", "--source", "test:1",
                                           "--listen", "tcp:127.0.0.1:0"], "--allow-test-source")
        self.assertIn("test", line)

    def test_read_hex_getrandom(self):
        p = run_cli(["read", "--source", "getrandom", "-n", "10", "--hex"], timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout.decode(), r"^[0-9a-f]{20}\n$")
        self.assertEqual(p.stderr.decode(), "rngmux: 10 health-tested bytes from getrandom\n")
        q = run_cli(["read", "--source", "getrandom", "-n", "10", "--hex"], timeout=20)
        self.assertNotEqual(p.stdout, q.stdout)

    def test_read_raw_length(self):
        # default source (auto) may be a slow /dev/hwrng: keep its reads small, and let
        # read's own timeout, not the harness's, end one that is too slow
        for source, n in (("auto", 1), ("auto", 255), ("auto", 256), ("getrandom", 100000)):
            with self.subTest(source=source, n=n):
                p = run_cli(["read", "--source", source, "-n", str(n), "--timeout", "20"],
                            timeout=60)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(len(p.stdout), n)

    def test_read_test_source_deterministic(self):
        a = run_cli(["read", "--source", "test:5", "-n", "64"], timeout=20)
        b = run_cli(["read", "--source", "test:5", "-n", "64"], timeout=20)
        c = run_cli(["read", "--source", "test:6", "-n", "64"], timeout=20)
        for p in (a, b, c):
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(len(p.stdout), 64)
        self.assertEqual(a.stdout, b.stdout)
        self.assertNotEqual(a.stdout, c.stdout)
        # a longer read is an extension of the shorter one (one stream)
        d = run_cli(["read", "--source", "test:5", "-n", "4096"], timeout=20)
        self.assertEqual(d.stdout[:64], a.stdout)
        h = run_cli(["read", "--source", "test:5", "-n", "64", "--hex"], timeout=20)
        self.assertEqual(h.stdout.decode().strip(), a.stdout.hex())

    def test_read_rdseed(self):
        p = run_cli(["read", "--source", "rdseed", "-n", "32"], timeout=30)
        if has_cpu_flag("rdseed"):
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(len(p.stdout), 32)
        else:
            self.assertNotEqual(p.returncode, 0)
            lines = err_lines(p)
            self.assertEqual(len(lines), 1, lines)
            self.assertTrue(re.search(r"(?i)rdseed", lines[0]), lines[0])

    def test_read_file_source(self):
        # a character device: no reference, only the length
        p = run_cli(["read", "--source", "file:/dev/urandom", "-n", "300"], timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(p.stdout), 300)
        # a FIFO with known bytes (8 bits a byte: no conditioning): what read prints is
        # one contiguous piece of what was written
        workdir = tempfile.mkdtemp(prefix="rngmux-cli-")
        try:
            fifo = os.path.join(workdir, "trng")
            os.mkfifo(fifo)
            written = random.Random(11).randbytes(1 << 20)

            def writer():
                try:
                    with open(fifo, "wb") as f:
                        f.write(written)
                except (BrokenPipeError, OSError):
                    pass  # read stops reading once it has its bytes

            t = threading.Thread(target=writer, daemon=True)
            t.start()
            p = run_cli(["read", "--source", "file:%s,entropy=8" % fifo, "-n", "3000",
                         "--timeout", "20"], timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(len(p.stdout), 3000)
            self.assertNotEqual(written.find(p.stdout), -1,
                                "read printed bytes that are not one piece of the FIFO's")
            t.join(10)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def test_read_from_a_broken_source_fails_fast_naming_it(self):
        # `read` is the check a user runs after plugging a device in: a source
        # that cannot be read must say so at once, not retry until the timeout.
        line = self.assert_one_line_error(
            ["read", "--source", "file:/nonexistent/trng", "-n", "4", "--timeout", "20"],
            "/nonexistent/trng")
        self.assertIn("No such file or directory", line)


if __name__ == "__main__":
    unittest.main()
