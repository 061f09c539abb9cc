"""Relays: one rngmux drawing from another over EGD (`--source egd:...`).

An entropy host A serves a test source (a known AES-CTR stream); a relay B draws from
A and serves clients. Every byte B's clients get must be a piece of A's stream, and no
piece may reach two clients. Upstreams are killed and restarted, several upstreams
fail over, and an upstream that sends zeros is caught by B's health tests.
"""

import os
import select
import shutil
import socket
import subprocess
import threading
import time

from harness import (Collector, RngmuxTestCase, ReferenceIndex, check_disjoint, connect,
                     egd_read, free_tcp_port, reference_stream, wait_until)

REFERENCE_BYTES = 6 << 20
POOL = "65536"


class ScriptedUpstream(threading.Thread):
    """A tiny EGD server on a unix socket. mode "zeros": answers every request with
    zeros. mode "push": like a QEMU-style endpoint with a lead, sends 8 KiB of random
    bytes nobody asked for as soon as a client connects, then answers requests."""

    def __init__(self, path, mode, max_seconds=60):
        super().__init__(daemon=True)
        self.path = path
        self.mode = mode
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.listener.settimeout(0.2)
        self.deadline = time.monotonic() + max_seconds
        self.sent = 0
        self.stop_event = threading.Event()

    def run(self):
        conns = []
        try:
            while not self.stop_event.is_set() and time.monotonic() < self.deadline:
                try:
                    conn, _ = self.listener.accept()
                    conns.append(conn)
                    if self.mode == "push":
                        conn.sendall(os.urandom(8192))
                except socket.timeout:
                    pass
                for conn in list(conns):
                    if not select.select([conn], [], [], 0)[0]:
                        continue
                    data = conn.recv(4096)
                    if not data:
                        conns.remove(conn)
                        conn.close()
                        continue
                    # every request here is "02 NN"
                    n = sum(data[i + 1] for i in range(0, len(data) - 1, 2) if data[i] == 2)
                    try:
                        conn.sendall(bytes(n) if self.mode == "zeros" else os.urandom(n))
                        self.sent += n
                    except OSError:
                        conns.remove(conn)
        finally:
            for conn in conns:
                conn.close()
            self.listener.close()

    def stop(self):
        self.stop_event.set()
        self.join(5)


def _openssl(args, cwd):
    proc = subprocess.run(["openssl"] + args, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=60)
    if proc.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), proc.stdout.decode()[-2000:]))


def make_pki(root, servers=(), clients=(), ca_name="ca"):
    """A CA and certificates made with the openssl CLI, one directory per holder in
    QEMU's layout: root/<name>/ca-cert.pem and server-cert.pem + server-key.pem
    (servers: {name: ip}, a SAN IP each) or client-cert.pem + client-key.pem (clients:
    names, the CN). Returns root/<ca_name> (the CA's own directory)."""
    ca_dir = os.path.join(root, ca_name)
    os.makedirs(ca_dir, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl(["req", "-x509"] + key + ["-keyout", "ca-key.pem", "-out", "ca-cert.pem",
                                       "-days", "2", "-subj", "/CN=rngmux test CA " + ca_name],
             ca_dir)
    holders = [(name, "server", "IP:%s" % ip) for name, ip in dict(servers).items()]
    holders += [(name, "client", None) for name in clients]
    for name, role, san in holders:
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(ca_dir, "ca-cert.pem"), d)
        _openssl(["req"] + key + ["-keyout", "%s-key.pem" % role, "-out", "req.pem",
                                  "-subj", "/CN=" + name], d)
        ext = os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n")
            f.write("extendedKeyUsage=%s\n" % ("serverAuth" if role == "server" else "clientAuth"))
            if san:
                f.write("subjectAltName=%s\n" % san)
        _openssl(["x509", "-req", "-in", "req.pem", "-CA", os.path.join(ca_dir, "ca-cert.pem"),
                  "-CAkey", os.path.join(ca_dir, "ca-key.pem"), "-CAcreateserial",
                  "-out", "%s-cert.pem" % role, "-days", "2", "-extfile", ext], d)
        os.unlink(os.path.join(d, "req.pem"))
    return ca_dir


def located(index, data):
    """(claimed intervals, bytes located) of `data` in one reference."""
    intervals, in_runs, _ = index.claims(data)
    return intervals, in_runs


