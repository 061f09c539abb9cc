"""A real third-party EGD client (ekeyd-egd-linux from Debian) against rngmux over TCP."""

import os
import platform
import re
import shutil
import subprocess
import sys
import time
import unittest

from harness import RngmuxTestCase, wait_until

EKEYD = "/usr/sbin/ekeyd-egd-linux"
RUN_SECONDS = 4


def kernel_at_least(major, minor):
    try:
        parts = platform.release().split(".")
        return (int(parts[0]), int(re.sub(r"\D.*", "", parts[1]))) >= (major, minor)
    except (ValueError, IndexError):
        return True



class EkeydTest(RngmuxTestCase):
    def setUp(self):
        super().setUp()
        if not os.access(EKEYD, os.X_OK):
            self.fail("%s missing (Debian package ekeyd-egd-linux)" % EKEYD)

    def client_argv(self, port):
        """ekeyd-egd-linux polls /dev/random for POLLOUT before each request. Since Linux
        5.18 /dev/random never polls writable once the CRNG is ready, so on such kernels
        it would connect and then never ask for anything. Run it in a private mount
        namespace where /dev/random is /dev/urandom (same driver, same RNDADDENTROPY
        ioctl, always writable). Requires root, which the test host provides."""
        base = [EKEYD, "-H", "127.0.0.1", "-p", str(port), "-b", "4", "-r", "1", "-t", "5"]
        unshare = shutil.which("unshare")
        if os.geteuid() == 0 and unshare:
            probe = subprocess.run([unshare, "-m", "sh", "-c",
                                    "mount --bind /dev/urandom /dev/random"],
                                   capture_output=True, timeout=10)
            if probe.returncode == 0:
                script = "mount --bind /dev/urandom /dev/random && exec \"$@\""
                return [unshare, "-m", "sh", "-c", script, "sh"] + base, True
            sys.stderr.write("\n*** cannot use a mount namespace: %r ***\n" % probe.stderr)
        return base, False

    def test_ekeyd_egd_linux_feeds_from_rngmux(self):
        d = self.start_daemon(["--source", "getrandom", "--listen", "tcp:127.0.0.1:0"])
        port = int(d.endpoints[0].rsplit(":", 1)[1])
        argv, namespaced = self.client_argv(port)
        self.skip_unless("unshare", namespaced or not kernel_at_least(5, 18),
                         "ekeyd-egd-linux waits for /dev/random to poll writable, which "
                         "kernel %s (>= 5.18) never reports" % platform.release())
        log = open(os.path.join(self.tmp, "ekeyd.log"), "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            connected = wait_until(lambda: d.stats()["clients"] >= 1 or proc.poll() is not None,
                                   10, interval=0.3)
            self.assertTrue(connected, "ekeyd-egd-linux never connected")
            time.sleep(RUN_SECONDS)
            self.assertIsNone(proc.poll(), "ekeyd-egd-linux exited early with %r"
                              % proc.returncode)
            stats = d.stats()
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            log.close()
        with open(os.path.join(self.tmp, "ekeyd.log"), "rb") as f:
            client_log = f.read().decode("utf-8", "replace")
        sys.stderr.write("\nekeyd-egd-linux: served_bytes=%d in %ds (namespaced=%r)\n"
                         % (stats["served_bytes"], RUN_SECONDS, namespaced))
        # one transaction is 4 x `02 80`; it loops as long as the kernel takes entropy
        self.assertGreaterEqual(stats["served_bytes"], 4 * 128, client_log)
        self.assertEqual(stats["clients"], 1, "ekeyd-egd-linux lost its connection: %r" % stats)
        self.assertEqual(stats["connections_total"], 1,
                         "ekeyd-egd-linux had to reconnect: %r\n%s" % (stats, client_log))
        self.assertEqual(stats["bad_requests"], 0)
        d.stop()


if __name__ == "__main__":
    unittest.main()
