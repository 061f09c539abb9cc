"""TLS endpoints with Python's ssl module (OpenSSL) as the peer, on loopback.

rngmux listens with TLS (mutual, from a tls-dir in QEMU's layout) and connects with TLS
to a TLS server that speaks EGD the way QEMU's rng-egd does. Checked:
  * the bytes a TLS client gets are pieces of the test source's reference stream, each
    served once, beside a plain client of the same pool;
  * a certificate is an identity: it is logged, it names the client's share, and
    allow-subject= admits only the names listed;
  * every certificate a verifying peer must refuse is refused (no client certificate,
    another CA, expired, revoked by the CRL, a server's certificate for another host),
    with one log line saying why, a counter, and no byte served;
  * plain EGD sent to a TLS endpoint and TLS sent to a plain one are each named in the
    log; stalled handshakes are cut off by tls-timeout; a flood of bad or stalled
    handshakes does not slow a client already served;
  * SIGHUP reads renewed certificate files: new connections see the new certificate,
    the established ones keep going.
"""

import os
import re
import shutil
import socket
import ssl
import threading
import time

from harness import (RngmuxTestCase, ReferenceIndex, connect, egd_read, free_tcp_port,
                     recv_exact, reference_stream, run_cli, wait_closed)
import pki

SEED = 41
REFERENCE_BYTES = 4 << 20
HANDSHAKE_TIMEOUT = 10


