"""The control socket: `rngmux status` (text and --json), `stats` and `reload` against a
running daemon with clients; a failed reload shows in status; peers that are neither
root nor the daemon's user are refused; garbage closes one connection only."""

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time

from harness import (BINARY, RngmuxTestCase, connect, egd_read, recv_exact, run_cli,
                     wait_closed, wait_until)


class StatusTest(RngmuxTestCase):
    def setUp(self):
        super().setUp()
        # A directory others may traverse (the refused-peer test runs a client as nobody).
        self.run_dir = tempfile.mkdtemp(prefix="rngmux-control-")
        os.chmod(self.run_dir, 0o755)
        self.addCleanup(shutil.rmtree, self.run_dir, True)
        self.control = os.path.join(self.run_dir, "sub", "control.sock")

    def serve(self, *extra):
        return self.start_daemon(["--source", "test:5", "--allow-test-source",
                                  "--listen", "tcp:127.0.0.1:0", "--listen",
                                  "unix:%s" % self.path("b.sock"),
                                  "--control", self.control] + list(extra),
                                 wait_for=r"control socket at ")

    def cli(self, *args, **kw):
        return run_cli(list(args) + ["--control", self.control], **kw)

    def status_json(self):
        p = self.cli("status", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def test_socket_is_private_and_removed_at_exit(self):
        d = self.serve()
        mode = os.stat(self.control).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(stat.S_IMODE(mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.control)).st_mode), 0o755)
        d.stop()
        self.assertFalse(os.path.exists(self.control))
        p = self.cli("status")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr.decode().count("\n"), 1, p.stderr)
        self.assertIn("cannot reach the daemon at %s" % self.control, p.stderr.decode())

    def test_stale_socket_is_replaced_and_a_live_one_is_not(self):
        os.makedirs(os.path.dirname(self.control))
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(self.control)
        stale.close()  # the file stays, no one accepts
        self.serve()
        self.assertEqual(self.status_json()["sources"][0]["state"], "serving")
        second = subprocess.run([BINARY, "serve", "--source", "test:5", "--allow-test-source",
                                 "--listen", "tcp:127.0.0.1:0", "--control", self.control],
                                capture_output=True, timeout=30)
        self.assertEqual(second.returncode, 1)
        self.assertIn("control socket %s: another daemon is using it" % self.control,
                      second.stderr.decode())

    def test_status_reports_what_clients_read(self):
        d = self.serve()
        tcp, unix = d.endpoints[0], "unix:" + self.path("b.sock")
        a1, a2 = connect(tcp), connect(tcp)
        b = connect(unix)
        for s in (a1, a2, b):
            self.addCleanup(s.close)
        read = {"tcp": 0, "unix": 0}
        for s, key, n in ((a1, "tcp", 30), (a2, "tcp", 10), (b, "unix", 20)):
            for _ in range(n):
                s.sendall(egd_read(255))
                recv_exact(s, 255)
                read[key] += 255
        status = self.status_json()
        by_id = {e["id"]: e for e in status["endpoints"]}
        self.assertEqual(set(by_id), {"listen tcp:127.0.0.1:0", "listen " + unix})
        ep_tcp, ep_unix = by_id["listen tcp:127.0.0.1:0"], by_id["listen " + unix]
        self.assertEqual(ep_tcp["address"], tcp)
        self.assertEqual(ep_tcp["clients"], 2)
        self.assertEqual(ep_unix["clients"], 1)
        # Blocking reads are answered exactly: what the clients read is what was served.
        self.assertEqual(ep_tcp["served_bytes"], read["tcp"])
        self.assertEqual(ep_unix["served_bytes"], read["unix"])
        self.assertGreaterEqual(status["pool"]["bytes_out"], read["tcp"] + read["unix"])
        self.assertGreaterEqual(status["pool"]["bytes_in"], status["pool"]["bytes_out"])
        self.assertEqual(status["pool"]["capacity"], 262144)
        src = status["sources"][0]
        self.assertEqual((src["state"], src["healthy"], src["serving"]), ("serving", True, True))
        self.assertGreater(src["bytes_accepted"], 0)
        self.assertEqual(status["counters"]["clients"], 3)
        self.assertEqual(status["counters"]["served_bytes"], read["tcp"] + read["unix"])
        self.assertEqual(status["pid"], d.pid)
        self.assertGreater(status["uptime_seconds"], 0)
        # The busiest identity first: both TCP connections are one local user.
        top = status["clients"][0]
        self.assertEqual((top["identity"], top["endpoint"], top["connections"],
                          top["served_bytes"]),
                         ("uid:%d" % os.geteuid(), "listen tcp:127.0.0.1:0", 2, read["tcp"]))
        self.assertEqual(status["client_groups"], 2)

        text = self.cli("status").stdout.decode()
        self.assertRegex(text, r"rngmux \S+, pid %d, up \d\d:\d\d:\d\d" % d.pid)
        self.assertIn("Last reload: never", text)
        self.assertRegex(text, r"\ntest:5\S*\s+serving\s+ok\s+\d+\s+\d+\s+0\s")
        self.assertRegex(text, r"\nlisten tcp:127\.0\.0\.1:0\s+%s\s+2\s+%d\s+0\s+0\n"
                         % (tcp, read["tcp"]))
        self.assertRegex(text, r"\nuid:%d\s+listen tcp:127\.0\.0\.1:0\s+2\s+%d\n"
                         % (os.geteuid(), read["tcp"]))
        # Aligned: every row of the endpoint table starts its columns at the same place.
        lines = text.splitlines()
        head = lines.index("Endpoints") + 1
        col = lines[head].index("Address")
        for row in lines[head + 1:head + 3]:
            self.assertEqual(row[col - 2:col], "  ", row)
            self.assertNotEqual(row[col], " ", row)

        # A client that leaves keeps its bytes in the endpoint's total.
        a1.close()
        wait_until(lambda: self.status_json()["endpoints"][0]["clients"] == 1, 10)
        self.assertEqual(self.status_json()["endpoints"][0]["served_bytes"], read["tcp"])
        stats = self.cli("stats")
        self.assertEqual(stats.returncode, 0, stats.stderr)
        kv = dict(line.split("=", 1) for line in stats.stdout.decode().splitlines())
        self.assertEqual(int(kv["served_bytes"]), read["tcp"] + read["unix"])
        self.assertEqual(kv["source_state"], "serving")
        self.assertIn("control_bad_requests", kv)

    def test_rate_is_sampled(self):
        self.serve()
        wait_until(lambda: self.status_json()["sources"][0]["bytes_accepted"] > 0, 10)
        # The pool is full, so nothing enters; a reader makes room and the source refills.
        d_ep = self.daemons[0].endpoints[0]
        with connect(d_ep) as s:
            deadline = time.monotonic() + 8
            seen = 0
            while time.monotonic() < deadline and seen == 0:
                for _ in range(64):
                    s.sendall(egd_read(255))
                    recv_exact(s, 255)
                seen = self.status_json()["sources"][0]["rate_bytes_per_second"]
            self.assertGreater(seen, 0)

    def test_failed_reload_shows_in_status_and_a_good_one_clears_it(self):
        config = self.path("rngmux.toml")
        good = ('allow-test-source = true\n[[source]]\nspec = "test:5"\n'
                '[[listen]]\naddress = "tcp:127.0.0.1:0"\n')
        with open(config, "w") as f:
            f.write(good)
        d = self.start_daemon(["--config", config, "--control", self.control],
                              expect_listen=1, wait_for=r"control socket at ")
        # The file broken on purpose: `rngmux reload` fails with the file, line and key.
        with open(config, "w") as f:
            f.write(good + "wieght = 2\n")
        p = self.cli("reload")
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr.decode(),
                         r"^rngmux: reload failed: .*rngmux\.toml:6: listen\[0\]: unknown key "
                         r"\"wieght\"\n$")
        d.wait_log(r"reload failed, the running configuration stays: .*wieght")
        reload = self.status_json()["reload"]
        self.assertEqual((reload["succeeded"], reload["failed"], reload["last_ok"]), (0, 1, False))
        self.assertIn("wieght", reload["last_message"])
        self.assertGreater(reload["last_time"], time.time() - 60)
        text = self.cli("status").stdout.decode()
        self.assertRegex(text, r"Last reload: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, FAILED: "
                               r".*rngmux\.toml:6: .*\(0 ok, 1 failed\)")
        # The daemon goes on serving with the old configuration.
        with connect(d.endpoints[0]) as s:
            s.sendall(egd_read(16))
            self.assertEqual(len(recv_exact(s, 16)), 16)
        # Repaired, and reloaded by SIGHUP (the same path): status says so.
        with open(config, "w") as f:
            f.write(good)
        d.proc.send_signal(1)
        self.assertTrue(wait_until(lambda: self.status_json()["reload"]["succeeded"] == 1, 10))
        reload = self.status_json()["reload"]
        self.assertEqual((reload["failed"], reload["last_ok"]), (1, True))

    def test_other_users_are_refused(self):
        if shutil.which("runuser") is None or os.geteuid() != 0:
            self.skipTest("needs root and runuser to run a client as nobody")
        d = self.serve()
        as_nobody = ["runuser", "-u", "nobody", "--", BINARY]
        p = subprocess.run(as_nobody + ["status", "--control", self.control],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("Permission denied", p.stderr.decode())
        # Even with the file opened up, the peer's credentials are checked.
        os.chmod(self.control, 0o666)
        p = subprocess.run(as_nobody + ["status", "--control", self.control],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("closed the connection without an answer", p.stderr.decode())
        d.wait_log(r"control socket: refused uid 65534 \(pid \d+\): only root and uid 0")
        self.assertEqual(self.status_json()["counters"]["control_refused_peers"], 1)

    def test_connections_beyond_the_limit_are_closed_counted_and_logged_once(self):
        d = self.serve()
        idle = []
        try:
            for _ in range(16):  # served: each waits for its request line
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.control)
                idle.append(s)
            # The 17th to 21st: closed at once, without an answer.
            for _ in range(5):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(self.control)
                    self.assertEqual(s.recv(1), b"")
        finally:
            for s in idle:
                s.close()
        # Until the daemon has seen the idle ones go, a status request is refused too.
        turned_away = 0
        for _ in range(100):
            p = self.cli("status", "--json")
            if p.returncode == 0:
                break
            turned_away += 1
            time.sleep(0.1)
        self.assertEqual(p.returncode, 0, p.stderr)
        counters = json.loads(p.stdout)["counters"]
        self.assertEqual(counters["control_busy_refusals"], 5 + turned_away)
        self.assertEqual(d.count_log(r"control socket: 16 connections open already"), 1)

    def test_garbage_closes_one_connection(self):
        d = self.serve()
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.connect(self.control)  # says nothing: timed out later, others go on
        bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bad.connect(self.control)
        bad.sendall(b"\x00\xffGET / HTTP/1.1\r\n")
        reply = bad.makefile("rb").readline()
        self.assertEqual(json.loads(reply)["ok"], False)
        wait_closed(bad, 10)
        bad.close()
        long = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        long.connect(self.control)
        long.sendall(b"s" * 100)
        self.assertIn(b"longer than 64 bytes", long.makefile("rb").readline())
        long.close()
        d.wait_log(r"control socket: closing a connection: request has a byte that is not "
                   r"printable ASCII \(0x00\)")
        self.assertEqual(self.status_json()["counters"]["control_bad_requests"], 2)
        # The silent one is closed after the request timeout and counted.
        idle.settimeout(15)
        self.assertEqual(idle.recv(100), b"")
        idle.close()
        self.assertEqual(self.status_json()["counters"]["control_bad_requests"], 3)
        self.assertTrue(d.wait_log(r"no complete request within 5 s"))


if __name__ == "__main__":
    import unittest
    unittest.main()
