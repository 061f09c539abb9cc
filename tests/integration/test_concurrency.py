"""Many pipelining clients at once: exact reply sizes, bytes from the pool, none twice."""

import bisect
import os
import re
import resource
import socket
import struct
import threading
import time

import select

from harness import (STATS_RE as STATS_LINE, RngmuxTestCase, ReferenceIndex,
                     built_with_ubsan_vptr_checks, connect, egd_read,
                     parse_key_values, recv_exact, recv_for, reference_stream, run_cli,
                     wait_until)

SEED = 7
POOL_SIZE = 65536
PER_CLIENT = 64 * 1024
SIZES = [255, 0, 1, 128, 200, 7, 255, 64, 3, 255, 100, 16, 250, 33, 2, 255]
DEPTH = 48
REFERENCE_BYTES = 3 << 20


def request_sizes(total):
    out, acc, i = [], 0, 0
    while acc < total:
        n = min(SIZES[i % len(SIZES)], total - acc)
        out.append(n)
        acc += n
        i += 1
    return out


class Client(threading.Thread):
    def __init__(self, ep, name, timeout=60):
        super().__init__(daemon=True)
        self.ep, self.name, self.timeout = ep, name, timeout
        self.sizes = request_sizes(PER_CLIENT)
        self.data = bytearray()
        self.trailer_pid = None
        self.extra = None
        self.error = None

    def run(self):
        try:
            cum = []
            acc = 0
            for n in self.sizes:
                acc += n
                cum.append(acc)
            total = acc
            deadline = time.monotonic() + self.timeout
            sent = 0
            with connect(self.ep) as s:
                while len(self.data) < total:
                    completed = bisect.bisect_right(cum, len(self.data))
                    out = bytearray()
                    while sent < len(self.sizes) and sent - completed < DEPTH:
                        out += egd_read(self.sizes[sent])
                        sent += 1
                    if out:
                        s.sendall(out)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("%s: %d of %d bytes before timeout"
                                           % (self.name, len(self.data), total))
                    r, _, _ = select.select([s], [], [], min(left, 1.0))
                    if not r:
                        continue
                    chunk = s.recv(min(1 << 16, total - len(self.data)))
                    if not chunk:
                        raise AssertionError("%s: EOF after %d of %d bytes"
                                             % (self.name, len(self.data), total))
                    self.data += chunk
                # Sentinel: the PID reply must follow the data immediately (no surplus bytes).
                s.sendall(b"\x04")
                ln = recv_exact(s, 1)[0]
                self.trailer_pid = recv_exact(s, ln).decode("ascii", "replace")
                self.extra, _ = recv_for(s, 0.2)
        except Exception as e:
            self.error = e


