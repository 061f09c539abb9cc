"""A real Linux guest (QEMU 7.2, TCG) reads /dev/hwrng through rng-egd over TLS with rngmux.

QEMU speaks TLS itself (`-object tls-creds-x509` and the chardev's `tls-creds=`), with the
test PKI of pki.py in QEMU's directory layout, in both directions and with mutual
authentication:
  * QEMU as TLS client, rngmux listening with tls-dir (client certificates required);
  * QEMU as TLS server (verify-peer=on, tls-authz naming rngmux's certificate), rngmux
    connecting, configured by `--qemu-chardev` with QEMU's own -object and -chardev text;
  * a QEMU client certificate from another CA: the guest gets nothing, and rngmux's log
    says which peer failed and why (QEMU logs nothing);
  * QEMU as TLS server with rngmux restarted mid-read: after the new TLS handshake the
    lead cures QEMU's stall (the request lost with the first connection).
The first case also guards a QEMU 7.2 trap (seen through a TLS proxy in front of a plain
rngmux): when the 4096-byte lead arrives in one 4096-byte TLS record the guest stalls
after its first bytes, while records of up to 2048 bytes are read to the end.
Integrity is checked as in test_qemu_guest.py: the guest's bytes are one contiguous slice
of the test source's reference stream (see assert_contiguous there).
"""

import re

from harness import free_tcp_port, wait_until
from guest import Guest, GuestTestCase, find_once, reference
import pki

NBYTES = 32768
BOOT_TIMEOUT = 60
READY_RE = r"rngmux-guest: hwrng virtio_rng\S* ready"
READING_RE = r"rngmux-guest: reading \d+ bytes"
TLS_ID = "tls0"
AUTHZ_ID = "authz0"
# How long a guest whose certificate is refused is watched for bytes it must not get.
REFUSED_WATCH_SECONDS = 8


def qemu_escape(value):
    """A value inside a QEMU option list: "," is written ",,"."""
    return value.replace(",", ",,")


def port_of(endpoint):
    """The port of a "tcp:HOST:PORT[,options]" endpoint as the daemon logs it."""
    m = re.match(r"tcp:.*:(\d+)(?:,|$)", endpoint)
    if not m:
        raise AssertionError("not a tcp endpoint: %r" % endpoint)
    return int(m.group(1))


def tls_object(directory, endpoint, verify_peer=True, sanity_check=True):
    """QEMU's credentials object. sanity_check=False lets QEMU start with a certificate
    its own ca-cert.pem does not vouch for (QEMU refuses that at start-up otherwise:
    "Our own certificate ... failed validation against ...ca-cert.pem")."""
    return "tls-creds-x509,id=%s,dir=%s,endpoint=%s,verify-peer=%s%s" % (
        TLS_ID, directory, endpoint, "on" if verify_peer else "off",
        "" if sanity_check else ",sanity-check=off")


