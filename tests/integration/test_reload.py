"""Live reload (SIGHUP): what did not change keeps running, nothing is served twice.

Each test writes a configuration file, starts `rngmux serve --config`, streams from it,
rewrites the file and sends SIGHUP. Bytes are checked against the test source's
reference stream: every byte a client got is located there, and no piece of it went
to two clients, across the reload.
"""

import os
import re
import select
import signal
import socket
import threading
import time
import unittest

from harness import (RngmuxTestCase, ReferenceIndex, connect, egd_read, free_tcp_port,
                     free_udp_port, recv_exact, reference_stream, render_config, wait_closed,
                     wait_until)

RATE = 200000  # bytes per second from the test source: the reference stays small
SEED = 31
OTHER_SEED = 32


class Recorder(threading.Thread):
    """Keeps `depth` `02 FF` requests in flight and keeps every byte it gets, until
    stopped, closed by the daemon, or `limit` bytes."""

    def __init__(self, ep, depth=4, limit=1 << 20, max_seconds=60):
        super().__init__(daemon=True)
        self.ep = ep
        self.depth = depth
        self.limit = limit
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.data = bytearray()
        self.lock = threading.Lock()
        self.closed_by_peer = False
        self.error = None

    def run(self):
        try:
            s = connect(self.ep)
            deadline = time.monotonic() + self.max_seconds
            requested = 0
            with s:
                while (not self.stop_event.is_set() and time.monotonic() < deadline and
                       len(self.data) < self.limit):
                    while requested - len(self.data) < self.depth * 255:
                        s.sendall(egd_read(255))
                        requested += 255
                    r, _, _ = select.select([s], [], [], 0.2)
                    if not r:
                        continue
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        self.closed_by_peer = True
                        return
                    with self.lock:
                        self.data += chunk
        except (BrokenPipeError, ConnectionResetError):
            # the daemon closed while requests were still being sent or unread
            self.closed_by_peer = True
        except Exception as e:  # reported through .error
            self.error = e

    def bytes_now(self):
        with self.lock:
            return len(self.data)

    def finish(self):
        self.stop_event.set()
        self.join(15)
        assert not self.is_alive(), "recorder %s did not stop" % self.ep
        return bytes(self.data)


