"""rngmux as the connecting side (QEMU `server=on,wait=off` chardevs): retry, serve, reconnect."""

import os
import socket
import subprocess
import sys
import time

from harness import (RngmuxTestCase, egd_pid, egd_read, free_tcp_port, recv_exact, recv_for,
                     reference_stream)

ACCEPT_TIMEOUT = 20  # generous: the daemon backs off between attempts


class Listener:
    """A one-shot Python server socket standing in for QEMU's listening chardev."""

    def __init__(self, ep):
        self.ep = ep
        if ep.startswith("unix:"):
            self.path = ep[len("unix:"):].split(",", 1)[0]
            if os.path.exists(self.path):
                os.unlink(self.path)
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(self.path)
        else:
            self.path = None
            host, _, port = ep[len("tcp:"):].split(",", 1)[0].rpartition(":")
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, int(port)))
        self.sock.listen(4)
        self.sock.settimeout(ACCEPT_TIMEOUT)

    def accept(self):
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        return conn

    def close(self):
        self.sock.close()
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)


class ConnectTest(RngmuxTestCase):
    def run_reconnect_scenario(self, ep):
        ref = reference_stream(11, 1 << 20)
        d = self.start_daemon(["--source", "test:11", "--allow-test-source",
                               "--log-level", "debug", "--connect", ep])
        d.wait_log(r"cannot connect to ", timeout=10)
        time.sleep(1.5)  # several attempts fail meanwhile
        self.assertEqual(d.count_log(r"rngmux (info|warning|error): cannot connect to "), 1,
                         "'cannot connect' must be logged (above debug) only on state change")
        self.assertEqual(d.count_log(r"rngmux (info|warning|error): connected to "), 0)
        self.assertFalse(d.exited(), "daemon exited while its peer was away")

        lst = Listener(ep)
        try:
            conn = lst.accept()
            with conn:
                d.wait_log(r"connected to ", timeout=10)
                conn.sendall(egd_read(0x40))
                first = recv_exact(conn, 64)
                self.assertNotEqual(ref.find(first), -1, "reply is not a piece of the stream")
                self.assertEqual(egd_pid(conn), str(d.pid))
                extra, _ = recv_for(conn, 0.2)
                self.assertEqual(extra, b"", "unsolicited bytes without ,qemu")
                self.assertEqual(d.stats()["clients"], 1)
        finally:
            lst.close()

        time.sleep(0.5)
        lst = Listener(ep)  # same port / path again
        try:
            conn = lst.accept()
            with conn:
                d.wait_log(r"connected to ", timeout=10, count=2)
                conn.sendall(egd_read(0x40) * 4)
                second = recv_exact(conn, 256)
                # in order, from the only client: the bytes right after the first reply
                self.assertEqual(ref.find(second), ref.find(first) + 64,
                                 "after the reconnect, not the next piece of the stream")
        finally:
            lst.close()
        stats = d.stats()
        self.assertGreaterEqual(stats["connections_total"], 2)
        self.assertGreaterEqual(stats["served_bytes"], 64 + 256)
        self.assertEqual(stats["bad_requests"], 0)
        d.stop()

    def test_tcp_connect_retries_and_reconnects(self):
        self.run_reconnect_scenario("tcp:127.0.0.1:%d" % free_tcp_port())

    def test_unix_connect_retries_and_reconnects(self):
        self.run_reconnect_scenario("unix:%s" % self.path("qemu-rng.sock"))

    def run_qemu_primer(self, ep):
        ref = reference_stream(12, 1 << 20)
        lst = Listener(ep.split(",", 1)[0])
        try:
            d = self.start_daemon(["--source", "test:12", "--allow-test-source",
                                   "--connect", ep])
            conn = lst.accept()
            with conn:
                # QEMU after a reconnect sends nothing: the daemon must push first, the
                # 4096-byte lead and no more.
                lead = recv_exact(conn, 4096)
                more, eof = recv_for(conn, 1.0)
                self.assertFalse(eof)
                self.assertEqual(len(more), 0, "more than the 4096-byte lead was pushed")
                at = ref.find(lead)
                self.assertNotEqual(at, -1, "the lead is not a piece of the stream")
                # and ordinary requests still work on top of the lead: a quarter of the
                # lead's worth of them brings that much more
                conn.sendall(egd_read(0x40) * 16)
                self.assertEqual(ref.find(recv_exact(conn, 16 * 64)), at + 4096,
                                 "the replies are not the bytes right after the lead")
                more, _ = recv_for(conn, 1.0)
                self.assertEqual(len(more), 0, "more than the requests asked for")
            d.wait_log(r"connected to ", timeout=5)
        finally:
            lst.close()
        d.stop()

    def test_tcp_connect_qemu_pushes_primer(self):
        self.run_qemu_primer("tcp:127.0.0.1:%d,qemu" % free_tcp_port())

    def test_unix_connect_qemu_pushes_primer(self):
        self.run_qemu_primer("unix:%s,qemu" % self.path("qemu-rng2.sock"))

    def test_tcp_connect_that_gets_no_answer_times_out_and_retries(self):
        """A listener whose accept queue is full drops further SYNs, so a connect to it hangs
        for the kernel's two minutes of retries. rngmux gives up on an attempt after 10 s,
        says so, and connects once the listener accepts again."""
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        port = lst.getsockname()[1]
        fillers = []
        d = None
        try:
            # Fill the accept queue (backlog 0 still holds one or two): connects that
            # the kernel completes without us accepting. The next SYN is dropped.
            for _ in range(4):
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                fillers.append(c)
            time.sleep(0.2)
            d = self.start_daemon(["--source", "test:13", "--allow-test-source",
                                   "--connect", "tcp:127.0.0.1:%d" % port])
            d.wait_log(r"cannot connect to tcp:127\.0\.0\.1:%d: no answer within 10 s" % port,
                       timeout=30)
            for c in fillers:
                c.close()
            lst.settimeout(0.2)
            # Take the queued fillers off, then the daemon's next attempt gets through.
            deadline = time.monotonic() + 30
            served = None
            while time.monotonic() < deadline and served is None:
                try:
                    conn, _ = lst.accept()
                except socket.timeout:
                    continue
                with conn:
                    try:
                        conn.sendall(egd_read(16))
                        got = recv_exact(conn, 16)
                        served = got
                    except (OSError, AssertionError):
                        continue  # a filler, closed before it was accepted
            self.assertIsNotNone(served, "the daemon never connected after the timeout")
            d.wait_log(r"connected to tcp:127\.0\.0\.1:%d after \d+ failed attempts" % port,
                       timeout=5)
        finally:
            for c in fillers:
                c.close()
            lst.close()
            if d is not None:
                d.stop()

    def test_tcp_connect_moves_on_to_the_next_address(self):
        """A name with two addresses, the first of which drops SYNs: each address gets its
        own 10 s, so rngmux reaches the second one instead of hanging on the first. The
        name lives in an /etc/hosts bind-mounted in a mount namespace of the daemon's own
        (unshare -m), so the host's resolver configuration is never touched."""
        hosts = self.path("hosts")
        name = "rngmux-two-addresses"
        with open(hosts, "w") as f:
            f.write("127.0.0.3 %s\n127.0.0.2 %s\n" % (name, name))
        wrapper = ["unshare", "-m", "sh", "-c",
                   'mount --bind "$0" /etc/hosts && exec "$@"', hosts]
        # The order getaddrinfo gives them (as the daemon's resolver asks: AI_ADDRCONFIG),
        # from inside such a namespace: the first one is made to drop SYNs.
        probe = subprocess.run(
            wrapper + [sys.executable, "-c",
                       "import socket; print(' '.join(a[4][0] for a in socket.getaddrinfo("
                       "%r, 1, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)))"
                       % name], capture_output=True, timeout=30)
        self.assertEqual(probe.returncode, 0, probe.stderr)
        order = probe.stdout.decode().split()
        self.assertEqual(sorted(order), ["127.0.0.2", "127.0.0.3"], order)
        dead_addr, live_addr = order
        dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        dead.bind((dead_addr, 0))
        port = dead.getsockname()[1]
        dead.listen(0)
        live = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        live.bind((live_addr, port))
        live.listen(4)
        fillers, d = [], None
        try:
            for _ in range(4):  # fill the dead listener's accept queue: SYNs are dropped
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.setblocking(False)
                c.connect_ex((dead_addr, port))
                fillers.append(c)
            time.sleep(0.2)
            start = time.monotonic()
            d = self.start_daemon(["--source", "test:14", "--allow-test-source",
                                   "--connect", "tcp:%s:%d" % (name, port)], wrapper=wrapper)
            live.settimeout(30)
            conn, _ = live.accept()
            with conn:
                conn.sendall(egd_read(16))
                got = recv_exact(conn, 16)
                self.assertNotEqual(reference_stream(14, 1 << 20).find(got), -1,
                                    "reply is not a piece of the stream")
            elapsed = time.monotonic() - start
            # It waited out the first address (10 s), and not the kernel's two minutes.
            self.assertGreaterEqual(elapsed, 9.0, "the first address was not tried first")
            self.assertLess(elapsed, 30)
            d.wait_log(r"connected to tcp:%s:%d" % (name, port), timeout=5)
            self.assertEqual(d.count_log(r"cannot connect"), 0,
                             "the attempt failed as a whole instead of moving on")
        finally:
            for c in fillers:
                c.close()
            dead.close()
            live.close()
            if d is not None:
                d.stop()


if __name__ == "__main__":
    import unittest
    unittest.main()
