"""Bad clients must be cut off or contained without disturbing good ones."""

import socket
import time

from harness import (RngmuxTestCase, Streamer, connect, egd_pid, egd_read, recv_exact,
                     recv_for, wait_closed, wait_until)

TLS_CLIENT_HELLO = bytes.fromhex(
    "16030100a5010000a10303") + bytes(range(32)) + bytes.fromhex("000020c02bc02f") + b"\x00" * 64


class MisbehavingClientsTest(RngmuxTestCase):
    def start(self, extra=()):
        return self.start_daemon([
            "--source", "test:3", "--allow-test-source", "--log-level", "debug",
            "--listen", "tcp:127.0.0.1:0", "--listen", "unix:%s" % self.path("egd.sock")]
            + list(extra))

    def start_streamers(self, d, n=4):
        streamers = [Streamer(d.endpoints[i % len(d.endpoints)]) for i in range(n)]
        for s in streamers:
            s.start()
        for s in streamers:
            self.assertTrue(s.connected.wait(10))
        # every good client is flowing before the bad one shows up
        ok = wait_until(lambda: all(s.bytes_now() >= 4096 for s in streamers), 10)
        self.assertTrue(ok, "good clients did not start receiving: %r"
                        % [(s.bytes_now(), s.error) for s in streamers])
        return streamers

    def assert_still_flowing(self, streamers, seconds=1.0, min_bytes=4096, what=""):
        before = [s.bytes_now() for s in streamers]
        ok = wait_until(lambda: all(s.bytes_now() - b >= min_bytes
                                    for s, b in zip(streamers, before)), seconds + 5)
        after = [s.bytes_now() for s in streamers]
        self.assertTrue(ok, "good clients stalled %s: bytes before %r, after %r, errors %r"
                        % (what, before, after, [s.error for s in streamers]))

    def stop_streamers(self, streamers):
        for s in streamers:
            self.assertTrue(s.stop(), "streamer did not stop")
            self.assertIsNone(s.error, repr(s.error))

    def test_garbage_command_closes_only_that_connection(self):
        d = self.start()
        streamers = self.start_streamers(d)
        for ep in d.endpoints[:1]:
            with connect(ep) as bad:
                bad.sendall(TLS_CLIENT_HELLO)
                closed, drained = wait_closed(bad, timeout=5)
                self.assertTrue(closed, "connection that sent 0x16 was not closed")
                self.assertEqual(drained, 0, "server replied to a garbage request")
        d.wait_log(r"warning: .*unknown EGD command 0x16", timeout=5)
        self.assert_still_flowing(streamers, what="after the garbage client")
        stats = d.stats()
        self.assertEqual(stats["bad_requests"], 1)
        self.assertEqual(stats["clients"], 4, stats)
        # garbage after a valid exchange on the same connection: closed as well
        with connect(d.endpoints[1]) as bad:
            bad.sendall(egd_read(16))
            self.assertEqual(len(recv_exact(bad, 16)), 16)
            bad.sendall(b"\x7f\x00\x00")
            closed, drained = wait_closed(bad, timeout=5)
            self.assertTrue(closed)
            self.assertEqual(drained, 0)
        # Counted, but not logged again: one line per identity per 10 s.
        wait_until(lambda: d.stats()["bad_requests"] == 2, 5, what="second bad request counted")
        self.assert_still_flowing(streamers, what="after the second garbage client")
        self.stop_streamers(streamers)
        d.stop()

    def test_client_that_never_reads_does_not_stall_others(self):
        d = self.start(["--max-queued-requests", "4096"])
        streamers = self.start_streamers(d)
        lazy = []
        for ep in d.endpoints:
            s = connect(ep, rcvbuf=4096)
            # ~500 KB owed, far more than the socket buffers can hold
            s.sendall(egd_read(255) * 2000)
            lazy.append(s)
        time.sleep(1.0)  # let the lazy clients' buffers fill up
        self.assert_still_flowing(streamers, min_bytes=64 * 1024,
                                  what="while clients that never read were connected")
        stats = d.stats()
        self.assertEqual(stats["clients"], 4 + len(lazy), stats)
        self.assertEqual(stats["queue_overflows"], 0)
        # New clients are still accepted and served promptly.
        for ep in d.endpoints:
            with connect(ep) as s:
                s.sendall(egd_read(64))
                self.assertEqual(len(recv_exact(s, 64, timeout=5)), 64)
        for s in lazy:
            s.close()
        self.assert_still_flowing(streamers, what="after the lazy clients left")
        self.stop_streamers(streamers)
        self.assertEqual(d.stats()["bad_requests"], 0)
        d.stop()

    def test_queue_overflow_disconnects_and_counts(self):
        d = self.start(["--max-queued-requests", "64"])
        streamers = self.start_streamers(d)
        with connect(d.endpoints[0], rcvbuf=4096) as greedy:
            greedy.sendall(egd_read(255) * 10000)
            closed, drained = wait_closed(greedy, timeout=10)
            self.assertTrue(closed, "client with 10000 queued requests was not disconnected")
            self.assertLess(drained, 10000 * 255, "all 10000 requests were served")
        d.wait_log(r"(?i)warning: .*(queue|overflow)", timeout=5)
        stats = d.stats()
        self.assertEqual(stats["queue_overflows"], 1, stats)
        self.assert_still_flowing(streamers, what="after the overflowing client")
        # A client within the limit is not affected: 64 requests in flight.
        with connect(d.endpoints[1]) as s:
            s.sendall(egd_read(255) * 64)
            self.assertEqual(len(recv_exact(s, 64 * 255)), 64 * 255)
        self.assertEqual(d.stats()["queue_overflows"], 1)
        self.stop_streamers(streamers)
        d.stop()

    def test_client_limit_refuses_extra_connections_at_once(self):
        # Beyond --max-clients a connection is closed straight away (never left
        # hanging in the backlog), counted, and the clients already in are served.
        d = self.start(["--max-clients", "3"])
        held = [connect(d.endpoints[0]) for _ in range(3)]
        try:
            wait_until(lambda: d.stats()["clients"] == 3, 10)
            with connect(d.endpoints[1]) as extra:
                closed, _ = wait_closed(extra, timeout=10)
                self.assertTrue(closed, "the connection beyond --max-clients was not closed")
            stats = d.stats()
            self.assertEqual(stats["refused_connections"], 1, stats)
            self.assertEqual(stats["clients"], 3, stats)
            held[0].sendall(egd_read(64))
            self.assertEqual(len(recv_exact(held[0], 64)), 64)
            d.wait_log(r"warning: refusing connection: 3 clients", timeout=5)
            # A freed slot is usable again.
            held.pop().close()
            wait_until(lambda: d.stats()["clients"] == 2, 10)
            with connect(d.endpoints[1]) as again:
                again.sendall(egd_read(32))
                self.assertEqual(len(recv_exact(again, 32)), 32)
        finally:
            for s in held:
                s.close()
        d.stop()

    def test_requests_split_byte_by_byte(self):
        d = self.start()
        payload = b"not-entropy-" * 3
        for ep in d.endpoints:
            with self.subTest(ep=ep), connect(ep) as s:
                if ep.startswith("tcp:"):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                msg = (b"\x00" + egd_read(0x40) + b"\x01\x10"
                       + b"\x03\x00\x10" + bytes([len(payload)]) + payload
                       + b"\x04" + egd_read(3))
                for i in range(len(msg)):
                    s.sendall(msg[i:i + 1])
                    time.sleep(0.01 if i % 7 else 0.06)
                self.assertEqual(len(recv_exact(s, 4)), 4)
                self.assertEqual(len(recv_exact(s, 0x40)), 0x40)
                mm = recv_exact(s, 1)[0]
                self.assertLessEqual(mm, 0x10)
                if mm:
                    recv_exact(s, mm)
                ln = recv_exact(s, 1)[0]
                self.assertEqual(recv_exact(s, ln).decode(), str(d.pid))
                self.assertEqual(len(recv_exact(s, 3)), 3)
                extra, eof = recv_for(s, 0.3)
                self.assertEqual(extra, b"")
                self.assertFalse(eof)
                # the connection is still usable
                self.assertEqual(egd_pid(s), str(d.pid))
        stats = d.stats()
        self.assertEqual(stats["bad_requests"], 0)
        d.stop()


if __name__ == "__main__":
    import unittest
    unittest.main()
