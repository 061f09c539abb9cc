"""Real QEMU 7.2 guests (TCG) with vhost-user-rng-pci served by rngmux: the backend owns the
virtqueue, QEMU's main loop is out of the data path (../shared/docs/vhost-user-rng.md).

Guest RAM is a shared memfd (memory-backend-memfd,share=on), which rngmux maps. Integrity is
checked like the rng-egd cases (test_qemu_guest.py): rngmux serves `--source test:SEED`, and
what the guest read must be ONE CONTIGUOUS SLICE of that reference stream. With vhost-user
the daemon writes only into buffers the guest offered, so no byte is ever pushed ahead of a
request: the guest kernel's own early reads come first and the test's read follows them.

QEMU 7.2 aborts with reconnect= on a vhost-user-rng chardev, so the restart case runs QEMU as
the server (server=on,wait=on) with rngmux connecting (--connect vhost-user:PATH).
"""

import os
import re
import sys
import time

import guest
from harness import RngmuxTestCase, wait_until
from guest import (VHOST_USER, Guest, assert_contiguous, ensure_guest, find_once, print_summary,
                   reference)

BOOT_TIMEOUT = 90
READING_RE = r"rngmux-guest: reading \d+ bytes"
MIB = 1 << 20
# A 1 MiB read may be retried once (the guest's hwrng kthread read meanwhile), so the slice
# can start past the first MiB of the reference.
guest.REF_SIZE = max(guest.REF_SIZE, 4 * MIB)

_summary = []


