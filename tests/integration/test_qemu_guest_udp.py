"""A real Linux guest (QEMU, TCG) reads /dev/hwrng through virtio-rng, rng-egd and rngmux over UDP.

QEMU's `-chardev udp,host=H,port=P[,localaddr=A,localport=L]` is a connected datagram socket:
each `02 NN` goes out as its own datagram to H:P, and only datagrams from exactly H:P come in.
Both directions are covered:

  * QEMU sends to rngmux's listener (`--listen udp:H:P`, or `--qemu-chardev 'udp,...'` without
    localaddr): rngmux answers each request from H:P and pushes nothing unasked.
  * rngmux is the side QEMU's localaddr/localport names (`--connect udp:A:L,local=H:P,qemu`, or
    `--qemu-chardev` with localaddr/localport): rngmux binds H:P and, knowing its peer, pushes a
    primer first. These cases start rngmux only AFTER the guest's virtio-rng driver is up and its
    first request is lost, so only the primer can un-stick the guest.

How the first request gets lost matters, and is QEMU's business, not ours: if nothing is bound to
H:P when QEMU sends, the kernel answers "port unreachable", QEMU's next read on its connected
socket fails, and QEMU 7.2 removes the chardev's read handler for good (chardev/char-udp.c:
udp_chr_read -> remove_fd_in_watch). No primer can help then. So the late cases keep H:P bound by a
placeholder socket that swallows the request (a datagram lost on the way, or an rngmux that took
the request and was restarted) and release H:P just before rngmux starts. Likewise, the listener
cases start rngmux before QEMU.

What is checked, as in test_qemu_guest.py: the guest got all N bytes, and they are one contiguous
slice of the reference stream of `--source test:SEED` (found by the guest's first 32 bytes,
compared by sha256). On loopback, datagrams are neither reordered nor lost as long as the
receivers keep up (QEMU keeps one request in flight; rngmux's lead is 4 KiB), so contiguity is
expected to hold over UDP as over TCP; connections_total == 1 proves a single peer session.

Run from tests/integration with RNGMUX_BINARY set. Prints the guest's bytes/s per case.
"""

import select
import socket
import sys

from harness import RngmuxTestCase, free_udp_port, free_udp_ports, has_ipv6_loopback
from guest import Guest, assert_contiguous, ensure_guest, print_summary

NBYTES = 32768
BOOT_TIMEOUT = 45
READY_RE = r"rngmux-guest: hwrng virtio_rng\S* ready"

_summary = []


