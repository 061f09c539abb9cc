"""A daemon started as root with --user nobody (docs/security.md): once its sources,
sockets and file opener are set up it is nobody for good, with no capabilities,
no_new_privs, its seccomp filter and no core dumps; and it still serves, reloads,
reopens a root-only FIFO source that was unplugged, and restarts its QNG worker.
Every byte a client gets is checked against the stream it came from."""

import os
import pwd
import select
import signal
import stat
import threading
import time
import unittest

from harness import (RngmuxTestCase, connect, egd_read, proc_status, recv_exact,
                     reference_stream, wait_until)
import test_qwqng

NOBODY = pwd.getpwnam("nobody")
SEED = "privileges"
ZERO_CAPS = "0000000000000000"




class FifoWriter(threading.Thread):
    """Writes `data` into a FIFO once rngmux opens it for reading, until it is all
    written or stop() (then it closes its end: end of file for the reader)."""

    def __init__(self, path, data, max_seconds=60):
        super().__init__(daemon=True)
        self.path = path
        self.data = data
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.written = 0
        self.error = None

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        fd = None
        try:
            while fd is None and not self.stop_event.is_set() and time.monotonic() < deadline:
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except OSError:  # ENXIO: no reader yet
                    time.sleep(0.02)
            while fd is not None and self.written < len(self.data) and \
                    not self.stop_event.is_set() and time.monotonic() < deadline:
                _, w, _ = select.select([], [fd], [], 0.1)
                if w:
                    try:
                        self.written += os.write(fd, self.data[self.written:self.written + 4096])
                    except BlockingIOError:
                        pass
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            if fd is not None:
                os.close(fd)

    def stop(self):
        self.stop_event.set()
        self.join(10)