class RelayTestCase(RngmuxTestCase):
    """Helpers shared with the fleet test."""

    _references = {}

    @classmethod
    def reference(cls, seed):
        if seed not in cls._references:
            ref = reference_stream(seed, REFERENCE_BYTES)
            cls._references[seed] = (ref, ReferenceIndex(ref))
        return cls._references[seed]

    def start_entropy_host(self, seed, name, tcp_port=None, extra=(), sock=None):
        args = ["--source", "test:%d" % seed, "--allow-test-source", "--pool-size", POOL,
                "--listen", "unix:%s" % self.path((sock or name) + ".sock")]
        if tcp_port is not None:
            args += ["--listen", "tcp:127.0.0.1:%d" % tcp_port]
        return self.start_daemon(args + list(extra), name=name)

    def assert_served_once(self, served, seeds):
        """served: {client: bytes}. Every byte is located in one of the seeds' reference
        streams and no piece of any stream went to two clients (or twice to one)."""
        total = sum(len(d) for d in served.values())
        self.assertGreater(total, 0)
        in_refs = 0
        for seed in seeds:
            _, index = self.reference(seed)
            named = {}
            for name, data in served.items():
                named[name], n = located(index, data)
                in_refs += n
            problems = check_disjoint(named)
            self.assertEqual(problems, [], "seed %d: bytes served more than once:\n%s"
                             % (seed, "\n".join(problems)))
        self.assertGreaterEqual(in_refs / total, 0.95,
                                "only %d of %d relayed bytes are pieces of the upstream streams"
                                % (in_refs, total))
        self.assertNotIn(bytes(32), b"".join(served.values()))