class QemuGuestUdpTest(RngmuxTestCase):
    @classmethod
    def setUpClass(cls):
        ensure_guest()

    @classmethod
    def tearDownClass(cls):
        print_summary("guest /dev/hwrng throughput through rngmux over UDP (%d bytes, TCG):"
                      % NBYTES, _summary)

    def daemon_args(self, seed, endpoint_args):
        return ["--source", "test:%d" % seed, "--allow-test-source", "--log-level", "debug"] \
            + endpoint_args

    def run_guest(self, name, chardev):
        g = Guest(chardev, nbytes=NBYTES, name=name)
        self.addCleanup(g.close)
        return g

    # -- QEMU sends to rngmux ---------------------------------------------------------------
    def boot_listener(self, mode, seed, daemon_endpoint_args, chardev_for_port):
        d = self.start_daemon(self.daemon_args(seed, daemon_endpoint_args), name="rngmux-" + mode,
                              expect_listen=1)
        port = int(d.endpoints[0].rsplit(":", 1)[1])
        g = self.run_guest(mode, chardev_for_port(port))
        try:
            g.start()
            result = g.wait_result(BOOT_TIMEOUT)
        except AssertionError:
            g.keep_logs = True
            raise
        return result, d

    # -- rngmux sends first, after the guest's first request was lost ---------------------------
    def boot_late_connect(self, mode, seed, daemon_endpoint_args, chardev, rngmux_port):
        placeholder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        placeholder.bind(("127.0.0.1", rngmux_port))
        g = self.run_guest(mode, chardev)
        try:
            with placeholder:
                g.start()
                g.wait_console(READY_RE, BOOT_TIMEOUT)
                r, _, _ = select.select([placeholder], [], [], 10)
                self.assertTrue(r, "the guest's virtio-rng driver sent no request")
                request = placeholder.recv(4096)
                self.assertEqual(len(request), 2, request)
                self.assertEqual(request[0], 0x02, request)
            # The request is gone, and QEMU waits for its reply without asking again.
            d = self.start_daemon(self.daemon_args(seed, daemon_endpoint_args),
                                  name="rngmux-" + mode, expect_listen=0)
            d.wait_log(r"pushing a primer of 4096 bytes", timeout=10)
            result = g.wait_result(BOOT_TIMEOUT)
        except AssertionError:
            g.keep_logs = True
            raise
        return result, d

    def check(self, mode, seed, result, d):
        stats = d.stats()
        self.assertEqual(stats["connections_total"], 1, "expected one peer session: %r" % stats)
        self.assertEqual(stats["udp_rate_limited_datagrams"], 0, stats)
        self.assertEqual(stats["bad_requests"], 0, stats)
        off = assert_contiguous(self, seed, result, NBYTES, stats)

        rate = result["bytes_per_s"]
        line = ("%-40s %7.0f kB/s  (%d bytes in %.1f ms, offset %d, served %d, datagrams in %d "
                "out %d)" % (mode, rate / 1000, NBYTES, result["ns"] / 1e6, off,
                             stats["served_bytes"], stats["udp_datagrams_received"],
                             stats["udp_datagrams_sent"]))
        _summary.append(line)
        sys.stdout.write("\n%s\n" % line)
        sys.stdout.flush()

    # -- (a) QEMU sends, rngmux listens ----------------------------------------------------------
    def test_a_qemu_sends_to_the_listener(self):
        seed = 201
        result, d = self.boot_listener(
            "a-udp-listen", seed, ["--listen", "udp:127.0.0.1:0"],
            lambda port: "udp,id=c0,host=127.0.0.1,port=%d" % port)
        self.check("udp, QEMU sends to rngmux", seed, result, d)
        # A listener never pushes: what was served is what the guest's requests asked for.
        stats = d.stats()
        self.assertEqual(stats["served_bytes"], 64 * stats["requests"], stats)

    def test_b_qemu_chardev_listener_form(self):
        seed = 202
        port = free_udp_port()
        spec = "udp,id=c0,host=127.0.0.1,port=%d" % port
        result, d = self.boot_listener("b-udp-chardev-listen", seed, ["--qemu-chardev", spec],
                                       lambda _: spec)
        self.check("--qemu-chardev udp, QEMU sends", seed, result, d)

    def test_e_qemu_sends_over_ipv6(self):
        ok, why = has_ipv6_loopback()
        self.skip_unless("ipv6", ok, why)
        seed = 205
        result, d = self.boot_listener(
            "e-udp-listen-ipv6", seed, ["--listen", "udp:[::1]:0"],
            lambda port: "udp,id=c0,host=::1,port=%d,ipv6=on" % port)
        self.check("udp over IPv6, QEMU sends to rngmux", seed, result, d)

    # -- (c) rngmux sends first, to QEMU's localaddr/localport, started late ----------------------
    def test_c_rngmux_connects_late_and_primes(self):
        seed = 203
        rngmux_port, qemu_port = free_udp_ports(2)
        chardev = "udp,id=c0,host=127.0.0.1,port=%d,localaddr=127.0.0.1,localport=%d" % (
            rngmux_port, qemu_port)
        result, d = self.boot_late_connect(
            "c-udp-connect-late", seed,
            ["--connect", "udp:127.0.0.1:%d,local=127.0.0.1:%d,qemu" % (qemu_port, rngmux_port)],
            chardev, rngmux_port)
        self.check("udp, rngmux sends (late, primer)", seed, result, d)

    def test_d_qemu_chardev_connect_form_late(self):
        seed = 204
        rngmux_port, qemu_port = free_udp_ports(2)
        chardev = "udp,id=c0,host=127.0.0.1,port=%d,localaddr=127.0.0.1,localport=%d" % (
            rngmux_port, qemu_port)
        result, d = self.boot_late_connect("d-udp-chardev-connect-late", seed,
                                           ["--qemu-chardev", chardev], chardev, rngmux_port)
        self.check("--qemu-chardev udp, rngmux sends (late)", seed, result, d)


if __name__ == "__main__":
    import unittest
    unittest.main()
