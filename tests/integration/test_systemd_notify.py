"""systemd's notify protocol, without systemd as PID 1: the test owns NOTIFY_SOCKET.

The daemon says READY=1 once its endpoints listen, keeps STATUS= current (serving
source, client count), wraps a reload (SIGHUP) in RELOADING=1 ... READY=1, says
STOPPING=1 at SIGTERM, and feeds the watchdog (WATCHDOG_USEC) from its event loop:
while that one thread is held stopped (ptrace), no WATCHDOG=1 arrives although the
process lives on.
"""

import ctypes
import os
import signal
import socket
import threading
import time
import unittest

from harness import RngmuxTestCase, connect, egd_read, recv_exact, wait_until

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000


class NotifySocket(threading.Thread):
    """The service manager's end: a unix datagram socket that keeps every message with
    its arrival time."""

    def __init__(self, path, seconds=120):
        super().__init__(daemon=True)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.deadline = time.monotonic() + seconds
        self.messages = []  # (monotonic time, {key: value})
        self.lock = threading.Lock()
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self.lock:
                self.messages.append((time.monotonic(), fields))

    def close(self):
        self.stop_event.set()
        self.join(5)
        self.sock.close()

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def with_key(self, key, since=0.0):
        return [(t, m) for t, m in self.snapshot() if key in m and t >= since]

    def wait_for(self, key, value=None, since=0.0, timeout=10):
        def found():
            return [(t, m) for t, m in self.with_key(key, since)
                    if value is None or m[key] == value or
                    (callable(value) and value(m[key]))]
        self.assert_true(wait_until(lambda: bool(found()), timeout),
                         "no %s%s in %r" % (key, "" if value is None else "=%r" % value,
                                            self.snapshot()[-10:]))
        return found()[0]

    @staticmethod
    def assert_true(ok, message):
        if not ok:
            raise AssertionError(message)


class SystemdNotifyTest(RngmuxTestCase):
    def start_notified(self, extra_env=(), args=()):
        notify = NotifySocket(self.path("notify.sock"))
        notify.start()
        self.addCleanup(notify.close)
        env = ["env", "NOTIFY_SOCKET=" + notify.path] + list(extra_env)
        d = self.start_daemon(["--source", "test:5,rate=100000", "--allow-test-source",
                               "--listen", "tcp:127.0.0.1:0"] + list(args), wrapper=env)
        return d, notify

    def test_ready_status_reload_and_stopping(self):
        d, notify = self.start_notified()
        t_ready, ready = notify.wait_for("READY", "1")
        # Until the start-up health test has passed, no source serves.
        self.assertRegex(ready.get("STATUS", ""),
                         r"^(serving from test:5\S*|no source serving yet); 0 clients$")
        notify.wait_for("STATUS", lambda v: v.startswith("serving from test:5,"))
        # READY comes after the listener is up: a client is served at once.
        with connect(d.endpoints[0]) as s:
            s.sendall(egd_read(32))
            self.assertEqual(len(recv_exact(s, 32)), 32)
            notify.wait_for("STATUS", lambda v: v.endswith("; 1 client"), since=t_ready)
            # SIGHUP: RELOADING=1 (with the monotonic time systemd wants), then READY=1.
            t0 = time.monotonic()
            d.proc.send_signal(signal.SIGHUP)
            t_reloading, reloading = notify.wait_for("RELOADING", "1", since=t0)
            self.assertRegex(reloading.get("MONOTONIC_USEC", ""), r"^\d+$")
            t_again, again = notify.wait_for("READY", "1", since=t_reloading)
            self.assertIn("1 client", again.get("STATUS", ""))
        notify.wait_for("STATUS", lambda v: v.endswith("; 0 clients"), since=t_again)
        t1 = time.monotonic()
        d.stop()
        notify.wait_for("STOPPING", "1", since=t1)
        self.assertEqual(len(notify.with_key("READY")), 2, "READY=1 once at start, once per reload")

    def test_no_watchdog_messages_unless_asked(self):
        d, notify = self.start_notified()
        notify.wait_for("READY", "1")
        time.sleep(1.0)
        self.assertEqual(notify.with_key("WATCHDOG"), [])
        d.stop()

    def test_watchdog_is_fed_from_the_event_loop(self):
        interval = 0.4  # WATCHDOG_USEC: the daemon feeds it every 0.2 s
        d, notify = self.start_notified(["WATCHDOG_USEC=%d" % int(interval * 1e6)])
        notify.wait_for("READY", "1")
        d.wait_log(r"systemd watchdog: feeding it every 200 ms")
        t0 = time.monotonic()
        time.sleep(2.0)
        fed = notify.with_key("WATCHDOG", since=t0)
        self.assertGreaterEqual(len(fed), 6, "WATCHDOG=1 not every 0.2 s: %r" % fed)
        self.assertLessEqual(len(fed), 14, "WATCHDOG=1 far more often than every 0.2 s")

        # Hold the event-loop thread (the main thread: its tid is the pid) and nothing
        # else: the watchdog must starve, as it would under a wedged loop.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        pid = d.proc.pid
        if libc.ptrace(PTRACE_SEIZE, pid, None, None) != 0:
            self.skipTest("ptrace not permitted here: %s" % os.strerror(ctypes.get_errno()))
        try:
            self.assertEqual(libc.ptrace(PTRACE_INTERRUPT, pid, None, None), 0)
            _, status = os.waitpid(pid, WALL)
            self.assertTrue(os.WIFSTOPPED(status))
            held = time.monotonic()
            time.sleep(1.5)
            during = notify.with_key("WATCHDOG", since=held + 0.1)
            threads_alive = len(os.listdir("/proc/%d/task" % pid))
        finally:
            libc.ptrace(PTRACE_DETACH, pid, None, None)
        released = time.monotonic()
        self.assertEqual(during, [], "WATCHDOG=1 while the event loop was held")
        self.assertGreater(threads_alive, 1, "the daemon has no thread besides the loop")
        notify.wait_for("WATCHDOG", "1", since=released, timeout=5)
        with connect(d.endpoints[0]) as s:
            s.sendall(egd_read(16))
            self.assertEqual(len(recv_exact(s, 16)), 16)
        d.stop()


if __name__ == "__main__":
    unittest.main()
