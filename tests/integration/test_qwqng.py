"""The QNG source (--source qwqng) seen from outside: a running `rngmux serve`
reads the libqwqng test double (tests/qwqng-double) through its worker process,
and the tests are EGD clients of it.

The double's device lives in a fake sysfs tree the test owns (unplug = remove it,
replug = put it back with a new device number); faults are files in a control
directory. Its good output is the stream of `--source test:SEED`, so every byte a
client gets is checked against that reference; a failing read fills the buffer
with bytes of a separate "poison" stream, which no client may ever see.

Skipped only when rngmux was built without qwqng; scripts/test.sh always builds
it against the double.
"""

import hashlib
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
import unittest

from harness import (BINARY, RngmuxTestCase, ReferenceIndex, connect, egd_read,
                     reference_stream, run_cli, wait_until)

SEED = "qwqng-integration"
SERIAL = "QWR4M004"
WORKER = os.path.join(os.path.dirname(os.path.abspath(BINARY)), "rngmux-qwqng-worker")
REFERENCE_BYTES = 2 << 20
POISON_BYTES = 256 << 10
SLOW_RATE = 100000  # bytes/s for the fault tests: keeps every worker's output inside the reference
DEVICE_RATE = 500000  # the real PQ4000KU: 4 Mbit/s

_compiled_in = None
_indexes = {}


def compiled_in():
    """Whether this rngmux has qwqng support; asks without starting anything."""
    global _compiled_in
    if _compiled_in is None:
        p = run_cli(["read", "--source", "qwqng,worker=/nonexistent", "-n", "1"], timeout=30)
        _compiled_in = b"not compiled in" not in p.stderr
    return _compiled_in