def client_context(directory, cert=True, ca=None, min_version=None, max_version=None):
    """A TLS client context trusting `ca` (default directory/ca-cert.pem) and presenting
    directory/client-cert.pem unless cert is False."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca or os.path.join(directory, "ca-cert.pem"))
    if cert:
        ctx.load_cert_chain(os.path.join(directory, "client-cert.pem"),
                            os.path.join(directory, "client-key.pem"))
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def server_context(directory, verify_client=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(directory, "server-cert.pem"),
                        os.path.join(directory, "server-key.pem"))
    if verify_client:
        ctx.load_verify_locations(os.path.join(directory, "ca-cert.pem"))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def tls_connect(port, ctx, server_name="127.0.0.1", timeout=HANDSHAKE_TIMEOUT):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_name)
    except Exception:
        raw.close()
        raise


def tls_read(sock, n, timeout=HANDSHAKE_TIMEOUT):
    """n bytes through pipelined 02 FF requests (bounded in time)."""
    deadline = time.monotonic() + timeout
    asked = 0
    data = bytearray()
    while len(data) < n:
        while asked < n and asked - len(data) < 8 * 255:
            k = min(255, n - asked)
            sock.sendall(egd_read(k))
            asked += k
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("got %d of %d bytes within %ss" % (len(data), n, timeout))
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes" % (len(data), n))
        data += chunk
    return bytes(data)


def tls_refused(port, ctx, server_name="127.0.0.1"):
    """Connects, and returns why the TLS session ended without serving a byte (the
    exception text), or fails when bytes come."""
    try:
        s = tls_connect(port, ctx, server_name)
    except (ssl.SSLError, OSError) as e:
        return str(e)
    with s:
        try:
            # TLS 1.3: the server's verdict on our certificate comes after the client's
            # handshake returned; it shows on the first read.
            s.sendall(egd_read(16))
            s.settimeout(HANDSHAKE_TIMEOUT)
            data = s.recv(100)
        except (ssl.SSLError, OSError) as e:
            return str(e)
        if data:
            raise AssertionError("a refused peer was served %d bytes" % len(data))
        return "closed"


class EgdTlsServer(threading.Thread):
    """QEMU's side when it listens (server=on with tls-creds): accepts TLS connections
    from rngmux, asks `want` bytes with 02 40 requests and records what comes."""

    def __init__(self, ctx, want=65536, max_seconds=30):
        super().__init__(daemon=True)
        self.ctx = ctx
        self.want = want
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.deadline = time.monotonic() + max_seconds
        self.data = bytearray()
        self.errors = []
        self.handshakes = 0
        self.peer_cn = None
        self.stop_event = threading.Event()
        self.done = threading.Event()

    def run(self):
        try:
            while not self.stop_event.is_set() and time.monotonic() < self.deadline \
                    and len(self.data) < self.want:
                try:
                    raw, _ = self.listener.accept()
                except socket.timeout:
                    continue
                raw.settimeout(HANDSHAKE_TIMEOUT)
                try:
                    with self.ctx.wrap_socket(raw, server_side=True) as s:
                        self.handshakes += 1
                        cert = s.getpeercert()
                        if cert:
                            self.peer_cn = dict(x[0] for x in cert["subject"]).get("commonName")
                        while len(self.data) < self.want and time.monotonic() < self.deadline:
                            s.sendall(egd_read(64))
                            chunk = s.recv(65536)
                            if not chunk:
                                break
                            self.data += chunk
                except (ssl.SSLError, OSError) as e:
                    self.errors.append(str(e))
                    raw.close()
        finally:
            self.listener.close()
            self.done.set()

    def stop(self):
        self.stop_event.set()
        self.join(10)


class TlsTestCase(RngmuxTestCase):
    _reference = None

    @classmethod
    def reference(cls):
        if cls._reference is None:
            ref = reference_stream(SEED, REFERENCE_BYTES)
            cls._reference = (ref, ReferenceIndex(ref))
        return cls._reference

    def setUp(self):
        super().setUp()
        self.pki = pki.get()

    def tls_daemon(self, options, name="rngmux", extra=(), pki_dir=pki.RNGMUX_SERVER):
        port = free_tcp_port()
        args = ["--source", "test:%d" % SEED, "--allow-test-source", "--pool-size", "65536",
                "--listen", "tcp:127.0.0.1:%d,tls-dir=%s%s" % (port, self.pki.dir(pki_dir),
                                                             options)]
        d = self.start_daemon(args + list(extra), name=name)
        return d, port


class TlsListenTest(TlsTestCase):
    def test_mutual_tls_serves_reference_bytes_once_beside_a_plain_client(self):
        plain_port = free_tcp_port()
        d, port = self.tls_daemon("", extra=["--listen", "tcp:127.0.0.1:%d" % plain_port])
        ctx = client_context(self.pki.dir(pki.QEMU_CLIENT))
        served = {}
        with tls_connect(port, ctx) as a, tls_connect(port, ctx) as b, \
                connect("tcp:127.0.0.1:%d" % plain_port) as p:
            self.assertEqual(a.version(), "TLSv1.3")
            for _ in range(4):
                for name, s in (("tls-a", a), ("tls-b", b)):
                    served[name] = served.get(name, b"") + tls_read(s, 65536)
                p.sendall(egd_read(255) * 64)
                served["plain"] = served.get("plain", b"") + recv_exact(p, 255 * 64)
            # (the second connection of one identity is not logged again within a minute)
            d.wait_log(r"client 127\.0\.0\.1:\d+ \(cert=qemu-vm1 uid=0\(root\) 127\.0\.0\.1\): "
                       r"connected on tcp:127\.0\.0\.1:%d" % port)
            s = d.stats()
            # Both TLS connections carry one certificate: one identity, one share.
            tls_clients = [c for c in s["client_list"] if c["identity"] == "cert:qemu-vm1"]
            self.assertEqual(len(tls_clients), 2, s["client_list"])
        self.assertEqual(s["tls_handshakes"], 2)
        self.assertEqual(s["tls_handshake_failures"], 0)
        self.assertEqual(s["bad_requests"], 0)
        _, index = self.reference()
        self.assert_each_byte_served_once(index, served)

    def test_allow_subject_admits_only_the_names_listed(self):
        d, port = self.tls_daemon(",allow-subject=qemu-vm2+rngmux")
        # qemu-vm1 completes the handshake (its certificate is good) but is not listed.
        why = tls_refused(port, client_context(self.pki.dir(pki.QEMU_CLIENT)))
        self.assertTrue(why, why)
        d.wait_log(r"denied cert=qemu-vm1 uid=0\(root\) 127\.0\.0\.1 on tcp:127\.0\.0\.1:%d: certificate "
                   r"names \(qemu-vm1\) not in allow-subject=qemu-vm2\+rngmux" % port)
        # CN=rngmux is listed.
        with tls_connect(port, client_context(self.pki.dir(pki.RNGMUX_CLIENT))) as s:
            self.assertEqual(len(tls_read(s, 4096)), 4096)
        s = d.stats()
        self.assertEqual(s["denied_connections"], 1)
        self.assertEqual(s["tls_handshakes"], 2)

    def test_certificates_a_verifying_server_must_refuse(self):
        cases = [
            ("no client certificate", client_context(self.pki.dir(pki.QEMU_CLIENT), cert=False),
             r"the client sent no certificate \(a client whose certificate the CA"),
            ("another CA", client_context(self.pki.dir(pki.OTHER_CA_CLIENT)),
             r"(unknown ca|unable to get local issuer|certificate verify failed)"),
            ("expired", client_context(self.pki.dir(pki.EXPIRED_CLIENT)), r"expired"),
            ("revoked", client_context(self.pki.dir(pki.REVOKED_CLIENT)), r"revoked"),
        ]
        good = client_context(self.pki.dir(pki.QEMU_CLIENT))
        for what, ctx, log_re in cases:
            # A daemon each: repeated failures of one peer are logged once a minute.
            d, port = self.tls_daemon("", name="rngmux-" + what.replace(" ", "-"))
            with tls_connect(port, good) as served:
                tls_read(served, 4096)
                why = tls_refused(port, ctx)
                d.wait_log(r"TLS handshake with 127\.0\.0\.1:\d+ on tcp:127\.0\.0\.1:%d .*failed: "
                           r".*%s" % (port, log_re))
                s = d.stats()
                self.assertEqual(s["tls_handshake_failures"], 1, "%s: client saw %r" % (what, why))
                self.assertEqual(s["tls_handshakes"], 1, what)
                self.assertEqual(s["clients"], 1, what)
                # The client already served goes on being served.
                self.assertEqual(len(tls_read(served, 4096)), 4096)
            d.stop()

    def test_files_that_do_not_load_are_named_at_start_and_by_check_config(self):
        broken = self.path("broken")
        shutil.copytree(self.pki.dir(pki.RNGMUX_SERVER), broken)
        # a key that is not the certificate's
        shutil.copyfile(self.pki.file(pki.QEMU_SERVER, "server-key.pem"),
                        os.path.join(broken, "server-key.pem"))
        cases = [
            (",tls-dir=/nonexistent", r"tls-cert /nonexistent/server-cert\.pem: No such file"),
            (",tls-dir=%s" % broken, r"tls-key %s/server-key\.pem: does not match the "
                                     r"certificate" % broken),
            (",tls-dir=%s,tls-crl=%s" % (self.pki.dir(pki.RNGMUX_SERVER),
                                         self.pki.file(pki.RNGMUX_SERVER, "server-cert.pem")),
             r"tls-crl .*server-cert\.pem: "),
        ]
        for options, message in cases:
            spec = "tcp:127.0.0.1:%d%s" % (free_tcp_port(), options)
            for command in (["check-config"], ["serve", "--control", "none"]):
                p = run_cli(command + ["--source", "getrandom", "--listen", spec], timeout=20)
                self.assertNotEqual(p.returncode, 0, (command, spec))
                lines = p.stderr.decode().strip().splitlines()
                self.assertRegex(lines[-1], r'^rngmux: error: listen "%s": %s'
                                 % (re.escape(spec), message))

    def test_stalled_handshakes_beyond_the_limit_do_not_keep_a_client_out(self):
        d, port = self.tls_daemon(",tls-timeout=60")
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(70)]
        self.addCleanup(lambda: [s.close() for s in stalled])
        self.wait_stats(d, lambda s: s["tls_handshake_failures"] >= 6,
                        "the oldest stalled handshakes make room")
        start = time.monotonic()
        with tls_connect(port, client_context(self.pki.dir(pki.QEMU_CLIENT))) as s:
            self.assertEqual(len(tls_read(s, 4096)), 4096)
        self.assertLess(time.monotonic() - start, 5)
        d.wait_log(r"failed: closed to make room: 64 TLS handshakes were under way")
        st = d.stats()
        self.assertEqual(st["tls_handshake_timeouts"], 0)
        self.assertEqual(st["tls_handshakes"], 1)

    def test_shutdown_does_not_wait_for_stalled_handshakes(self):
        d, port = self.tls_daemon(",tls-timeout=300")
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        time.sleep(0.3)
        start = time.monotonic()
        d.stop()
        self.assertLess(time.monotonic() - start, 5, "shutdown waited for the handshakes")
        for s in stalled:
            s.close()

    def test_reload_that_turns_tls_on_closes_plain_connections(self):
        port = free_tcp_port()
        config = self.path("rngmux.toml")
        head = ('allow-test-source = true\ncontrol = "none"\n[[source]]\nspec = "test:%d"\n'
                '[[listen]]\naddress = "tcp:127.0.0.1:%d"\n' % (SEED, port))
        with open(config, "w") as f:
            f.write(head)
        d = self.start_daemon(["--config", config], name="rngmux-plain", expect_listen=1)
        with connect("tcp:127.0.0.1:%d" % port) as plain:
            plain.sendall(egd_read(64))
            self.assertEqual(len(recv_exact(plain, 64)), 64)
            with open(config, "w") as f:
                f.write(head + 'tls-dir = "%s"\nallow-subject = ["qemu-vm1"]\n'
                        % self.pki.dir(pki.RNGMUX_SERVER))
            d.proc.send_signal(1)
            d.wait_log(r"reloaded: ")
            self.assertTrue(wait_closed(plain)[0], "a plain client kept its connection")
        d.wait_log(r"closing: the endpoint requires TLS after a reload")
        with tls_connect(port, client_context(self.pki.dir(pki.QEMU_CLIENT))) as s:
            self.assertEqual(len(tls_read(s, 4096)), 4096)

    def test_a_client_trusting_another_ca_refuses_rngmux(self):
        d, port = self.tls_daemon("")
        ctx = client_context(self.pki.dir(pki.QEMU_CLIENT),
                             ca=self.pki.file(pki.OTHER_CA, "ca-cert.pem"))
        with self.assertRaises(ssl.SSLCertVerificationError):
            tls_connect(port, ctx)
        d.wait_log(r"TLS handshake with 127\.0\.0\.1:\d+ on tcp:127\.0\.0\.1:%d .*failed: "
                   % port)
        self.assertEqual(d.stats()["tls_handshake_failures"], 1)

    def test_tls_min_13_refuses_a_tls12_client(self):
        d, port = self.tls_daemon(",tls-min=1.3")
        ctx = client_context(self.pki.dir(pki.QEMU_CLIENT), max_version=ssl.TLSVersion.TLSv1_2)
        with self.assertRaises((ssl.SSLError, OSError)):
            tls_connect(port, ctx)
        d.wait_log(r"failed: .*(protocol version|unsupported protocol|no protocols available)")
        # TLS 1.2 is accepted by default.
        d2, port2 = self.tls_daemon("", name="rngmux-12")
        with tls_connect(port2, ctx) as s:
            self.assertEqual(s.version(), "TLSv1.2")
            self.assertEqual(len(tls_read(s, 4096)), 4096)

    def test_plain_egd_to_a_tls_endpoint_and_tls_to_a_plain_one_are_named(self):
        plain_port = free_tcp_port()
        d, port = self.tls_daemon("", extra=["--listen", "tcp:127.0.0.1:%d" % plain_port])
        with connect("tcp:127.0.0.1:%d" % port) as s:
            s.sendall(egd_read(16))
            self.assertTrue(wait_closed(s)[0])
        d.wait_log(r"TLS handshake with 127\.0\.0\.1:\d+ on tcp:127\.0\.0\.1:%d .*failed: sent "
                   r"plain data \(first byte 0x02, an EGD request\), not a TLS handshake" % port)
        with self.assertRaises((ssl.SSLError, OSError)):
            tls_connect(plain_port, client_context(self.pki.dir(pki.QEMU_CLIENT)))
        d.wait_log(r"unknown EGD command 0x16 \(a TLS handshake: this endpoint is plain TCP")
        s = d.stats()
        self.assertEqual(s["tls_handshake_failures"], 1)
        self.assertEqual(s["bad_requests"], 1)

    def test_stalled_and_garbage_handshakes_do_not_disturb_a_served_client(self):
        d, port = self.tls_daemon(",tls-timeout=1")
        ctx = client_context(self.pki.dir(pki.QEMU_CLIENT))
        with tls_connect(port, ctx) as served:
            tls_read(served, 4096)
            stalled = [socket.create_connection(("127.0.0.1", port), timeout=5)
                       for _ in range(20)]
            garbage = []
            for i in range(20):
                g = socket.create_connection(("127.0.0.1", port), timeout=5)
                g.sendall(b"\x16\x03\x01" + os.urandom(200 + i))
                garbage.append(g)
            # Served at full speed meanwhile: 1 MiB in well under the handshake timeouts.
            start = time.monotonic()
            self.assertEqual(len(tls_read(served, 1 << 20, timeout=20)), 1 << 20)
            elapsed = time.monotonic() - start
            for g in garbage + stalled:
                self.assertTrue(wait_closed(g, timeout=10)[0])
                g.close()
            st = self.wait_stats(d, lambda s: s["tls_handshake_timeouts"] >= 20,
                                 "the stalled handshakes time out")
            self.assertEqual(st["tls_handshake_failures"], 40)
            self.assertEqual(len(tls_read(served, 4096)), 4096)
        self.assertLess(elapsed, 20)

    def test_a_stalled_handshake_is_cut_off(self):
        d, port = self.tls_daemon(",tls-timeout=1")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            start = time.monotonic()
            self.assertTrue(wait_closed(s, timeout=10)[0])
            self.assertLess(time.monotonic() - start, 5)
        d.wait_log(r"TLS handshake with 127\.0\.0\.1:\d+ on tcp:127\.0\.0\.1:%d .*failed: TLS "
                   r"handshake timed out after 1 s" % port)
        s = d.stats()
        self.assertEqual((s["tls_handshake_failures"], s["tls_handshake_timeouts"]), (1, 1))

    def test_sighup_reads_renewed_certificates(self):
        work = self.path("pki-live")
        shutil.copytree(self.pki.dir(pki.RNGMUX_SERVER), work)
        port = free_tcp_port()
        config = self.path("rngmux.toml")
        with open(config, "w") as f:
            f.write('allow-test-source = true\ncontrol = "none"\npool-size = 65536\n'
                    '[[source]]\nspec = "test:%d"\n[[listen]]\naddress = "tcp:127.0.0.1:%d"\n'
                    'tls-dir = "%s"\n' % (SEED, port, work))
        d = self.start_daemon(["--config", config], name="rngmux-reload", expect_listen=1)
        ctx = client_context(self.pki.dir(pki.QEMU_CLIENT))

        def server_serial():
            with tls_connect(port, ctx) as s:
                cert = ssl.DER_cert_to_PEM_cert(s.getpeercert(binary_form=True))
                return cert
        before = server_serial()
        with tls_connect(port, ctx) as kept:
            tls_read(kept, 4096)
            # Renewed: BOTH's server certificate (same CA, CN=rngmux) replaces it.
            for f in ("server-cert.pem", "server-key.pem"):
                shutil.copyfile(self.pki.file(pki.BOTH, f), os.path.join(work, f))
            d.proc.send_signal(1)
            d.wait_log(r"reloaded: ")
            after = server_serial()
            self.assertNotEqual(before, after)
            with open(self.pki.file(pki.BOTH, "server-cert.pem")) as f:
                self.assertEqual(ssl.PEM_cert_to_DER_cert(after),
                                 ssl.PEM_cert_to_DER_cert(f.read()))
            self.assertEqual(len(tls_read(kept, 4096)), 4096)
            # A broken key makes the reload fail and changes nothing.
            with open(os.path.join(work, "server-key.pem"), "w") as f:
                f.write("not a key\n")
            d.proc.send_signal(1)
            d.wait_log(r"reload failed, the running configuration stays: .*server-key\.pem")
            self.assertEqual(server_serial(), after)
            self.assertEqual(len(tls_read(kept, 4096)), 4096)



class TlsConnectTest(TlsTestCase):
    """rngmux connects (QEMU's server=on side) with TLS."""

    def connect_daemon(self, server, options=""):
        args = ["--source", "test:%d" % SEED, "--allow-test-source", "--pool-size", "65536",
                "--connect", "tcp:127.0.0.1:%d,tls-dir=%s%s"
                % (server.port, self.pki.dir(pki.RNGMUX_CLIENT), options)]
        return self.start_daemon(args, name="rngmux-connect")

    def test_connects_with_mutual_tls_and_serves_reference_bytes(self):
        server = EgdTlsServer(server_context(self.pki.dir(pki.QEMU_SERVER)))
        server.start()
        self.addCleanup(server.stop)
        d = self.connect_daemon(server)
        self.assertTrue(server.done.wait(30), "got %d bytes" % len(server.data))
        self.assertEqual(server.errors, [])
        self.assertGreaterEqual(len(server.data), server.want)
        self.assertEqual(server.peer_cn, "rngmux")
        _, index = self.reference()
        self.assert_each_byte_served_once(index, {"qemu-server": bytes(server.data)})
        d.wait_log(r"connected to tcp:127\.0\.0\.1:%d" % server.port)
        self.assertGreaterEqual(d.stats()["tls_handshakes"], 1)

    def test_refuses_servers_it_must_not_trust(self):
        for name, log_re in ((pki.WRONG_HOST_SERVER, r"(hostname mismatch|IP address mismatch|"
                                                     r"does not match|wrong host|name)"),
                             (pki.OTHER_CA_SERVER, r"(unknown ca|local issuer|verify failed)"),
                             (pki.EXPIRED_SERVER, r"expired"),
                             (pki.REVOKED_SERVER, r"revoked")):
            server = EgdTlsServer(server_context(self.pki.dir(name), verify_client=False),
                                  max_seconds=8)
            server.start()
            d = self.connect_daemon(server)
            d.wait_log(r"TLS handshake with tcp:127\.0\.0\.1:%d .*failed: .*%s"
                       % (server.port, log_re))
            server.stop()
            self.assertEqual(bytes(server.data), b"", name)
            self.assertGreaterEqual(d.stats()["tls_handshake_failures"], 1)
            d.stop()

    def test_a_server_that_drops_after_the_handshake_is_backed_off(self):
        """QEMU's tls-authz refuses after the handshake by closing: rngmux must back off
        and say so, not reconnect (and draw a lead) every 100 ms."""
        ctx = server_context(self.pki.dir(pki.QEMU_SERVER))
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        self.addCleanup(listener.close)
        port = listener.getsockname()[1]
        d = self.start_daemon(["--source", "test:%d" % SEED, "--allow-test-source", "--connect",
                               "tcp:127.0.0.1:%d,qemu,tls-dir=%s"
                               % (port, self.pki.dir(pki.RNGMUX_CLIENT))],
                              name="rngmux-dropped", expect_listen=0)
        accepted = 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            try:
                raw, _ = listener.accept()
            except socket.timeout:
                continue
            accepted += 1
            try:
                with ctx.wrap_socket(raw, server_side=True):
                    pass  # handshake done, then closed at once
            except (ssl.SSLError, OSError):
                raw.close()
        d.wait_log(r"connection to tcp:127\.0\.0\.1:%d closed by the peer at once \(did the "
                   r"server refuse this certificate" % port)
        # 100 ms doubling: about 6 attempts in 6 s, not 60.
        self.assertLessEqual(accepted, 10, "%d connections in 6 s" % accepted)
        self.assertGreaterEqual(accepted, 3)

    def test_tls_name_checks_another_name(self):
        server = EgdTlsServer(server_context(self.pki.dir(pki.QEMU_SERVER)))
        server.start()
        self.addCleanup(server.stop)
        # QEMU_SERVER's certificate names localhost, not entropy.example.
        d = self.connect_daemon(server, ",tls-name=entropy.example")
        d.wait_log(r"TLS handshake with tcp:127\.0\.0\.1:%d .*failed: " % server.port)
        d.stop()
        self.assertEqual(bytes(server.data), b"")
        d = self.connect_daemon(server, ",tls-name=localhost")
        self.assertTrue(server.done.wait(30), "got %d bytes" % len(server.data))
        self.assertGreaterEqual(len(server.data), server.want)


class TlsRelayTest(TlsTestCase):
    def test_a_relay_uses_a_renewed_client_certificate_at_its_next_connection(self):
        # The entropy host admits CN=rngmux only; the relay starts with CN=qemu-vm1.
        a, port = self.tls_daemon(",allow-subject=rngmux", name="entropy")
        relay_dir = self.path("relay-pki")
        shutil.copytree(self.pki.dir(pki.QEMU_CLIENT), relay_dir)
        spec = "egd:tcp:127.0.0.1:%d,entropy=8,tls-dir=%s" % (port, relay_dir)
        b = self.start_daemon(["--source", spec, "--pool-size", "16384",
                               "--listen", "unix:%s" % self.path("b.sock")], name="relay")
        a.wait_log(r"denied cert=qemu-vm1 .*not in allow-subject=rngmux")
        self.wait_stats(b, lambda s: s["read_errors"] >= 1, "the relay is refused")
        # Renewed in place: the next connection presents CN=rngmux.
        for f in ("client-cert.pem", "client-key.pem"):
            shutil.copyfile(self.pki.file(pki.RNGMUX_CLIENT, f), os.path.join(relay_dir, f))
        st = self.wait_stats(b, lambda s: s["upstream_connected"] == "yes" and
                             s["upstream_bytes"] > 16384, "the relay draws again", timeout=40)
        self.assertEqual(st["upstream_tls"], "yes")
        with connect(b.endpoints[0]) as c:
            c.sendall(egd_read(255) * 16)
            data = recv_exact(c, 255 * 16)
        ref, _ = self.reference()
        self.assert_from_reference(data, ref, "relayed bytes")
        self.assertGreaterEqual(a.stats()["tls_handshakes"], 2)


if __name__ == "__main__":
    import unittest
    unittest.main()