class ReloadTest(RngmuxTestCase):
    def write(self, text):
        path = self.path("rngmux.toml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def settings(self, **extra):
        out = {"allow-test-source": True, "log-level": "info", "control": ""}
        out.update(extra)
        return out

    def reload(self, daemon, expect_ok=True):
        before_ok = daemon.count_log(r"reloaded: ")
        before_failed = daemon.count_log(r"reload failed")
        daemon.proc.send_signal(signal.SIGHUP)
        if expect_ok:
            return daemon.wait_log(r"reloaded: (.*)$", count=before_ok + 1)
        return daemon.wait_log(r"reload failed, the running configuration stays: (.*)$",
                               count=before_failed + 1)

    def test_unchanged_endpoint_keeps_its_clients_and_every_byte_is_served_once(self):
        tcp_a, tcp_c = free_tcp_port(), free_tcp_port()
        unix_b = self.path("b.sock")
        source = "test:%d,rate=%d" % (SEED, RATE)
        a = {"address": "tcp:127.0.0.1:%d" % tcp_a}
        b = {"address": "unix:%s" % unix_b}
        c = {"address": "tcp:127.0.0.1:%d" % tcp_c, "weight": 2}
        config = self.write(render_config(self.settings(), [source], [a, b]))
        d = self.start_daemon(["--config", config], expect_listen=2)

        on_a = [Recorder("tcp:127.0.0.1:%d" % tcp_a) for _ in range(3)]
        on_b = Recorder("unix:" + unix_b)
        for r in on_a + [on_b]:
            r.start()
        self.assertTrue(wait_until(lambda: all(r.bytes_now() > 20000 for r in on_a + [on_b]),
                                   20), "clients did not stream before the reload")

        # B removed, C added, a second (standby) source behind the first, log level.
        self.write(render_config(self.settings(**{"log-level": "debug"}),
                                 [source, "test:%d,rate=%d" % (OTHER_SEED, RATE)], [a, c]))
        m = self.reload(d)
        summary = m.group(1)
        for part in ("1 endpoint added", "1 endpoint removed", "log level debug",
                     "1 kept running"):
            self.assertIn(part, summary)

        # B's client is told by a close; A's clients go on, C serves.
        self.assertTrue(wait_until(lambda: not on_b.is_alive(), 10), "client on B not closed")
        self.assertTrue(on_b.closed_by_peer, "client on B ended without a close: %r, %d bytes" %
                        (on_b.error, on_b.bytes_now()))
        at_reload = [r.bytes_now() for r in on_a]
        on_c = Recorder("tcp:127.0.0.1:%d" % tcp_c)
        on_c.start()
        self.assertTrue(wait_until(
            lambda: all(r.bytes_now() > n + 20000 for r, n in zip(on_a, at_reload)) and
            on_c.bytes_now() > 20000, 20), "clients did not stream after the reload")
        self.assertFalse(os.path.exists(unix_b), "removed unix endpoint left its socket file")
        with self.assertRaises(OSError):
            connect("unix:" + unix_b, timeout=2)

        served = {"a%d" % i: r.finish() for i, r in enumerate(on_a)}
        served["b"] = bytes(on_b.data)
        served["c"] = on_c.finish()
        for r in on_a + [on_b, on_c]:
            self.assertIsNone(r.error, "client failed: %r" % r.error)
        for i, r in enumerate(on_a):
            self.assertFalse(r.closed_by_peer, "client a%d on the unchanged endpoint was closed" % i)
        d.stop()
        # The first source kept running and serving (its stream goes on where it was);
        # a byte from anywhere else, or a byte twice, fails here.
        total = sum(len(v) for v in served.values())
        ref = reference_stream(SEED, total + (1 << 20))
        self.assert_each_byte_served_once(ReferenceIndex(ref), served)
        self.assertEqual(d.count_log(r"source test:%d.*: started" % SEED), 2,
                         "the kept source is restarted by a new runner once, not reopened")

    def test_reordered_sources_switch_and_nothing_is_served_twice(self):
        port = free_tcp_port()
        first = "test:%d,rate=%d" % (SEED, RATE)
        second = "test:%d,rate=%d" % (OTHER_SEED, RATE)
        listen = [{"address": "tcp:127.0.0.1:%d" % port}]
        config = self.write(render_config(self.settings(), [first, second], listen))
        d = self.start_daemon(["--config", config], expect_listen=1)
        clients = [Recorder("tcp:127.0.0.1:%d" % port) for _ in range(2)]
        for r in clients:
            r.start()
        self.assertTrue(wait_until(lambda: all(r.bytes_now() > 20000 for r in clients), 20))
        self.write(render_config(self.settings(), [second, first], listen))
        self.reload(d)
        d.wait_log(r"serving .*test:%d|test:%d.*serv" % (OTHER_SEED, OTHER_SEED), timeout=20)
        at_reload = [r.bytes_now() for r in clients]
        self.assertTrue(wait_until(
            lambda: all(r.bytes_now() > n + 50000 for r, n in zip(clients, at_reload)), 20))
        served = {"c%d" % i: r.finish() for i, r in enumerate(clients)}
        d.stop()
        total = sum(len(v) for v in served.values())
        # Both streams, one after the other in one index: a piece is located in the one
        # it came from, and each stream's pieces must be disjoint.
        ref = reference_stream(SEED, total + (1 << 20)) + reference_stream(
            OTHER_SEED, total + (1 << 20))
        self.assert_each_byte_served_once(ReferenceIndex(ref), served)
        late = b"".join(bytes(r.data[n:]) for r, n in zip(clients, at_reload))
        other = reference_stream(OTHER_SEED, total + (1 << 20))
        self.assertNotEqual(other.find(late[-64:]), -1,
                            "after the reorder, the last bytes are not from the new first source")

    def test_failed_reload_changes_nothing(self):
        port, added = free_tcp_port(), free_tcp_port()
        source = "test:%d,rate=%d" % (SEED, RATE)
        listen = [{"address": "tcp:127.0.0.1:%d" % port}]
        config = self.write(render_config(self.settings(), [source], listen))
        d = self.start_daemon(["--config", config], expect_listen=1)
        client = Recorder("tcp:127.0.0.1:%d" % port)
        client.start()
        self.assertTrue(wait_until(lambda: client.bytes_now() > 20000, 20))

        # A bad key: the error names the file, line and key.
        text = render_config(self.settings(), [source],
                             listen + [{"address": "tcp:127.0.0.1:%d" % added, "wieght": 2}])
        self.write(text)
        m = self.reload(d, expect_ok=False)
        line = 1 + text.splitlines().index("wieght = 2")
        self.assertRegex(m.group(1), r"rngmux\.toml:%d: .*wieght" % line)

        # A port someone else holds: nothing of the new configuration is applied.
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        try:
            self.write(render_config(self.settings(**{"log-level": "debug"}), [source], [
                {"address": "tcp:127.0.0.1:%d" % taken}]))
            m = self.reload(d, expect_ok=False)
            self.assertIn(str(taken), m.group(1))
        finally:
            holder.close()
        # A FIFO where the file was: refused at once, never waited on (the loop reads it).
        os.unlink(config)
        os.mkfifo(config)
        m = self.reload(d, expect_ok=False)
        self.assertIn("%s: not a regular file" % config, m.group(1))
        # The old endpoint still serves the old client and a new one; the log level
        # of the failed configuration was not applied.
        n = client.bytes_now()
        self.assertTrue(wait_until(lambda: client.bytes_now() > n + 20000, 20))
        with connect("tcp:127.0.0.1:%d" % port) as s:
            s.sendall(egd_read(64))
            self.assertEqual(len(recv_exact(s, 64)), 64)
        with self.assertRaises(OSError):
            connect("tcp:127.0.0.1:%d" % added, timeout=2)
        self.assertEqual(d.count_log(r"rngmux debug: "), 0)
        client.finish()
        self.assertFalse(client.closed_by_peer)
        self.assertIsNone(client.error)

    def test_a_changed_udp_endpoint_keeps_its_socket(self):
        source = "test:%d" % SEED
        qemu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # QEMU bound, rngmux sends
        qemu.bind(("127.0.0.1", 0))
        local_port = free_udp_port()
        qemu.connect(("127.0.0.1", local_port))
        qemu.settimeout(0.2)

        def config(rate):
            return render_config(
                self.settings(), [source],
                [{"address": "udp:127.0.0.1:0", "rate": rate}],
                [{"address": "udp:127.0.0.1:%d" % qemu.getsockname()[1],
                  "local": "127.0.0.1:%d" % local_port, "rate": rate}])

        path = self.write(config(1000000))
        d = self.start_daemon(["--config", path], expect_listen=1)
        host, _, port = d.endpoints[0][4:].rpartition(":")
        guest = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # QEMU sends to rngmux
        guest.connect((host, int(port)))
        guest.settimeout(0.2)

        def sockets():
            fds = "/proc/%d/fd" % d.pid
            return sorted(os.readlink(os.path.join(fds, n)) for n in os.listdir(fds)
                          if os.readlink(os.path.join(fds, n)).startswith("socket:"))

        before = sockets()
        refused = {"listen": 0, "connect": 0}
        answered = {"listen": 0, "connect": 0}
        try:
            # Guests asking all the time while their endpoints' rate= changes ten times:
            # never "port unreachable" (QEMU's UDP chardev reads nothing more after
            # one), and the listener's port, 0 in the file, stays the one bound first.
            for i in range(10):
                self.write(config(1000001 + i))
                d.proc.send_signal(signal.SIGHUP)
                until = time.monotonic() + 0.3
                while time.monotonic() < until:
                    for role, s in (("listen", guest), ("connect", qemu)):
                        try:
                            s.send(egd_read(1))
                            if len(s.recv(64)) == 1:
                                answered[role] += 1
                        except ConnectionRefusedError:
                            refused[role] += 1
                        except socket.timeout:
                            pass
            d.wait_log(r"reloaded: ", count=10)
            for s in (guest, qemu):
                s.send(egd_read(8))
                # Late answers to the loop's last requests may come first.
                sizes = []
                s.settimeout(5)
                while 8 not in sizes and len(sizes) < 20:
                    sizes.append(len(s.recv(64)))
                self.assertIn(8, sizes)
        finally:
            guest.close()
            qemu.close()
        self.assertEqual(refused, {"listen": 0, "connect": 0}, "port unreachable during a reload")
        self.assertGreater(min(answered.values()), 50, answered)
        self.assertEqual(d.count_log(r"endpoint listen udp:127\.0\.0\.1:0 changed"), 10)
        self.assertEqual(d.count_log(r"endpoint connect udp:127\.0\.0\.1:\d+ changed"), 10)
        # The very same sockets: neither endpoint was closed and bound again.
        self.assertEqual(sockets(), before)

    def test_requests_a_changed_udp_endpoint_had_not_answered_are_answered_after(self):
        # QEMU never sends a request again: one lost at a reload would leave the guest's
        # hwrng read hanging for good. Two ways to be owed: a datagram delayed by rate=
        # (rate=64 pays one `02 40` a second after a burst of 64, so of 100 sent at once
        # 36 wait), and requests paid for but waiting for entropy (200 `02 40` from a
        # source of 4 kB/s, whose health-tested blocks of 4 kB answer 64 at a time).
        cases = (("rate limit", "test:%d" % SEED, 64, 6400, 4096, 100, 64),
                 ("entropy", "test:%d,rate=4096" % SEED, 1000000, 1000001, 65536, 200, 5))
        ref = reference_stream(SEED, 1 << 20)
        for what, source, rate, new_rate, burst, count, before in cases:
            with self.subTest(what):
                def config(r):
                    # A pool of 4 kB: what it held before the requests came is
                    # one block, so most of the 200 still wait at the reload.
                    return render_config(self.settings(**{"pool-size": 4096}), [source],
                                         [{"address": "udp:127.0.0.1:0", "rate": r,
                                           "burst": burst}])

                path = self.write(config(rate))
                d = self.start_daemon(["--config", path], expect_listen=1,
                                      name="owed-" + what.replace(" ", "-"))
                host, _, port = d.endpoints[0][4:].rpartition(":")
                guest = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                guest.connect((host, int(port)))
                got = bytearray()  # replies may come several to a datagram
                try:
                    for _ in range(count):
                        guest.send(egd_read(64))
                    guest.settimeout(15)
                    while len(got) < before * 64:
                        got += guest.recv(4096)
                    self.write(config(new_rate))
                    self.reload(d)
                    deadline = time.monotonic() + 15
                    guest.settimeout(0.5)
                    while len(got) < count * 64 and time.monotonic() < deadline:
                        try:
                            got += guest.recv(4096)
                        except socket.timeout:
                            pass
                finally:
                    guest.close()
                self.assertEqual(len(got), count * 64, "requests lost at the reload")
                replies = [bytes(got[i:i + 64]) for i in range(0, len(got), 64)]
                for reply in replies:
                    self.assertNotEqual(ref.find(reply), -1, "not a piece of the test stream")
                self.assertEqual(len(set(replies)), count, "a piece of the stream served twice")
                m = d.wait_log(r"endpoint listen udp:127\.0\.0\.1:0: (\d+) of (\d+) "
                               r"unanswered requests of 1 peer carried over")
                self.assertEqual(m.group(1), m.group(2))
                self.assertGreaterEqual(int(m.group(1)), 10)
                # Counted once: by the peer that received them.
                self.assertEqual(d.stats()["requests"], count)
                d.stop()

    def test_a_changed_udp_listener_still_warns_that_it_answers_loopback_only(self):
        # Bound to every address, answering loopback senders only (allow= left out):
        # said at start, and again when a reload hands the socket to new settings.
        def config(rate):
            return render_config(self.settings(), ["test:%d" % SEED],
                                 [{"address": "udp:0.0.0.0:0", "rate": rate}])

        path = self.write(config(1000000))
        d = self.start_daemon(["--config", path], expect_listen=1)
        warning = r"warning: udp listener on udp:0\.0\.0\.0:0 answers loopback senders only"
        d.wait_log(warning)
        self.write(config(1000001))
        self.reload(d)
        self.assertEqual(d.count_log(warning), 2, d.log_text())

    def test_write_threads_change_at_the_next_restart(self):
        port = free_tcp_port()
        source = "test:%d,rate=%d" % (SEED, RATE)
        listen = [{"address": "tcp:127.0.0.1:%d" % port}]
        config = self.write(render_config(self.settings(**{"write-threads": 1}), [source], listen))
        d = self.start_daemon(["--config", config], expect_listen=1)
        self.assertIn("clients on 1 thread beside the event loop", d.log_text())
        self.write(render_config(self.settings(**{"write-threads": 2}), [source], listen))
        m = self.reload(d)
        self.assertIn("write-threads changed: takes effect at the next restart", m.group(1))
        with connect("tcp:127.0.0.1:%d" % port) as s:
            s.sendall(egd_read(64))
            self.assertEqual(len(recv_exact(s, 64)), 64)
        self.assertNotIn("on 2 threads", d.log_text())
        d.stop()

    def test_revoked_access_closes_clients_and_new_limits_apply(self):
        port = free_tcp_port()
        source = "test:%d,rate=%d" % (SEED, RATE)
        open_ep = {"address": "tcp:127.0.0.1:%d" % port, "allow": ["127.0.0.0/8"]}
        config = self.write(render_config(self.settings(), [source], [open_ep]))
        d = self.start_daemon(["--config", config], expect_listen=1)
        client = Recorder("tcp:127.0.0.1:%d" % port)
        client.start()
        self.assertTrue(wait_until(lambda: client.bytes_now() > 20000, 20))

        # Rate-limit the endpoint: the live client slows to the new rate.
        limited = dict(open_ep, rate=20000, burst=20000)
        self.write(render_config(self.settings(), [source], [limited]))
        self.assertIn("1 endpoint changed", self.reload(d).group(1))
        time.sleep(1.0)  # the old bucket's last bytes and the new burst
        n0, t0 = client.bytes_now(), time.monotonic()
        time.sleep(3.0)
        rate = (client.bytes_now() - n0) / (time.monotonic() - t0)
        self.assertLess(rate, 20000 * 1.5, "rate=20000 not applied to the live client")
        self.assertGreater(rate, 20000 * 0.5, "the live client starved after rate=20000")

        # Only 127.0.0.2 may connect now: the client on 127.0.0.1 is closed and counted.
        self.write(render_config(self.settings(), [source],
                                 [dict(limited, allow=["127.0.0.2/32"])]))
        self.reload(d)
        self.assertTrue(wait_until(lambda: not client.is_alive(), 10))
        self.assertTrue(client.closed_by_peer)
        d.wait_log(r"no longer allowed on tcp:127\.0\.0\.1:%d after a reload" % port)
        s = connect("tcp:127.0.0.1:%d" % port)
        self.assertTrue(wait_closed(s), "a client outside the new allow list was served")
        s.close()
        self.assertGreaterEqual(d.stats()["denied_connections"], 2)
        client.finish()


if __name__ == "__main__":
    unittest.main()