class QemuGuestTlsTest(GuestTestCase):
    NBYTES = NBYTES
    SUMMARY_TITLE = "guest /dev/hwrng through rngmux over TLS (%d bytes in 64-byte reads, TCG):"
    MODE_WIDTH = 40

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = pki.get()

    # -- helpers ---------------------------------------------------------------------------
    def guest(self, args, name, nbytes=NBYTES, append_extra=""):
        """A Guest (QEMU arguments `args` defining chardev c0) logging into this test's dir."""
        g = Guest(args, nbytes=nbytes, name=name, append_extra=append_extra,
                  logdir=self.path("guest-" + name))
        self.addCleanup(g.close)
        return g

    def qemu_server_args(self, port, directory, authz_identity):
        """QEMU listening with TLS, verifying its peer and admitting only `authz_identity`."""
        return ["-object", tls_object(directory, "server"),
                "-object", "authz-simple,id=%s,identity=%s" % (AUTHZ_ID,
                                                               qemu_escape(authz_identity)),
                "-chardev", "socket,id=c0,host=127.0.0.1,port=%d,server=on,wait=off,"
                "tls-creds=%s,tls-authz=%s" % (port, TLS_ID, AUTHZ_ID)]

    # -- (a) QEMU as TLS client, rngmux listens, mutual TLS ----------------------------------
    def test_qemu_tls_client_mutual(self):
        """rngmux listens with tls-dir (its server certificate; client certificates signed
        by the CA required); QEMU connects with its client certificate CN=qemu-vm1 and
        checks rngmux's certificate against host=127.0.0.1. The guest reads a contiguous
        slice over one TLS connection."""
        seed = 201
        d = self.start_daemon(self.daemon_args(
            seed, "--listen", "tcp:127.0.0.1:0,qemu,tls-dir=%s,allow-subject=qemu-vm1"
            % self.pki.dir(pki.RNGMUX_SERVER)), name="rngmux-tls-listen")
        port = port_of(d.endpoints[0])
        g = self.guest(["-object", tls_object(self.pki.dir(pki.QEMU_CLIENT), "client"),
                        "-chardev", "socket,id=c0,host=127.0.0.1,port=%d,reconnect=1,"
                        "tls-creds=%s" % (port, TLS_ID)], "tls-client")
        g.start()
        self.check("TLS, QEMU connects (mutual)", seed, g.wait_result(BOOT_TIMEOUT), d)
        # the client identity is the certificate's, not the loopback uid's
        peers = [c["peer"] for c in d.stats()["client_list"]]
        self.assertTrue(any("qemu-vm1" in str(p) for p in peers) or
                        re.search(r"qemu-vm1", d.log_text()),
                        "rngmux never named the guest's certificate (CN=qemu-vm1): %r" % peers)

    # -- (b)+(e) QEMU as TLS server with tls-authz, rngmux from --qemu-chardev ---------------
    def test_qemu_tls_server_authz_from_qemu_chardev(self):
        """QEMU listens with TLS, verify-peer=on and tls-authz admitting only rngmux's
        client certificate subject. rngmux is configured with QEMU's own arguments
        (`--qemu-chardev '-object tls-creds-x509,... -object authz-simple,... -chardev
        socket,...'`) and reads the same libvirt-style directory in the other role (its
        client-cert.pem). Started after the guest's driver is up: the lead un-sticks it."""
        seed = 202
        port = free_tcp_port()
        both = self.pki.dir(pki.BOTH)
        args = self.qemu_server_args(port, both, self.pki.subject(pki.BOTH, "client"))
        g = self.guest(args, "tls-server")
        g.start()
        g.wait_console(READY_RE, BOOT_TIMEOUT)
        d = self.start_daemon(self.daemon_args(seed, "--qemu-chardev", " ".join(args)),
                              name="rngmux-tls-connect", expect_listen=0)
        d.wait_log(r"connected to ", timeout=15)
        self.check("TLS, QEMU listens (tls-authz, --qemu-chardev)", seed,
                   g.wait_result(BOOT_TIMEOUT), d)

    # -- (c) a certificate that must be refused ------------------------------------------------
    def test_refused_certificate_is_logged_and_guest_gets_nothing(self):
        """QEMU's client certificate comes from another CA. The handshake fails on rngmux's
        side: the guest gets no byte within a bounded wait (QEMU keeps reconnecting and says
        nothing), and rngmux logs one line per attempt naming the peer (127.0.0.1) and the
        reason (an unknown issuer), and serves nothing."""
        seed = 203
        d = self.start_daemon(self.daemon_args(
            seed, "--listen", "tcp:127.0.0.1:0,qemu,tls-dir=%s"
            % self.pki.dir(pki.RNGMUX_SERVER)), name="rngmux-tls-refuses")
        port = port_of(d.endpoints[0])
        g = self.guest(["-object", tls_object(self.pki.dir(pki.OTHER_CA_CLIENT), "client",
                                              sanity_check=False),
                        "-chardev", "socket,id=c0,host=127.0.0.1,port=%d,reconnect=1,"
                        "tls-creds=%s" % (port, TLS_ID)], "tls-refused", nbytes=4096,
                       append_extra="rngtries=1 rngsync=0")
        g.start()
        # GnuTLS sends no certificate when none is from a CA the server names.
        refusal = re.compile(r"127\.0\.0\.1.*(issuer|unknown ca|certificate verify failed|"
                             r"the client sent no certificate)", re.I)
        self.assertTrue(wait_until(lambda: any(refusal.search(line)
                                               for line in d.log_lines()), BOOT_TIMEOUT,
                                   interval=0.2),
                        "rngmux logged no line naming the peer and the refused certificate")
        lines = [line for line in d.log_lines() if refusal.search(line)]
        for line in lines:
            self.assertRegex(line, r"(?i)tls|handshake|certificate", line)
        g.wait_console(READY_RE, BOOT_TIMEOUT)
        # the guest's read must not complete: QEMU gets no byte from a refused connection
        finished = wait_until(lambda: "RNGMUX-RESULT" in g.console(), REFUSED_WATCH_SECONDS,
                              interval=0.2)
        self.assertFalse(finished, "the guest read through a refused certificate: %s"
                         % g.console()[-2000:])
        stats = d.stats()
        self.assertEqual(stats["served_bytes"], 0, stats)
        # QEMU (reconnect=1) kept trying; every attempt was refused and counted (the log
        # folds repeats from one peer, so it need not show each)
        self.assertGreaterEqual(stats["tls_handshake_failures"], 2,
                                "QEMU reconnects every second: expected a refusal per attempt")
        self.assertEqual(stats["tls_handshakes"], 0, stats)

    # -- (d) QEMU as TLS server, rngmux restarted mid-read -----------------------------------
    def test_rngmux_restarted_mid_read_over_tls(self):
        """rngmux connects over TLS to QEMU's server socket and is killed (SIGKILL) while
        the guest reads slowly; a new rngmux with another seed connects again (a fresh TLS
        handshake). QEMU's pending request died with the first connection; the new
        daemon's lead completes it: the guest's first bytes come from the first daemon's
        stream, its last bytes from the second's."""
        seed1, seed2, nbytes = 204, 205, 65536
        port = free_tcp_port()
        args = self.qemu_server_args(port, self.pki.dir(pki.QEMU_SERVER),
                                     self.pki.subject(pki.RNGMUX_CLIENT, "client"))
        connect = "tcp:127.0.0.1:%d,qemu,tls-dir=%s" % (port, self.pki.dir(pki.RNGMUX_CLIENT))
        g = self.guest(args, "tls-restart", nbytes=nbytes, append_extra="rngtries=1 rngsync=0")
        g.start()
        g.wait_console(READY_RE, BOOT_TIMEOUT)
        d1 = self.start_daemon(self.daemon_args(seed1, "--connect", connect, "--pool-size",
                                                "8192", rate=16000),
                               name="rngmux-before", expect_listen=0)
        g.wait_console(READING_RE, BOOT_TIMEOUT)
        served = wait_until(lambda: d1.stats()["served_bytes"] >= 4096 + 16384, 30,
                            interval=0.2)
        self.assertTrue(served, "the first daemon never served 20 KiB: %r" % d1.stats())
        before_kill = d1.stats()["served_bytes"]
        d1.kill()
        self.assertNotIn("RNGMUX-RESULT", g.console(), "the guest finished before the kill")
        self.assertLess(before_kill, nbytes, "the first daemon served the whole read before "
                        "the kill: nothing left for the restarted one")
        d2 = self.start_daemon(self.daemon_args(seed2, "--connect", connect),
                               name="rngmux-after", expect_listen=0)
        d2.wait_log(r"connected to ", timeout=15)
        result = g.wait_result(BOOT_TIMEOUT)
        self.assertEqual(result.get("bytes"), nbytes, result["line"])
        find_once(self, reference(seed1), bytes.fromhex(result["head"]),
                  "the guest's first 32 bytes (from the first daemon, test:%d)" % seed1)
        find_once(self, reference(seed2), bytes.fromhex(result["tail"]),
                  "the guest's last 32 bytes (from the restarted daemon, test:%d)" % seed2)
        stats = d2.stats()
        self.assertEqual(stats["connections_total"], 1, stats)
        self.record("TLS, rngmux restarted mid-read", result,
                    "%d bytes from the restarted daemon" % stats["served_bytes"])


if __name__ == "__main__":
    import unittest
    unittest.main()
