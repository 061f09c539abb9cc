"""Listen endpoints: IPv6, unix socket files, raw and qemu options, fetch, shutdown."""

import os
import signal
import socket
import stat

from harness import (BINARY, RngmuxTestCase, connect, egd_pid, egd_read, has_ipv6_loopback,
                     recv_exact, recv_for, reference_stream, run_cli, wait_until)

SEED = 21


class TransportsTest(RngmuxTestCase):
    def serve(self, *listen, extra=(), **kw):
        args = ["--source", "test:%d" % SEED, "--allow-test-source"]
        for ep in listen:
            args += ["--listen", ep]
        return self.start_daemon(args + list(extra), **kw)

    def test_ipv6_loopback(self):
        ok, why = has_ipv6_loopback()
        self.skip_unless("ipv6", ok, why)
        ref = reference_stream(SEED, 1 << 20)
        d = self.serve("tcp:[::1]:0")
        self.assertRegex(d.endpoints[0], r"^tcp:\[::1\]:[1-9]\d*$")
        with connect(d.endpoints[0]) as s:
            self.assertEqual(s.family, socket.AF_INET6)
            s.sendall(egd_read(200))
            got = recv_exact(s, 200)
        # one client, one request: one contiguous piece of the pool's stream
        self.assertNotEqual(ref.find(got), -1, "IPv6 reply is not a piece of the test stream")
        d.stop()

    def test_unix_socket_mode(self):
        for mode in (0o600, 0o640):
            with self.subTest(mode=oct(mode)):
                path = self.path("mode%o.sock" % mode)
                d = self.serve("unix:%s,mode=%04o" % (path, mode))
                self.assertEqual(d.endpoints[0].split(",")[0], "unix:" + path)
                st = os.stat(path)
                self.assertTrue(stat.S_ISSOCK(st.st_mode))
                self.assertEqual(stat.S_IMODE(st.st_mode), mode)
                d.stop()
                self.assertFalse(os.path.exists(path), "socket file left behind after SIGTERM")

    def test_stale_unix_socket_is_replaced(self):
        path = self.path("stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()  # leaves a socket file with nobody behind it
        self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        d = self.serve("unix:" + path)
        with connect(d.endpoints[0]) as c:
            self.assertEqual(egd_pid(c), str(d.pid))
        d.stop()

    def test_live_unix_socket_is_not_stolen(self):
        path = self.path("live.sock")
        first = self.serve("unix:" + path, name="first")
        second = self.start_daemon(["--source", "test:1", "--allow-test-source",
                                    "--listen", "unix:" + path], name="second", expect_listen=0)
        rc = second.wait_exit(10)
        self.assertIsNotNone(rc, "second daemon on a live socket did not exit")
        self.assertNotEqual(rc, 0)
        errors = [l for l in second.log_lines() if path in l]
        self.assertTrue(errors, "no line naming %s in:\n%s" % (path, second.log_text()))
        self.assertEqual(second.listening(), [])
        # the first daemon still owns and serves the socket
        self.assertTrue(os.path.exists(path))
        with connect("unix:" + path) as c:
            self.assertEqual(egd_pid(c), str(first.pid))
        first.stop()

    def test_shutdown_leaves_a_newer_servers_socket_file_alone(self):
        path = self.path("shared.sock")
        old = self.serve("unix:%s" % path, name="old")
        os.unlink(path)  # e.g. an operator clearing the way for a replacement
        new = self.serve("unix:%s" % path, name="new")
        old.stop()
        self.assertTrue(os.path.exists(path), "the old server removed the new server's socket")
        with connect("unix:%s" % path) as s:
            s.sendall(egd_read(16))
            self.assertEqual(len(recv_exact(s, 16)), 16)
        new.stop()
        self.assertFalse(os.path.exists(path))

    def test_raw_endpoint_streams_without_requests(self):
        ref = reference_stream(SEED, 2 << 20)
        # One daemon per endpoint: a raw stream fills the socket's buffers as far as the
        # kernel lets it (megabytes over loopback TCP), so a second client of the same
        # daemon would read from an unknown distance into the stream.
        for spec in ("tcp:127.0.0.1:0,raw", "unix:%s,raw" % self.path("raw.sock")):
            d = self.serve(spec, name="raw-" + spec.split(":")[0])
            ep = d.endpoints[0]
            with self.subTest(ep=ep), connect(ep) as s:
                got = recv_exact(s, 64 * 1024)  # no request sent: all of it unsolicited
                self.assert_from_reference(got, ref, ep)
            d.stop()

    def test_qemu_endpoint_keeps_lead(self):
        ref = reference_stream(SEED, 2 << 20)
        d = self.serve("tcp:127.0.0.1:0,qemu", "unix:%s,qemu,lead=512" % self.path("q.sock"))
        for ep in d.endpoints:
            lead = 4096 if ep.startswith("tcp:") else 512
            with self.subTest(ep=ep), connect(ep) as s:
                # The whole lead comes unsolicited right after accept, and nothing more:
                # one contiguous piece of the pool's stream.
                lead_bytes = recv_exact(s, lead)
                self.assertNotEqual(ref.find(lead_bytes), -1, "lead is not a piece of the stream")
                more, eof = recv_for(s, 1.0)
                self.assertFalse(eof)
                self.assertEqual(len(more), 0, "more than the lead came unsolicited")
                # The lead is topped up in pieces of a quarter of it: fewer requests than
                # that get nothing new (the peer still has the rest of the lead) ...
                quarter = lead // 4 // 0x40
                s.sendall(egd_read(0x40) * (quarter - 1))
                more, eof = recv_for(s, 0.5)
                self.assertFalse(eof)
                self.assertEqual(len(more), 0, "topped up before a quarter of the lead was used")
                # ... and the request that completes the quarter brings exactly what was asked.
                s.sendall(egd_read(0x40))
                top_up = recv_exact(s, quarter * 0x40)
                more, eof = recv_for(s, 1.0)
                self.assertFalse(eof)
                self.assertEqual(len(more), 0, "lead must be topped up by what was requested")
                at = ref.find(top_up)
                self.assertNotEqual(at, -1, "top-up is not a piece of the stream")
                self.assertEqual(ref.find(lead_bytes[:64]) + lead, at,
                                 "the top-up must be the bytes right after the lead")
        d.stop()

    def test_fetch_over_tcp_and_unix(self):
        ref = reference_stream(SEED, 2 << 20)
        d = self.serve("tcp:127.0.0.1:0", "unix:%s" % self.path("f.sock"))
        for ep in d.endpoints:
            with self.subTest(ep=ep):
                p = run_cli(["fetch", ep, "-n", "100000"], timeout=30)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(len(p.stdout), 100000)
                self.assert_from_reference(p.stdout, ref, "fetch " + ep)
                p = run_cli(["fetch", ep, "-n", "1000", "--chunk", "7", "--depth", "3"], timeout=30)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(len(p.stdout), 1000)
                # 143 requests of 7 bytes and one of 6, in order, from the only client:
                # one contiguous piece of the stream
                self.assertNotEqual(ref.find(p.stdout), -1,
                                    "--chunk 7 --depth 3 bytes are not one piece of the stream")
                p = run_cli(["fetch", ep, "-n", "16", "--hex"], timeout=30)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertRegex(p.stdout.decode(), r"^[0-9a-f]{32}\n$")
                self.assertNotEqual(ref.find(bytes.fromhex(p.stdout.decode().strip())), -1,
                                    "--hex bytes are not from the stream")
        stats = d.stats()
        self.assertGreaterEqual(stats["served_bytes"], 2 * 101016)
        self.assertGreaterEqual(stats["connections_total"], 6)
        d.stop()
        # the daemon is gone: fetch must fail with one line, not hang
        p = run_cli(["fetch", d.endpoints[0], "-n", "10"], timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(len(p.stderr.decode().strip().splitlines()), 1, p.stderr)

    def test_fetch_through_a_lead_endpoint_gets_more_than_the_lead(self):
        # The lead arrives before any request, so fetch must not count it as owed:
        # it once stalled after lead + depth * chunk bytes.
        ref = reference_stream(SEED, 2 << 20)
        d = self.serve("tcp:127.0.0.1:0,qemu", "unix:%s,lead=300" % self.path("l.sock"))
        for ep in d.endpoints:
            with self.subTest(ep=ep):
                p = run_cli(["fetch", ep, "-n", "200000", "--depth", "2", "--chunk", "64",
                             "--timeout", "20"], timeout=30)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(len(p.stdout), 200000)
                self.assert_from_reference(p.stdout, ref, "fetch " + ep)

    def test_fetch_fails_on_early_eof(self):
        # a server that answers one request and hangs up
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(10)
        port = srv.getsockname()[1]
        import subprocess
        proc = subprocess.Popen([BINARY, "fetch", "tcp:127.0.0.1:%d" % port, "-n", "1000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            conn, _ = srv.accept()
            conn.settimeout(5)
            recv_exact(conn, 2)
            conn.sendall(b"x" * 100)
            conn.close()
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            srv.close()
        self.assertNotEqual(proc.returncode, 0)
        self.assertEqual(len(err.decode().strip().splitlines()), 1, err)

    def test_sigterm_and_sigint_exit_cleanly_and_remove_socket(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(sig=sig.name):
                path = self.path("term-%s.sock" % sig.name)
                d = self.serve("unix:" + path, "tcp:127.0.0.1:0")
                with connect(d.endpoints[1]) as s:  # a connected client does not block exit
                    s.sendall(egd_read(10))
                    recv_exact(s, 10)
                    d.stop(sig=sig)
                self.assertEqual(d.returncode, 0)
                self.assertFalse(os.path.exists(path), "unix socket file not removed")

    def test_a_signal_right_after_start_is_never_lost(self):
        # Each signal comes as soon as the daemon says it listens: before its event loop
        # runs, or while it fills its pool. A SIGTERM sent then was once lost under
        # ThreadSanitizer (a handler deferred to a thread that then slept in epoll_wait);
        # read from a signalfd, the kernel keeps it until the loop reads it.
        for i in range(25):
            d = self.serve("unix:" + self.path("early%d.sock" % i), name="early%d" % i)
            if i % 2:
                d.proc.send_signal(signal.SIGUSR1)
                d.wait_log("info: stats: source=", 10)
            d.stop()
            self.assertEqual(d.returncode, 0)

    def test_default_serve_prints_qemu_arguments(self):
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        taken = None
        try:
            probe.bind(("127.0.0.1", 1024))
        except OSError as e:
            taken = e
        finally:
            probe.close()
        self.skip_unless("port1024", taken is None, "127.0.0.1:1024 is in use: %s" % taken)
        d = self.start_daemon(["--source", "test:1", "--allow-test-source"], expect_listen=1)
        self.assertEqual(d.endpoints[0].split(",")[0], "tcp:127.0.0.1:1024")
        printed = wait_until(lambda: "rng-egd" in (d.stdout_text() + d.log_text()), 5)
        self.assertTrue(printed, "no QEMU arguments (rng-egd) printed:\n%s\n%s"
                        % (d.stdout_text(), d.log_text()))
        text = d.stdout_text() + d.log_text()
        self.assertIn("-chardev", text)
        self.assertIn("1024", text)
        # qemu compatibility on the default endpoint: unsolicited bytes after connect
        with connect("tcp:127.0.0.1:1024") as s:
            recv_exact(s, 64)  # no request sent
        d.stop()


if __name__ == "__main__":
    import unittest
    unittest.main()
