"""The seccomp filter of `rngmux serve` (docs/security.md): on by default, off and
log on request, and a daemon under it serves what the test source produces."""

import os
import unittest

from harness import (RngmuxTestCase, connect, egd_read, proc_status, recv_exact,
                     reference_stream, run_cli)

SEED = "sandbox"




class SandboxTest(RngmuxTestCase):
    def serve(self, *extra):
        sock = self.path("egd%d.sock" % len(self.daemons))
        return self.start_daemon(["--source", "test:%s" % SEED, "--allow-test-source",
                                  "--listen", "unix:%s" % sock, "--pool-size", "16384"]
                                 + list(extra))

    def exchange(self, d, n=4096):
        got = bytearray()
        with connect(d.endpoints[0]) as s:
            while len(got) < n:
                s.sendall(egd_read(255))  # blocking read: 255 bytes come back
                got += recv_exact(s, 255)
        return bytes(got[:n])

    def test_filter_is_on_by_default_and_the_daemon_serves_under_it(self):
        d = self.serve()
        status = proc_status(d.pid)
        self.assertEqual(status["Seccomp"], "2", status)
        self.assertEqual(status["NoNewPrivs"], "1", status)
        data = self.exchange(d)
        self.assert_from_reference(data, reference_stream(SEED, 1 << 20), "served under the filter")
        # Everything a running daemon does, once: stats, a reload, a second client.
        self.assertGreater(d.stats()["served_bytes"], 0)
        d.proc.send_signal(1)  # SIGHUP
        d.wait_log(r"reloaded: ")
        self.assertEqual(len(self.exchange(d, 1024)), 1024)
        self.assertIsNone(d.proc.poll(), "the daemon died under its filter")

    def test_no_core_dumps_whatever_the_filter(self):
        d = self.serve("--seccomp", "off")
        status = proc_status(d.pid)
        self.assertEqual(status["Seccomp"], "0", status)
        # Not dumpable: /proc/PID/* belongs to root, and RLIMIT_CORE is 0.
        self.assertEqual(os.stat("/proc/%d/environ" % d.pid).st_uid, 0)
        with open("/proc/%d/limits" % d.pid) as f:
            core = [line for line in f if line.startswith("Max core file size")]
        self.assertEqual(core[0].split()[4:6], ["0", "0"], core)
        self.assertEqual(len(self.exchange(d, 1024)), 1024)

    def test_log_mode_loads_a_filter_that_only_logs(self):
        d = self.serve("--seccomp", "log")
        self.assertEqual(proc_status(d.pid)["Seccomp"], "2")
        d.wait_log(r"seccomp filter in log mode")
        self.assertEqual(len(self.exchange(d, 1024)), 1024)

    def test_bad_value_is_one_line_naming_it(self):
        p = run_cli(["serve", "--seccomp", "maybe", "--control", "none"])
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(p.stderr.decode(),
                         "rngmux: error: --seccomp \"maybe\": expected on, off or log\n")
        path = self.path("rngmux.toml")
        with open(path, "w") as f:
            f.write('control = ""\nseccomp = "strict"\n')
        p = run_cli(["check-config", "--config", path])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("rngmux.toml:2: seccomp \"strict\": expected on, off or log",
                      p.stderr.decode())

    def test_check_config_prints_the_sandbox_keys(self):
        p = run_cli(["check-config", "--user", "nobody", "--seccomp", "log", "--control", "none"])
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout.decode()
        self.assertIn('user = "nobody"', out)
        self.assertIn('group = ""', out)
        self.assertIn('seccomp = "log"', out)


if __name__ == "__main__":
    unittest.main()