def poison_stream(n):
    """What the double puts into the buffer of a read that fails (see qwqng_double.cc)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"qwqng-double-poison:" + SEED.encode() + b":" +
                              i.to_bytes(8, "little")).digest()
        i += 1
    return bytes(out[:n])


def indexes():
    if not _indexes:
        _indexes["good"] = ReferenceIndex(reference_stream(SEED, REFERENCE_BYTES))
        _indexes["poison"] = ReferenceIndex(poison_stream(POISON_BYTES))
    return _indexes["good"], _indexes["poison"]


def process_state(pid):
    """The state letter of a process ('R', 'S', 'Z', ...), or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def children(pid):
    """[(child_pid, state)] of a process, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append((int(entry), fields[0]))
    return out


class EgdCollector(threading.Thread):
    """An EGD client that keeps `depth` blocking `02 FF` requests in flight and
    keeps what it gets (unless keep=False), until stopped."""

    def __init__(self, ep, depth=16, keep=True, max_seconds=240):
        super().__init__(daemon=True)
        self.ep = ep
        self.depth = depth
        self.keep = keep
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.data = bytearray()
        self.count = 0
        self.error = None

    def run(self):
        try:
            with connect(self.ep) as s:
                requested = 0
                deadline = time.monotonic() + self.max_seconds
                while not self.stop_event.is_set() and time.monotonic() < deadline:
                    missing = self.depth - (requested - self.count) // 255
                    if missing > 0:
                        s.sendall(egd_read(255) * missing)
                        requested += 255 * missing
                    r, _, _ = select.select([s], [], [], 0.1)
                    if not r:
                        continue
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        raise AssertionError("EOF from rngmux after %d bytes" % self.count)
                    with self.lock:
                        if self.keep:
                            self.data += chunk
                        self.count += len(chunk)
        except Exception as e:  # reported by the test
            self.error = e

    def total(self):
        with self.lock:
            return self.count

    def wait_bytes(self, n, timeout):
        if not wait_until(lambda: self.total() >= n or self.error, timeout):
            raise AssertionError("client got %d of %d bytes within %.0f s" % (self.total(), n,
                                                                            timeout))
        if self.error:
            raise AssertionError("client failed: %r" % self.error)

    def more(self, n, timeout=20):
        """Waits for n more bytes than the client has now."""
        self.wait_bytes(self.total() + n, timeout)

    def finish(self):
        self.stop_event.set()
        self.join(10)
        if self.error:
            raise AssertionError("client failed: %r" % self.error)
        with self.lock:
            return bytes(self.data)


class QwqngTest(RngmuxTestCase):
    def setUp(self):
        super().setUp()
        self.skip_unless("qwqng", compiled_in(), "read --source qwqng says \"not compiled in\"")
        self.assertTrue(os.access(WORKER, os.X_OK), "%s is missing" % WORKER)
        self.sysfs = self.path("sys")
        self.control_dir = self.path("control")
        os.makedirs(os.path.join(self.sysfs, "bus/usb/devices"))
        os.makedirs(os.path.join(self.sysfs, "devices"))
        os.makedirs(self.control_dir)
        env = {"QWQNG_DOUBLE_SYSFS": self.sysfs, "QWQNG_DOUBLE_CONTROL": self.control_dir,
               "QWQNG_DOUBLE_SEED": SEED}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        self.addCleanup(self._restore_env, saved)
        self.plug(devnum=5)

    @staticmethod
    def _restore_env(saved):
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    # -- the simulated device --------------------------------------------------
    def plug(self, devnum):
        """Plugs the device in; as in real sysfs, bus/usb/devices/1-1 is a symlink,
        replaced atomically, so a replug can happen between two library calls."""
        target = os.path.join(self.sysfs, "devices", "usb-%d" % devnum)
        os.makedirs(target)
        for name, value in (("idVendor", "0403"), ("idProduct", "6001"), ("serial", SERIAL),
                            ("devnum", str(devnum)), ("busnum", "1")):
            with open(os.path.join(target, name), "w") as f:
                f.write(value + "\n")
        link = os.path.join(self.sysfs, "bus/usb/devices/1-1")
        os.symlink(target, link + ".new")
        os.replace(link + ".new", link)

    def unplug(self):
        os.remove(os.path.join(self.sysfs, "bus/usb/devices/1-1"))

    def control(self, name, value=""):
        tmp = os.path.join(self.control_dir, ".%s.tmp" % name)
        with open(tmp, "w") as f:
            f.write(value + "\n")
        os.replace(tmp, os.path.join(self.control_dir, name))

    def clear_control(self, name):
        try:
            os.remove(os.path.join(self.control_dir, name))
        except FileNotFoundError:
            pass

    def fault_taken(self, timeout=10):
        """Waits until the double has consumed the one-shot read_fault."""
        path = os.path.join(self.control_dir, "read_fault")
        self.assertTrue(wait_until(lambda: not os.path.exists(path), timeout),
                        "the worker never read again")

    # -- the daemon and its clients --------------------------------------------
    def serve(self, silence=5, name=None):
        sock = self.path("%s.sock" % (name or "egd%d" % len(self.daemons)))
        spec = "qwqng,sysfs=%s,timeout=%g" % (self.sysfs, silence)
        return self.start_daemon(["--source", spec, "--listen", "unix:%s" % sock,
                                  "--pool-size", "16384"], name=name)

    def client(self, d, **kw):
        c = EgdCollector(d.endpoints[0], **kw)
        c.start()
        self.addCleanup(c.stop_event.set)
        return c

    def worker_pid(self, d):
        pid = wait_until(lambda: d.stats().get("worker_pid"), 10)
        self.assertTrue(pid, "no worker running")
        return pid

    def assert_clean(self, d, data):
        """Every byte a client got is the double's good output; none is poison;
        nothing called Reset() after an unplug; no sanitizer complained."""
        good, poison = indexes()
        _, in_runs, _ = good.claims(data)
        # Pieces shorter than an index window can only be at the very end.
        self.assertGreaterEqual(in_runs, len(data) - 16,
                                "%d of %d served bytes are not the double's output"
                                % (len(data) - in_runs, len(data)))
        self.assertEqual(poison.runs(data), [], "a client got bytes from a failed read")
        log = d.log_text()
        self.assertNotIn("use-after-free", log)
        self.assertNotIn("Sanitizer", log)
        self.assertNotIn("runtime error", log)

    def assert_no_zombies(self, d):
        kids = children(d.pid)
        self.assertEqual([k for k in kids if k[1] == "Z"], [], "zombie workers")
        self.assertLessEqual(len(kids), 1, "more than one worker: %r" % kids)

    # -- tests -------------------------------------------------------------------
    def test_read_reproduces_the_randbytes_check(self):
        p = run_cli(["read", "--source", "qwqng,sysfs=%s" % self.sysfs, "-n", "10", "--hex"])
        self.assertEqual(p.returncode, 0, p.stderr)
        q = run_cli(["read", "--source", "test:%s" % SEED, "-n", "10", "--hex"])
        self.assertEqual(p.stdout, q.stdout)
        self.assertRegex(p.stdout.decode(), r"^[0-9a-f]{20}\n$")
        self.assertIn(b"10 health-tested bytes from qwqng", p.stderr)

    def test_read_without_a_device_says_so(self):
        self.unplug()
        p = run_cli(["read", "--source", "qwqng,sysfs=%s" % self.sysfs, "-n", "10"])
        self.assertEqual(p.returncode, 1)
        lines = [l for l in p.stderr.decode().splitlines() if l.startswith("rngmux:")]
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn("no QNG device found, or another process has it open: QNG device not "
                      "found or already in use.", lines[0])

    def test_worker_links_libqwqng_and_not_libftdi(self):
        out = subprocess.run(["readelf", "-d", WORKER], capture_output=True, timeout=30,
                             check=True).stdout.decode()
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
        self.assertIn("libqwqng.so.1", needed)
        self.assertEqual([n for n in needed if "ftdi" in n], [])
        self.assertRegex(out, r"\((RUNPATH|RPATH)\)")
        daemon = subprocess.run(["readelf", "-d", BINARY], capture_output=True, timeout=30,
                                check=True).stdout.decode()
        self.assertNotIn("libqwqng", daemon)

    def test_recoverable_faults_are_handled_inside_the_worker(self):
        self.control("rate", str(SLOW_RATE))
        d = self.serve(silence=5)
        c = self.client(d)
        c.wait_bytes(20000, 20)
        for fault, pattern in (("timeout", r"QNG_E_IO_TIMEOUT.*; Clear\(\) and Reset\(\)"),
                               ("io_error", r"QNG_E_IO_ERROR.*; Reset\(\)"),
                               ("stats_exception",
                                r"QNG_E_STATS_EXCEPTION.*; Clear\(\) and Reset\(\)")):
            self.control("read_fault", fault)
            d.wait_log(pattern, timeout=10)
            c.more(20000)
        # A Reset() that blocks for seconds, but less than the silence limit.
        self.control("stall_reset", "2")
        self.control("read_fault", "io_error")
        d.wait_log(r"Reset: .*reading again", count=4, timeout=15)
        self.clear_control("stall_reset")
        c.more(20000)

        stats = d.stats()
        self.assertEqual(stats["worker_restarts"], 0)
        self.assertEqual(stats["read_errors"], 0)
        self.assertEqual(stats["qng_device"], SERIAL)
        info = stats["qng_runtime_info"].split(",")
        self.assertEqual(len(info), 17)
        self.assertEqual(float(info[0]), 0.0)
        self.assert_clean(d, c.finish())
        self.assertEqual(d.count_log(r"device %s open" % SERIAL), 1)

    def test_device_health_failure_restarts_the_worker_and_clients_wait(self):
        self.control("rate", str(SLOW_RATE))
        d = self.serve(silence=5)
        c = self.client(d)
        c.wait_bytes(20000, 20)
        self.control("stats_failing")
        d.wait_log(r"still failing after 3 rounds of recovery", timeout=20)
        d.wait_log(r"worker pid \d+ started \(restart 1\)", timeout=10)
        self.assertTrue(wait_until(lambda: d.stats().get("qng_runtime_info", "").startswith("1,"),
                                   10), "RuntimeInfo never showed the failing statistics")
        waiting = c.total()
        time.sleep(1.5)
        self.assertEqual(c.total(), waiting, "a client got bytes while the device was failing")
        self.assertIsNone(c.error)
        self.clear_control("stats_failing")
        c.more(20000, timeout=30)
        stats = d.stats()
        self.assertGreaterEqual(stats["worker_restarts"], 1)
        self.assertGreaterEqual(stats["read_errors"], 1)
        self.assert_clean(d, c.finish())

    def test_unplug_and_replug(self):
        self.control("rate", str(SLOW_RATE))
        d = self.serve(silence=5)
        c = self.client(d)
        c.wait_bytes(20000, 20)
        self.unplug()
        d.wait_log(r"is gone from sysfs", timeout=10)
        d.wait_log(r"no QNG device found", timeout=10)  # a new worker finds nothing
        waiting = c.total()
        time.sleep(1.0)
        self.assertEqual(c.total(), waiting)
        self.assertIsNone(c.error)
        self.plug(devnum=6)
        c.more(20000, timeout=30)

        # Unplugged and back between two reads: the same serial, a new device
        # number. The open handle is stale all the same, so Reset() is not an option.
        gone = d.count_log(r"is gone from sysfs")
        self.plug(devnum=7)
        d.wait_log(r"is gone from sysfs", count=gone + 1, timeout=10)
        c.more(20000, timeout=30)
        self.assertGreaterEqual(d.stats()["worker_restarts"], 2)
        self.assert_clean(d, c.finish())
        self.assert_no_zombies(d)

    def test_busy_device(self):
        self.control("rate", str(SLOW_RATE))
        self.control("busy")
        d = self.serve(silence=5)
        c = self.client(d)
        d.wait_log(r"no QNG device found, or another process has it open", count=2, timeout=10)
        self.assertEqual(c.total(), 0)
        self.clear_control("busy")
        c.wait_bytes(20000, 20)
        # While the daemon's worker holds it, anyone else finds the device in use.
        p = run_cli(["read", "--source", "qwqng,sysfs=%s" % self.sysfs, "-n", "10"])
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"another process has it open", p.stderr)
        c.more(20000)
        self.assert_clean(d, c.finish())

    def test_hang_crash_and_kill_restart_the_worker(self):
        self.control("rate", str(SLOW_RATE))
        # Long enough that a freshly started (sanitized, loaded) worker is never
        # taken for a hung one.
        d = self.serve(silence=3)
        c = self.client(d)
        c.wait_bytes(20000, 20)

        first = self.worker_pid(d)
        self.control("read_fault", "hang")
        d.wait_log(r"worker pid %d sent nothing for 3 s; killed by signal 9" % first, timeout=15)
        c.more(20000)
        self.assertIsNone(process_state(first))

        second = self.worker_pid(d)
        self.control("read_fault", "crash")
        d.wait_log(r"worker pid %d killed by signal 6" % second, timeout=10)
        c.more(20000)

        third = self.worker_pid(d)
        os.kill(third, signal.SIGKILL)
        d.wait_log(r"worker pid %d killed by signal 9" % third, timeout=10)
        c.more(20000)

        self.assertEqual(d.stats()["worker_restarts"], 3)
        for pid in (first, second, third):
            self.assertIsNone(process_state(pid), "worker %d was not reaped" % pid)
        self.assert_no_zombies(d)
        self.assert_clean(d, c.finish())

    def test_slow_constructor(self):
        self.control("rate", str(SLOW_RATE))
        # Slower than usual but within the silence limit: served, no restart.
        self.control("stall_open", "2")
        d = self.serve(silence=4, name="patient")
        start = time.monotonic()  # the worker starts (and stalls) just after listening
        c = self.client(d)
        c.wait_bytes(1, 20)
        self.assertGreaterEqual(time.monotonic() - start, 1.0)
        self.assertEqual(d.stats()["worker_restarts"], 0)
        self.assert_clean(d, c.finish())
        d.stop()

        # Longer than the limit: killed, restarted, served once it opens in time. The
        # limit leaves a worker that does not stall ample time to start.
        self.control("stall_open", "4")
        d = self.serve(silence=2, name="impatient")
        c = self.client(d)
        d.wait_log(r"sent nothing for 2 s; killed by signal 9", timeout=15)
        self.assertEqual(c.total(), 0)
        self.clear_control("stall_open")
        c.wait_bytes(20000, 30)
        self.assert_no_zombies(d)
        self.assert_clean(d, c.finish())

    def test_stopping_rngmux_stops_a_hung_worker(self):
        d = self.serve(silence=60)
        c = self.client(d)
        c.wait_bytes(20000, 20)
        pid = self.worker_pid(d)
        self.control("read_fault", "hang")
        self.fault_taken()
        start = time.monotonic()
        d.stop(timeout=10)
        self.assertLess(time.monotonic() - start, 5)
        self.assertIsNone(process_state(pid))

    def test_the_worker_dies_with_rngmux(self):
        d = self.serve(silence=60)
        c = self.client(d)
        c.wait_bytes(20000, 20)
        pid = self.worker_pid(d)
        self.control("read_fault", "hang")
        self.fault_taken()
        d.proc.kill()
        d.proc.wait(10)
        # Reparented and killed (PR_SET_PDEATHSIG); whoever adopted it may reap it late.
        self.assertTrue(wait_until(lambda: process_state(pid) in (None, "Z"), 10),
                        "worker %d outlived rngmux" % pid)

    def test_throughput_matches_the_device_rate(self):
        # The double's throttle is a token bucket that starts empty and holds up to
        # 2 s of output: what it has given since the device opened never exceeds
        # DEVICE_RATE x time, and bytes that a stall of rngmux (or of a loaded CI
        # machine) left unfetched are fetched afterwards instead of lost. (The real
        # device buffers less; this tests rngmux's pipeline, not the host's stalls.)
        self.control("rate", str(DEVICE_RATE))
        d = self.serve(silence=5)
        c = self.client(d, depth=64, keep=False)
        c.wait_bytes(1, 20)
        time.sleep(1.0)  # warm-up: the start-up test, the first pool fill
        b0, t0 = c.total(), time.monotonic()
        time.sleep(5.0)
        b1, t1 = c.total(), time.monotonic()
        rate = (b1 - b0) / (t1 - t0)
        print("\nqwqng throughput: %.0f B/s = %.1f%% of the double's %d B/s"
              % (rate, 100.0 * rate / DEVICE_RATE, DEVICE_RATE))
        self.assertGreaterEqual(rate, 0.95 * DEVICE_RATE)
        c.finish()


if __name__ == "__main__":
    unittest.main()