class ConcurrencyTest(RngmuxTestCase):
    def start(self):
        return self.start_daemon([
            "--source", "test:%d" % SEED, "--allow-test-source", "--pool-size", str(POOL_SIZE),
            "--max-queued-requests", "4096", "--log-level", "debug",
            "--listen", "tcp:127.0.0.1:0", "--listen", "unix:%s" % self.path("egd.sock")])

    def run_clients(self, clients):
        """Runs the clients to their end; each got all it asked for, without error."""
        for c in clients:
            c.start()
        for c in clients:
            c.join(90)
        for c in clients:
            self.assertFalse(c.is_alive(), "%s still running" % c.name)
            self.assertIsNone(c.error, "%s: %r" % (c.name, c.error))
            self.assertEqual(len(c.data), PER_CLIENT, c.name)

    def test_16_clients_get_exact_unique_pieces_of_the_reference(self):
        d = self.start()
        tcp = [e for e in d.endpoints if e.startswith("tcp:")]
        unix = [e for e in d.endpoints if e.startswith("unix:")]
        self.assertEqual((len(tcp), len(unix)), (1, 1), d.endpoints)
        ref = reference_stream(SEED, REFERENCE_BYTES)
        index = ReferenceIndex(ref)
        self.assertLess(index.ambiguous, 10, "reference stream has repeated 8-byte windows")

        clients = [Client(tcp[0], "tcp%d" % i) for i in range(8)]
        clients += [Client(unix[0], "unix%d" % i) for i in range(8)]
        self.run_clients(clients)
        for c in clients:
            self.assertEqual(c.trailer_pid, str(d.pid),
                             "%s: reply stream misaligned: PID sentinel after the data read %r"
                             % (c.name, c.trailer_pid))
            self.assertEqual(c.extra, b"", "%s: surplus bytes after the PID reply" % c.name)

        self.assert_each_byte_served_once(index, {c.name: c.data for c in clients})
        stats = d.stats()
        self.assertGreaterEqual(stats["served_bytes"], 16 * PER_CLIENT)
        self.assertEqual(stats["bad_requests"], 0)
        self.assertEqual(stats["queue_overflows"], 0)
        self.assertGreaterEqual(stats["connections_total"], 16)
        d.stop()

    def test_a_source_read_on_two_threads_serves_both_streams_once(self):
        # threads=2: thread 1 reads the stream of seed "SEED/1", health-tested on its own.
        d = self.start_daemon([
            "--source", "test:%d,threads=2" % SEED, "--allow-test-source",
            "--pool-size", str(POOL_SIZE), "--max-queued-requests", "4096",
            "--listen", "unix:%s" % self.path("egd.sock")])
        first = reference_stream(SEED, REFERENCE_BYTES)
        second = reference_stream("%d/1" % SEED, REFERENCE_BYTES)
        index = ReferenceIndex(first + second)
        clients = [Client(d.endpoints[0], "unix%d" % i) for i in range(8)]
        self.run_clients(clients)
        self.assert_each_byte_served_once(index, {c.name: c.data for c in clients})
        # Both threads' streams were served.
        starts = [a for c in clients for a, _, _ in index.claims(c.data)[0]]
        self.assertTrue(any(a < len(first) for a in starts), "nothing from the first stream")
        self.assertTrue(any(a >= len(first) for a in starts), "nothing from the second stream")
        self.assertIn("read on 2 threads", d.log_text())
        self.assertEqual(d.stats()["source_healthy"], 1)

    def test_replies_written_on_two_write_threads_reach_each_client_once(self):
        d = self.start_daemon([
            "--source", "test:%d" % SEED, "--allow-test-source", "--pool-size", str(POOL_SIZE),
            "--max-queued-requests", "4096", "--write-threads", "2",
            "--listen", "tcp:127.0.0.1:0", "--listen", "unix:%s" % self.path("egd.sock")])
        self.assertIn("writing replies to plain TCP and unix clients on 2 threads", d.log_text())
        tcp = [e for e in d.endpoints if e.startswith("tcp:")][0]
        unix = [e for e in d.endpoints if e.startswith("unix:")][0]
        # Clients that leave with replies owed, some of them stuck in a full socket, while
        # the others are served.
        for i in range(6):
            s = connect(tcp if i % 2 else unix)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(egd_read(255) * 600)
            time.sleep(0.05)
            s.close()
        clients = [Client(tcp, "tcp%d" % i) for i in range(6)]
        clients += [Client(unix, "unix%d" % i) for i in range(6)]
        self.run_clients(clients)
        for c in clients:
            self.assertEqual(c.trailer_pid, str(d.pid), c.name)
            self.assertEqual(c.extra, b"", "%s: surplus bytes after the PID reply" % c.name)
        index = ReferenceIndex(reference_stream(SEED, REFERENCE_BYTES))
        self.assert_each_byte_served_once(index, {c.name: c.data for c in clients})
        stats = d.stats()
        self.assertEqual(stats["bad_requests"], 0)
        # The leavers were handed bytes too; whatever of theirs did not reach a socket
        # is counted as wiped, and nothing of the others'.
        self.assertGreater(stats["served_bytes"], 12 * PER_CLIENT)
        self.assertLessEqual(stats["wiped_undelivered_bytes"],
                             stats["served_bytes"] - 12 * PER_CLIENT)
        # The counter of what left on the write threads (test_metrics checks the metric):
        # reply bytes, so the random bytes and each client's PID reply (under 16 bytes).
        self.assertGreaterEqual(stats["write_thread_sent_bytes"], 6 * PER_CLIENT)
        self.assertLessEqual(stats["write_thread_sent_bytes"], stats["served_bytes"] + 12 * 16)
        # It stops cleanly with writes to a client that reads nothing still owed.
        stuck = connect(tcp)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(egd_read(255) * 400)
        self.assertTrue(
            wait_until(lambda: d.stats()["served_bytes"] > stats["served_bytes"] + 8192, 20),
            "the stuck client was never handed bytes")
        d.stop()
        stuck.close()
        # The replies left on the write threads (but for what a full socket did not take,
        # which the event loop sends).
        m = re.search(r"write threads sent (\d+) bytes", d.log_text())
        self.assertIsNotNone(m, "no count of what the write threads sent")
        self.assertGreaterEqual(int(m.group(1)), 6 * PER_CLIENT)

    def test_a_reply_cut_off_by_shutdown_is_counted_as_sent_or_wiped_never_both(self):
        for threads in ("0", "2"):
            with self.subTest(write_threads=threads):
                d = self.start_daemon([
                    "--source", "test:%d" % SEED, "--allow-test-source", "--pool-size",
                    str(POOL_SIZE), "--max-queued-requests", "4096", "--write-threads", threads,
                    "--listen", "unix:%s" % self.path("cut%s.sock" % threads)])
                # A client that asks for 1 MB and reads nothing: its reply is stuck part
                # in the sockets, part in the daemon, when the daemon stops. (This catches
                # a reply counted twice only when the write in progress had sent a part;
                # session_test's ASessionClosedMidReplyCountsOnlyWhatItNeverSentAsWiped
                # always does.)
                stuck = connect(d.endpoints[0])
                stuck.sendall(egd_read(255) * 4000)
                self.assertTrue(wait_until(lambda: d.stats()["served_bytes"] >= 16384, 20),
                                "the stuck client was never handed bytes")
                time.sleep(0.5)
                d.stop()
                # What the daemon's socket had taken still arrives after it closed.
                got, eof = recv_for(stuck, 10)
                stuck.close()
                self.assertTrue(eof, "the daemon's side never closed")
                summaries = [STATS_LINE.search(line) for line in d.log_lines()]
                final = parse_key_values([m for m in summaries if m][-1].group(1))
                self.assertEqual(final["clients"], 0, final)
                # The socket had taken a part of the reply before the daemon let it go:
                # that part arrived, and the rest was wiped.
                self.assertGreater(len(got), 0)
                self.assertLess(len(got), final["served_bytes"])
                self.assertEqual(final["served_bytes"],
                                 len(got) + final["wiped_undelivered_bytes"], final)
                ref = reference_stream(SEED, REFERENCE_BYTES)
                self.assertEqual(got, ref[:len(got)], "not the source's stream, in order")

    def test_out_of_descriptors_a_client_waits_and_nobody_else_does(self):
        """At the open-file limit: a client whose socket cannot be copied for a write
        thread is served on the event loop; connections that cannot be accepted (a
        client's, the control socket's, the metrics endpoint's) wait in the backlog, each
        listener logging its failures sparingly and retrying every 200 ms, not spinning;
        the clients already connected are served all along, and everything recovers once
        descriptors are free."""
        if built_with_ubsan_vptr_checks():
            # It checks each dynamic type the first time it meets it, through a pipe it
            # opens; at the limit that fails and is reported as a bad vptr. The release
            # and ThreadSanitizer runs cover this test.
            self.skipTest("UBSan's type checks need descriptors that this test uses up")
        control = self.path("control.sock")
        d = self.start_daemon([
            "--source", "test:%d" % SEED, "--allow-test-source", "--write-threads", "1",
            "--control", control, "--metrics", "tcp:127.0.0.1:0",
            "--listen", "unix:%s" % self.path("fd.sock")])
        ep = d.endpoints[0]
        metrics_port = int(d.wait_log(r"metrics at http://127\.0\.0\.1:(\d+)/metrics").group(1))
        ref = reference_stream(SEED, REFERENCE_BYTES)

        def served(s):
            s.sendall(egd_read(64))
            got = recv_exact(s, 64)
            self.assertNotEqual(ref.find(got), -1, "not bytes of the source's stream")

        # Each of these holds two descriptors: its socket and the write thread's copy.
        first = [connect(ep) for _ in range(2)]
        for s in first:
            served(s)
        # Room for exactly one more descriptor: a limit counts descriptor numbers, so
        # count the free ones below it.
        fds = {int(n) for n in os.listdir("/proc/%d/fd" % d.pid)}
        limit = next(n for n in range(1, 1 << 16)
                     if n - len([fd for fd in fds if fd < n]) == 1)
        resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (limit, limit))
        odd = connect(ep)  # takes the last descriptor: no copy for the write thread
        served(odd)
        d.wait_log(r"no second descriptor for a write thread \(Too many open files\)")
        # The kernel's backlogs take these; the daemon cannot.
        stuck = []
        for address, where in ((ep, re.escape(ep)), ("unix:" + control, "control socket"),
                               ("tcp:127.0.0.1:%d" % metrics_port, "metrics tcp:")):
            s = connect(address)
            stuck.append(s)
            d.wait_log(r"accept on %s.*: Too many open files \(1 failure so far; the "
                       r"connection waits and is retried every 200 ms\)" % where)
        stuck[0].sendall(egd_read(64))
        before = d.stats()["accept_failures"]
        since = time.monotonic()
        for _ in range(10):
            for s in first + [odd]:
                served(s)
        time.sleep(1.0)
        self.assertEqual(select.select(stuck, [], [], 0)[0], [], "answered without a descriptor")
        # Retried on timers, not in a loop: about five times a second each, and logged
        # each listener's 1st, 2nd, 4th, 8th... time only.
        failures = d.stats()["accept_failures"]
        elapsed = time.monotonic() - since
        # (a spinning accept fails thousands of times a second)
        self.assertLessEqual(failures - before, 3 * (elapsed / 0.2 + 2),
                             "accept retried in a loop: %d failures in %.1f s"
                             % (failures - before, elapsed))
        self.assertLessEqual(d.count_log(r"accept on .*: Too many open files"),
                             3 * failures.bit_length())
        for s in stuck[1:]:
            s.close()
        first[0].close()  # two descriptors come free
        stuck[0].settimeout(10)
        got = recv_exact(stuck[0], 64)
        self.assertNotEqual(ref.find(got), -1, "not bytes of the source's stream")
        for s in first[1:] + [odd, stuck[0]]:
            served(s)
            s.close()
        # The control socket and the metrics endpoint answer again.
        p = run_cli(["status", "--control", control])
        self.assertEqual(p.returncode, 0, p.stderr)
        with connect("tcp:127.0.0.1:%d" % metrics_port) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            answer, _ = recv_for(s, 10)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.0 200"),
                        answer[:100])
        self.assertIn(b"rngmux_accept_failures_total", answer)
        d.stop()

    def test_other_commands_in_one_pipeline_keep_order(self):
        d = self.start()
        ref = reference_stream(SEED, REFERENCE_BYTES)
        payload = bytes((i * 37 + 11) & 0xFF for i in range(255))
        for ep in d.endpoints:
            with self.subTest(ep=ep), connect(ep) as s:
                s.sendall(b"\x00" + egd_read(10)
                          + b"\x03\x00\x40\x08" + payload[:8]
                          + b"\x04" + b"\x01\x20" + egd_read(5)
                          + b"\x03\x00\x00\x00"
                          + b"\x00" + egd_read(255)
                          + b"\x03\x07\xf8\xff" + payload
                          + b"\x01\x00" + egd_read(0) + b"\x04")
                bits = struct.unpack(">I", recv_exact(s, 4))[0]
                # the test source claims 8 bits a byte: whole bytes, at most a full pool
                self.assertEqual(bits % 8, 0, "entropy count %d is not whole bytes" % bits)
                self.assertLessEqual(bits, POOL_SIZE * 8, "entropy count above the pool size")
                r10 = recv_exact(s, 10)
                ln = recv_exact(s, 1)[0]
                self.assertEqual(recv_exact(s, ln).decode(), str(d.pid),
                                 "04 after 03 must be answered next with the daemon PID")
                mm = recv_exact(s, 1)[0]
                self.assertLessEqual(mm, 0x20, "01 20 answered with MM > NN")
                r01 = recv_exact(s, mm) if mm else b""
                r5 = recv_exact(s, 5)
                recv_exact(s, 4)
                r255 = recv_exact(s, 255)
                self.assertEqual(recv_exact(s, 1), b"\x00", "01 00 must reply a zero length")
                ln = recv_exact(s, 1)[0]
                self.assertEqual(recv_exact(s, ln).decode(), str(d.pid))
                extra, eof = recv_for(s, 0.3)
                self.assertEqual(extra, b"", "surplus bytes: 03 must not produce a reply")
                self.assertFalse(eof, "connection closed after valid requests")
                for name, blob in (("02 ff", r255), ("01 20", r01)):
                    if len(blob) >= 16:
                        self.assertNotEqual(ref.find(blob[:16]), -1,
                                            "%s reply is not from the pool stream" % name)
                self.assertNotIn(payload[:16], r255 + r01 + r10 + r5,
                                 "bytes offered with 03 were served back")
        # Bytes offered with 03 must never reach another client.
        with connect(d.endpoints[0]) as s:
            s.sendall(egd_read(255) * 64)
            got = recv_exact(s, 255 * 64)
        for off in range(0, len(payload) - 16, 16):
            self.assertNotIn(payload[off:off + 16], got)
        stats = d.stats()
        self.assertEqual(stats["bad_requests"], 0)
        d.stop()

    def test_pid_matches_daemon_and_entropy_count_is_u32(self):
        d = self.start()
        with connect(d.endpoints[1]) as s:
            s.sendall(b"\x04\x00\x04")
            ln = recv_exact(s, 1)[0]
            self.assertGreater(ln, 0)
            pid = recv_exact(s, ln)
            self.assertTrue(pid.isdigit(), pid)
            self.assertEqual(int(pid), d.pid)
            bits = struct.unpack(">I", recv_exact(s, 4))[0]
            self.assertEqual(bits % 8, 0, "entropy count %d is not whole bytes" % bits)
            self.assertLessEqual(bits, POOL_SIZE * 8)
            ln = recv_exact(s, 1)[0]
            self.assertEqual(int(recv_exact(s, ln)), d.pid)

            def entropy_count():
                s.sendall(b"\x00")
                return struct.unpack(">I", recv_exact(s, 4))[0]

            # Nobody else reads: the fast test source fills the pool, and 00 must then
            # report the whole pool (8 bits a byte).
            full = POOL_SIZE * 8
            self.assertTrue(wait_until(lambda: entropy_count() == full, 20, interval=0.05),
                            "00 never reported the full pool (%d bits); last %d"
                            % (full, entropy_count()))
            stats = d.stats()
            self.assertIn("pool", stats)
            self.assertEqual(stats["pool"], "%d/%d" % (POOL_SIZE, POOL_SIZE))
            # 255 bytes taken: the count drops by their 2040 bits until the source
            # refills, so right after the read it is below full or refilled to full,
            # never above, and the pool counter says the same.
            s.sendall(egd_read(255))
            recv_exact(s, 255)
            after = entropy_count()
            self.assertEqual(after % 8, 0)
            self.assertLessEqual(after, full)
        d.stop()

if __name__ == "__main__":
    import unittest
    unittest.main()