class PrivilegesTest(RngmuxTestCase):
    def setUp(self):
        super().setUp()
        self.skip_unless("root", os.geteuid() == 0, "the test starts rngmux as root")
        # nobody may pass through the test directory (the QNG worker reads in it);
        # what rngmux opens there as root stays root's.
        os.chmod(self.tmp, 0o755)

    def assert_dropped(self, pid, what):
        status = proc_status(pid)
        self.assertEqual(status["Uid"].split(), [str(NOBODY.pw_uid)] * 4, "%s: %r" % (what, status))
        self.assertEqual(status["Gid"].split(), [str(NOBODY.pw_gid)] * 4, "%s: %r" % (what, status))
        self.assertEqual(status["Groups"], "", what)
        for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            self.assertEqual(status[caps], ZERO_CAPS, "%s: %s" % (what, caps))
        self.assertEqual(status["NoNewPrivs"], "1", what)
        self.assertEqual(status["Seccomp"], "2", what)
        return status

    @staticmethod
    def _parent_and_name(pid):
        try:
            status = proc_status(pid)
        except OSError:
            return None
        return int(status["PPid"]), status["Name"]

    def collect(self, d, n):
        got = bytearray()
        with connect(d.endpoints[0]) as s:
            while len(got) < n:
                s.sendall(egd_read(255))
                got += recv_exact(s, 255, timeout=20)
        return bytes(got[:n])

    def test_dropped_daemon_serves_reloads_and_reopens_an_unplugged_fifo(self):
        reference = reference_stream(SEED, 1 << 21)
        first, second = reference[:1 << 20], reference[1 << 20:]
        fifo = self.path("trng.fifo")
        os.mkfifo(fifo, 0o600)  # root's alone: only the file opener can open it
        writer = FifoWriter(fifo, first)
        writer.start()
        self.addCleanup(writer.stop)
        config = self.path("rngmux.toml")
        sock = self.path("egd.sock")
        with open(config, "w") as f:
            f.write('user = "nobody"\ncontrol = ""\npool-size = 4096\n'
                    '[[source]]\nspec = "file:%s,entropy=8"\n'
                    '[[listen]]\naddress = "unix:%s"\n' % (fifo, sock))
        d = self.start_daemon(["--config", config], expect_listen=1)
        d.wait_log(r"running as user nobody \(uid %d\)" % NOBODY.pw_uid)
        self.assert_dropped(d.pid, "daemon")
        # Not dumpable: its /proc files stay root's although it runs as nobody.
        self.assertEqual(os.stat("/proc/%d/environ" % d.pid).st_uid, 0)
        # The socket file was given to nobody, so that nobody can remove it later.
        self.assertEqual(os.lstat(sock).st_uid, NOBODY.pw_uid)
        self.assertTrue(stat.S_ISSOCK(os.lstat(sock).st_mode))

        # The file opener stays root, but with file access alone.
        helpers = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                   if self._parent_and_name(pid) == (d.pid, "rngmux-opener")]
        self.assertEqual(len(helpers), 1, "file opener processes: %r" % helpers)
        helper = proc_status(helpers[0])
        self.assertEqual(helper["Uid"].split()[1], "0")
        self.assertEqual(helper["CapEff"], "0000000000000006", "DAC_OVERRIDE, DAC_READ_SEARCH")
        self.assertEqual(helper["CapBnd"], "0000000000000006")
        self.assertEqual(helper["NoNewPrivs"], "1")

        data = self.collect(d, 8192)
        self.assert_from_reference(data, first, "from the FIFO as nobody")

        # A reload works, and says that user changes wait for a restart.
        text = open(config).read().replace('user = "nobody"', 'user = "daemon"')
        with open(config, "w") as f:
            f.write(text)
        d.proc.send_signal(signal.SIGHUP)
        m = d.wait_log(r"reloaded: (.*)$")
        self.assertIn("user changed: takes effect at the next restart", m.group(1))
        self.assert_dropped(d.pid, "daemon after the reload")

        # Unplug: the writer goes, the FIFO is removed and made again (root-only).
        writer.stop()
        os.unlink(fifo)
        os.mkfifo(fifo, 0o600)
        writer2 = FifoWriter(fifo, second)
        writer2.start()
        self.addCleanup(writer2.stop)
        # What the old FIFO's pipe and the pool still held goes first (at most 64 KiB
        # and 4 KiB); then the new FIFO's bytes, which only the file opener can open.
        data = self.collect(d, 256 * 1024)
        self.assertGreater(writer2.written, 0, "rngmux never opened the new FIFO")
        self.assertNotEqual(second.find(data[-32:]), -1,
                            "the last bytes served are not from the new FIFO")
        self.assertIn("end of file", d.log_text())
        self.assertIsNone(writer2.error)
        self.assertIsNone(d.proc.poll())

    def test_qng_worker_restarts_as_nobody(self):
        self.skip_unless("qwqng", test_qwqng.compiled_in(),
                         "read --source qwqng says \"not compiled in\"")
        sysfs = self.path("sys")
        control = self.path("control")
        os.makedirs(os.path.join(sysfs, "bus/usb/devices"))
        os.makedirs(os.path.join(sysfs, "devices"))
        os.makedirs(control)
        os.chmod(control, 0o777)  # the double keeps its lock file there
        # Paced like the fault tests in test_qwqng.py, so that each worker's output stays
        # inside the reference however long the restart takes on a loaded machine.
        with open(os.path.join(control, "rate"), "w") as f:
            f.write("%d\n" % test_qwqng.SLOW_RATE)
        env = {"QWQNG_DOUBLE_SYSFS": sysfs, "QWQNG_DOUBLE_CONTROL": control,
               "QWQNG_DOUBLE_SEED": test_qwqng.SEED}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        self.addCleanup(test_qwqng.QwqngTest._restore_env, saved)
        target = os.path.join(sysfs, "devices", "usb-5")
        os.makedirs(target)
        for name, value in (("idVendor", "0403"), ("idProduct", "6001"),
                            ("serial", test_qwqng.SERIAL), ("devnum", "5"), ("busnum", "1")):
            with open(os.path.join(target, name), "w") as f:
                f.write(value + "\n")
        os.symlink(target, os.path.join(sysfs, "bus/usb/devices/1-1"))

        sock = self.path("egd.sock")
        d = self.start_daemon(["--user", "nobody", "--source",
                               "qwqng,sysfs=%s,timeout=5" % sysfs, "--listen", "unix:%s" % sock,
                               "--pool-size", "16384"])
        self.assert_dropped(d.pid, "daemon")
        first = wait_until(lambda: d.stats().get("worker_pid"), 10)
        self.assertTrue(first, "no worker running")
        self.assert_dropped(first, "worker")
        c = test_qwqng.EgdCollector(d.endpoints[0])
        c.start()
        self.addCleanup(c.stop_event.set)
        c.wait_bytes(32 * 1024, 30)

        os.kill(first, signal.SIGKILL)
        d.wait_log(r"worker pid %d killed by signal 9" % first, timeout=10)
        d.wait_log(r"worker pid \d+ started \(restart 1\)", timeout=20)
        second = wait_until(lambda: (d.stats().get("worker_pid") or first) != first and
                            d.stats().get("worker_pid"), 20)
        self.assertTrue(second, "the worker was not restarted")
        self.assert_dropped(second, "restarted worker")
        c.more(32 * 1024, timeout=30)
        data = c.finish()
        good, poison = test_qwqng.indexes()
        _, in_runs, _ = good.claims(data)
        self.assertGreaterEqual(in_runs, len(data) - 16, "bytes not from the double's stream")
        self.assertEqual(poison.runs(data), [])


if __name__ == "__main__":
    unittest.main()