class QemuVhostUserTest(RngmuxTestCase):
    @classmethod
    def setUpClass(cls):
        ensure_guest()

    @classmethod
    def tearDownClass(cls):
        print_summary("guest /dev/hwrng through vhost-user-rng-pci and rngmux (TCG):", _summary)

    # -- helpers ---------------------------------------------------------------------------
    def guest(self, chardev, name, nbytes, append_extra="", **kw):
        g = Guest(chardev, nbytes=nbytes, name=name, append_extra=append_extra,
                  logdir=self.path("guest-" + name), backend=VHOST_USER, **kw)
        self.addCleanup(g.close)
        return g

    def daemon_args(self, seed, *endpoint_args, rate=None):
        source = "test:%d" % seed + (",rate=%d" % rate if rate else "")
        return ["--source", source, "--allow-test-source", "--log-level", "debug"] \
            + list(endpoint_args)

    def record(self, mode, result, detail):
        line = ("%-40s %7.0f kB/s  (%d bytes in %.1f ms, %s)"
                % (mode, result["bytes_per_s"] / 1000, result["bytes"], result["ns"] / 1e6,
                   detail))
        _summary.append(line)
        sys.stdout.write("\n%s\n" % line)
        sys.stdout.flush()

    def vhost_clients(self, d):
        """{pid: served_bytes} of the vhost-user devices in the daemon's per-client stats."""
        return {c["pid"]: c["served_bytes"] for c in d.stats()["client_list"]
                if str(c.get("peer", "")).startswith("vhost-user:")}

    # -- 1. QEMU connects, rngmux listens: 1 MiB, one contiguous slice ----------------------
    def test_qemu_connects_reads_1mib_contiguous(self):
        seed = 201
        path = self.path("vm.sock")
        d = self.start_daemon(self.daemon_args(seed, "--listen", "vhost-user:%s" % path),
                              name="rngmux-vhost")
        # the startup output names the whole QEMU fragment, shared memory included
        self.assertTrue(any("memory-backend-memfd" in line and "vhost-user-rng-pci" in line
                            for line in d.log_lines()), d.log_text())
        g = self.guest("socket,id=c0,path=%s" % path, "listen", MIB)
        g.start()
        result = g.wait_result(BOOT_TIMEOUT)
        stats = d.stats()
        off = assert_contiguous(self, seed, result, MIB, stats)
        self.assertEqual(stats["connections_total"], 1, stats)
        self.assertEqual(stats["vhost_user_bad_messages"] + stats["vhost_user_bad_rings"], 0)
        # the device's identity is QEMU's unix peer credentials
        self.assertIn("vhost-user:%s pid=%d uid=%d gid=%d: connected"
                      % (path, g.proc.pid, os.getuid(), os.getgid()), d.log_text())
        self.record("vhost-user, QEMU connects", result, "offset %d" % off)

    # -- 2. QEMU listens, rngmux connects ----------------------------------------------------
    def test_qemu_listens_rngmux_connects(self):
        seed = 202
        path = self.path("qemu.sock")
        g = self.guest("socket,id=c0,path=%s,server=on,wait=on" % path, "connect", 65536)
        g.start()
        wait_until(lambda: os.path.exists(path), 30)
        d = self.start_daemon(self.daemon_args(seed, "--connect", "vhost-user:%s" % path),
                              name="rngmux-vhost-connect", expect_listen=0)
        d.wait_log(r"connected to vhost-user:", timeout=15)
        result = g.wait_result(BOOT_TIMEOUT)
        stats = d.stats()
        off = assert_contiguous(self, seed, result, 65536, stats)
        self.record("vhost-user, QEMU listens", result, "offset %d" % off)

    # -- 3. guest reboot (system_reset over QMP) mid-read, then a full read ------------------
    def test_guest_reboot_and_read_again(self):
        seed, nbytes = 203, 32768
        path = self.path("vm.sock")
        # a slow source: the first boot is still reading when it is reset
        d = self.start_daemon(self.daemon_args(seed, "--listen", "vhost-user:%s" % path,
                                               "--pool-size", "4096", rate=8192),
                              name="rngmux-reboot")
        g = self.guest("socket,id=c0,path=%s" % path, "reboot", nbytes,
                       append_extra="rngtries=1 rngsync=0", qmp=self.path("qmp.sock"),
                       reboot=True)
        g.start()
        g.wait_console(READING_RE, BOOT_TIMEOUT)
        time.sleep(0.5)
        reply = g.qmp_command("system_reset")
        self.assertIn("return", reply, reply)
        # the second boot prints its own "reading" line and then the result
        g.wait_console(r"(?s)%s.*%s" % (READING_RE, READING_RE), BOOT_TIMEOUT)
        self.assertNotIn("RNGMUX-RESULT", g.console().split("reading", 1)[0])
        m = wait_until(lambda: re.search(r"RNGMUX-RESULT ([^\r\n]*)\r?\n", g.console()),
                       BOOT_TIMEOUT)
        self.assertIsNotNone(m, "no result after the reboot\n" + g.console()[-3000:])
        from guest import parse_result
        result = parse_result(m.group(0))
        result["line"] = m.group(0).strip()
        self.assertEqual(result.get("bytes"), nbytes, result["line"])
        # one device throughout: its stream is in order, so the read after the reboot is one
        # contiguous slice of it too
        ref = reference(seed)
        find_once(self, ref, bytes.fromhex(result["head"]), "the first 32 bytes after reboot")
        stats = d.stats()
        self.assertEqual(stats["vhost_user_bad_messages"] + stats["vhost_user_bad_rings"], 0)
        self.assertEqual(stats["connections_total"], 1, stats)
        self.record("vhost-user, after system_reset", result, "reboot")

    # -- 4. rngmux killed and restarted mid-read, QEMU the server --------------------------
    def test_rngmux_restarted_mid_read(self):
        seed1, seed2, nbytes = 204, 205, 65536
        path = self.path("qemu.sock")
        g = self.guest("socket,id=c0,path=%s,server=on,wait=on" % path, "restart", nbytes,
                       append_extra="rngtries=1 rngsync=0")
        g.start()
        wait_until(lambda: os.path.exists(path), 30)
        d1 = self.start_daemon(self.daemon_args(seed1, "--connect", "vhost-user:%s" % path,
                                                "--pool-size", "4096", rate=8192),
                               name="rngmux-before", expect_listen=0)
        g.wait_console(READING_RE, BOOT_TIMEOUT)
        self.assertTrue(wait_until(lambda: d1.stats()["served_bytes"] >= 16384, 30,
                                   interval=0.2), d1.stats())
        d1.kill()
        self.assertNotIn("RNGMUX-RESULT", g.console(), "the guest finished before the kill")
        d2 = self.start_daemon(self.daemon_args(seed2, "--connect", "vhost-user:%s" % path),
                               name="rngmux-after", expect_listen=0)
        d2.wait_log(r"connected to vhost-user:", timeout=15)
        result = g.wait_result(BOOT_TIMEOUT)
        self.assertEqual(result.get("bytes"), nbytes, result["line"])
        find_once(self, reference(seed1), bytes.fromhex(result["head"]),
                  "the guest's first 32 bytes (first daemon, test:%d)" % seed1)
        find_once(self, reference(seed2), bytes.fromhex(result["tail"]),
                  "the guest's last 32 bytes (restarted daemon, test:%d)" % seed2)
        stats = d2.stats()
        self.assertEqual(stats["vhost_user_bad_messages"] + stats["vhost_user_bad_rings"], 0)
        self.record("vhost-user, rngmux restarted mid-read", result,
                    "%d bytes from the restarted daemon" % stats["served_bytes"])

    # -- 5. two vhost-user guests share a slow source fairly ---------------------------------
    def test_two_guests_share_a_slow_source_fairly(self):
        seed, rate, nbytes = 206, 20000, 262144
        path = self.path("vm.sock")
        d = self.start_daemon(self.daemon_args(seed, "--listen", "vhost-user:%s" % path,
                                               "--pool-size", "4096", rate=rate),
                              name="rngmux-two")
        guests = [self.guest("socket,id=c0,path=%s" % path, "fair-%d" % i, nbytes,
                             append_extra="rngtries=1 rngsync=0") for i in (1, 2)]
        for g in guests:
            g.start()
        self.assert_fair(d, guests, rate, nbytes)

    # -- 6. an EGD guest and a vhost-user guest share one pool -------------------------------
    def test_egd_and_vhost_user_guests_share_one_pool(self):
        seed, rate, nbytes = 207, 20000, 262144
        path = self.path("vm.sock")
        egd = self.path("egd.sock")
        d = self.start_daemon(self.daemon_args(seed, "--listen", "vhost-user:%s" % path,
                                               "--listen", "unix:%s,qemu" % egd,
                                               "--pool-size", "4096", rate=rate),
                              name="rngmux-mixed")
        vhost = self.guest("socket,id=c0,path=%s" % path, "mixed-vhost", nbytes,
                           append_extra="rngtries=1 rngsync=0")
        egd_guest = Guest("socket,id=c0,path=%s,reconnect=1" % egd, nbytes=nbytes,
                          name="mixed-egd", append_extra="rngtries=1 rngsync=0",
                          logdir=self.path("guest-mixed-egd"))
        self.addCleanup(egd_guest.close)
        vhost.start()
        egd_guest.start()
        self.assert_fair(d, [vhost, egd_guest], rate, nbytes)

    # -- 7. three guests on a slower source: every guest finishes ---------------------------
    def test_three_guests_on_a_slow_source_all_finish(self):
        # The pool runs dry all the time, so the fair share hands each device pieces of its
        # 64-byte buffer. Handed back short (33..63 bytes), such a buffer hangs Debian 12's
        # guest kernel on its next read for good; this failed on every run before devices
        # held buffers until full.
        seed, rate, nbytes = 208, 6000, 65536
        path = self.path("vm.sock")
        d = self.start_daemon(self.daemon_args(seed, "--listen", "vhost-user:%s" % path,
                                               "--pool-size", "4096", rate=rate),
                              name="rngmux-three")
        guests = [self.guest("socket,id=c0,path=%s" % path, "slow-%d" % i, nbytes,
                             append_extra="rngtries=1 rngsync=0") for i in (1, 2, 3)]
        for g in guests:
            g.start()
        sums = set()
        for g in guests:
            # three readers of 64 KiB at 6 kB/s: about 35 s for all, far less than this
            r = g.wait_result(BOOT_TIMEOUT + 60)
            self.assertEqual(r.get("bytes"), nbytes, r["line"])
            sums.add(r["sha256"])
        self.assertEqual(len(sums), 3, "two guests read the same bytes")
        stats = d.stats()
        self.assertEqual(stats["vhost_user_bad_messages"] + stats["vhost_user_bad_rings"], 0)

    def assert_fair(self, d, guests, rate, nbytes):
        """While both guests read, each gets 35-65% of what is served; both finish."""
        for g in guests:
            g.wait_console(READING_RE, BOOT_TIMEOUT)
        time.sleep(0.5)

        def per_client():
            return {c["peer"] + str(c.get("pid", "")): c["served_bytes"]
                    for c in d.stats()["client_list"]}
        first = per_client()
        start = time.monotonic()
        second, window = None, 0.0
        for _ in range(16):  # up to 8 s: a longer window, a steadier split
            time.sleep(0.5)
            snap = per_client()
            if any("RNGMUX-RESULT" in g.console() for g in guests) \
                    or sorted(snap) != sorted(first) or max(snap.values()) >= nbytes:
                break
            second, window = snap, time.monotonic() - start
        self.assertIsNotNone(second, "no overlap in which both guests read")
        self.assertGreaterEqual(window, 1.5, "only %.1f s of overlap" % window)
        self.assertEqual(len(second), 2, second)
        deltas = [second[p] - first[p] for p in sorted(second)]
        total = sum(deltas)
        self.assertGreater(total, rate * window * 0.5, (deltas, window))
        shares = [x / total for x in deltas]
        for share in shares:
            self.assertTrue(0.35 <= share <= 0.65, "unfair split: %r (%r)" % (deltas, shares))
        for g in guests:
            r = g.wait_result(BOOT_TIMEOUT + 30)
            self.assertEqual(r.get("bytes"), nbytes, r["line"])
        sys.stdout.write("\nshares %r over %.1f s\n" % (shares, window))


if __name__ == "__main__":
    import unittest
    unittest.main()