class RelayTest(RelayTestCase):
    def test_relay_over_unix_and_tcp_serves_upstream_bytes_once(self):
        port = free_tcp_port()
        a = self.start_entropy_host(1, "a", tcp_port=port)
        relays = {
            "unix": "egd:unix:%s,entropy=8" % self.path("a.sock"),
            "tcp": "egd:tcp:127.0.0.1:%d,entropy=8,requests=16" % port,
        }
        served = {}
        for kind, spec in relays.items():
            b = self.start_daemon(["--source", spec, "--pool-size", POOL,
                                   "--listen", "unix:%s" % self.path("b-%s.sock" % kind)],
                                  name="b-" + kind)
            clients = [Collector(b.endpoints[0]) for _ in range(2)]
            for c in clients:
                c.start()
            self.assertTrue(wait_until(lambda: all(c.size() > 200000 for c in clients), 30),
                            "%s relay: clients got %r bytes" % (kind, [c.size() for c in clients]))
            for i, c in enumerate(clients):
                served["%s-client%d" % (kind, i)] = c.stop()
                self.assertIsNone(c.error)
            s = b.stats()
            self.assertEqual(s["serving"], spec)
            self.assertEqual(s["upstream"], spec[len("egd:"):].split(",")[0])
            self.assertEqual(s["upstream_connected"], "yes")
            self.assertEqual(s["upstream_reconnects"], 0)
            self.assertGreaterEqual(s["upstream_bytes"], sum(
                len(v) for k, v in served.items() if k.startswith(kind)))
            b.stop()
        # Also a client of A itself, beside the relays.
        direct = Collector(a.endpoints[0])
        direct.start()
        self.assertTrue(wait_until(lambda: direct.size() > 50000, 20))
        served["direct"] = direct.stop()
        self.assert_served_once(served, [1])
        a.stop()

    def test_relay_reconnects_after_the_upstream_restarts(self):
        a = self.start_entropy_host(1, "a")
        b = self.start_daemon(["--source", "egd:unix:%s,entropy=8" % self.path("a.sock"),
                               "--pool-size", "16384",
                               "--listen", "unix:%s" % self.path("b.sock")], name="b")
        client = Collector(b.endpoints[0])
        client.start()
        self.assertTrue(wait_until(lambda: client.size() > 100000, 20), "no data")
        a.kill()
        b.wait_log(r"egd:unix:\S+a\.sock: (upstream closed the connection|connect: )")
        # Still down: B keeps trying (repeated errors are counted, not logged again).
        self.wait_stats(b, lambda s: s["read_errors"] >= 2, "B retries")
        os.unlink(self.path("a.sock"))
        # Restarted with another seed: the stream starts again, so its bytes are new ones.
        self.start_entropy_host(2, "a2", sock="a")
        at_restart = client.size()
        self.assertTrue(wait_until(lambda: client.size() > at_restart + 100000, 30),
                        "the relay does not serve again after its upstream came back")
        data = client.stop()
        self.assertIsNone(client.error)
        s = b.stats()
        self.assertGreaterEqual(s["upstream_reconnects"], 1)
        self.assertEqual(s["upstream_connected"], "yes")
        self.assert_served_once({"client": data}, [1, 2])
        b.stop()

    def test_two_upstreams_fail_over(self):
        a1 = self.start_entropy_host(1, "a1")
        a2 = self.start_entropy_host(2, "a2")
        specs = ["egd:unix:%s,entropy=8" % self.path(n + ".sock") for n in ("a1", "a2")]
        b = self.start_daemon(["--source", specs[0], "--source", specs[1], "--pool-size", "16384",
                               "--listen", "unix:%s" % self.path("b.sock")], name="b")
        self.wait_stats(b, lambda s: s["serving"] == specs[0], "the first upstream serves")
        clients = [Collector(b.endpoints[0]) for _ in range(2)]
        for c in clients:
            c.start()
        self.assertTrue(wait_until(lambda: all(c.size() > 100000 for c in clients), 20))
        a1.kill()
        killed_at = time.monotonic()
        at_kill = [c.size() for c in clients]
        self.wait_stats(b, lambda s: s["serving"] == specs[1], "failover to the second upstream")
        self.assertTrue(wait_until(lambda: all(c.size() > n + 100000
                                               for c, n in zip(clients, at_kill)), 20),
                        "clients are not served by the second upstream")
        gaps = [c.longest_gap(killed_at) for c in clients]
        served = {"client%d" % i: c.stop() for i, c in enumerate(clients)}
        for c in clients:
            self.assertIsNone(c.error)
        # Bounded: the pool covers the switch; the clients never starve long.
        self.assertLess(max(gaps), 10.0, "longest wait for a byte after the kill: %r" % gaps)
        self.assert_served_once(served, [1, 2])
        s = b.stats()
        self.assertGreaterEqual(s["source_switches"], 1)
        self.assertGreater(s["source2_upstream_bytes"], 0)
        b.stop()
        a2.stop()

    def test_zeros_from_an_upstream_are_caught(self):
        zeros = ScriptedUpstream(self.path("zeros.sock"), "zeros")
        zeros.start()
        self.addCleanup(zeros.stop)
        spec = "egd:unix:%s,entropy=8" % self.path("zeros.sock")
        b = self.start_daemon(["--source", spec, "--listen", "unix:%s" % self.path("b.sock")],
                              name="b")
        s = self.wait_stats(b, lambda s: s["blocks_failed"] > 0, "the zeros fail the health tests")
        self.assertEqual(s["source_healthy"], 0)
        self.assertEqual(s["source_bytes_accepted"], 0)
        self.assertEqual(s["serving"], "none")
        self.assertGreater(zeros.sent, 0)
        b.wait_log(r"health test")
        # A client gets nothing: no zero byte reaches it.
        with connect(b.endpoints[0]) as c:
            c.sendall(egd_read(64))
            r, _, _ = select.select([c], [], [], 2.0)
            data = c.recv(64) if r else b""
        self.assertEqual(data, b"", "a client got bytes from an upstream that sends zeros")
        b.stop()

    def test_unsolicited_bytes_from_an_upstream_are_refused(self):
        push = ScriptedUpstream(self.path("push.sock"), "push")
        push.start()
        self.addCleanup(push.stop)
        b = self.start_daemon(["--source", "egd:unix:%s,entropy=8,requests=1" % self.path("push.sock"),
                               "--listen", "unix:%s" % self.path("b.sock")], name="b")
        b.wait_log(r"egd:unix:\S+push\.sock: upstream sent bytes that were not requested")
        s = b.stats()
        self.assertEqual(s["source_bytes_accepted"], 0)
        b.stop()

    def test_bad_specs_are_usage_errors(self):
        from harness import run_cli
        for spec, message in (
                ("egd:tcp:127.0.0.1", 'egd upstream "tcp:127.0.0.1": expected tcp:HOST:PORT'),
                ("egd:tcp:h:1,requests=0", 'requests must be 1-64, got "0"'),
                ("egd:unix:/x,tls", "TLS options need a tcp: upstream"),
                ("egd:tcp:h:1,speed=1", 'unknown option "speed"')):
            with self.subTest(spec=spec):
                proc = run_cli(["serve", "--source", spec, "--listen", "unix:%s" % self.path("x")])
                self.assertNotEqual(proc.returncode, 0, proc.stderr)
                self.assertIn('source "%s": %s' % (spec, message), proc.stderr.decode())


if __name__ == "__main__":
    import unittest
    unittest.main()
