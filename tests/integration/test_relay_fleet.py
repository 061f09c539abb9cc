"""A fleet in network namespaces: two entropy hosts and two relay hosts.

The test makes a namespace with a bridge and one namespace per host, joined to the
bridge by veth pairs (10.77.0.0/24). The entropy hosts serve test sources with
different seeds over mutual TLS; each relay draws from both (the first preferred) and
serves local clients on unix sockets, which the test reads directly (a unix socket is
reachable across network namespaces). The serving entropy host is killed mid-stream:
every client keeps receiving, from the other upstream, within a bounded time, and
every byte any client got is a distinct piece of the two upstream streams.

Needs root and `ip`; skips visibly otherwise. The namespaces are always removed.
"""

import os
import shutil
import subprocess
import time

from harness import wait_until
from harness import Collector
from test_relay import RelayTestCase, make_pki

SUBNET = "10.77.0"
PORT = 7000


def ip(*args, check=True):
    proc = subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError("ip %s: %s" % (" ".join(args), proc.stdout.decode().strip()))
    return proc


class Fleet:
    """Namespaces <prefix>-hub (the bridge) and <prefix>-<host>, one veth each."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.hub = prefix + "-hub"
        self.namespaces = []

    def add_namespace(self, name):
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def make_hub(self):
        self.add_namespace(self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")

    def add_host(self, host, number):
        ns = "%s-%s" % (self.prefix, host)
        self.add_namespace(ns)
        inside, outside = "eth0", "v%d" % number
        ip("-n", ns, "link", "add", inside, "type", "veth", "peer", "name", outside,
           "netns", self.hub)
        ip("-n", self.hub, "link", "set", outside, "master", "br0")
        ip("-n", self.hub, "link", "set", outside, "up")
        address = "%s.%d" % (SUBNET, number)
        ip("-n", ns, "addr", "add", address + "/24", "dev", inside)
        ip("-n", ns, "link", "set", inside, "up")
        return ns, address

    def teardown(self):
        for ns in reversed(self.namespaces):
            ip("netns", "del", ns, check=False)
        self.namespaces = []


class RelayFleetTest(RelayTestCase):
    def setUp(self):
        super().setUp()
        have = os.geteuid() == 0 and shutil.which("ip") and shutil.which("openssl")
        self.skip_unless("netns", have, "the fleet test needs root, `ip` and `openssl`")
        probe = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=10)
        self.skip_unless("netns", probe.returncode == 0,
                         "`ip netns` does not work here: %s" % probe.stdout.decode().strip())

    def stop_daemons(self):
        for d in self.daemons:
            if d.proc is not None and not d.exited():
                d.stop(expect_rc=None)

    def start_in(self, ns, args, name):
        return self.start_daemon(args, name=name, wrapper=("ip", "netns", "exec", ns))

    def test_relays_fail_over_between_entropy_hosts_without_repeating_a_byte(self):
        fleet = Fleet("rmx%d" % os.getpid())
        self.addCleanup(fleet.teardown)
        fleet.make_hub()
        hosts = {}
        for number, host in enumerate(("entropy1", "entropy2", "relay1", "relay2"), start=1):
            hosts[host] = fleet.add_host(host, number)
        pki = self.path("pki")
        make_pki(pki, servers={h: hosts[h][1] for h in ("entropy1", "entropy2")},
                 clients=("relay1", "relay2"))
        # The daemons must be gone before their namespaces (cleanups run last first).
        self.addCleanup(self.stop_daemons)

        seeds = {"entropy1": 11, "entropy2": 12}
        entropy = {}
        for host, seed in seeds.items():
            ns, address = hosts[host]
            entropy[host] = self.start_in(ns, [
                "--source", "test:%d" % seed, "--allow-test-source", "--pool-size", "65536",
                "--listen", "tcp:%s:%d,allow=%s.0/24,tls-dir=%s,allow-subject=relay1+relay2"
                % (address, PORT, SUBNET, os.path.join(pki, host))], name=host)
        relays = {}
        specs = ["egd:tcp:%s:%d,entropy=8,tls-dir=%%s" % (hosts[h][1], PORT)
                 for h in ("entropy1", "entropy2")]
        for host in ("relay1", "relay2"):
            ns, _ = hosts[host]
            tls_dir = os.path.join(pki, host)
            relays[host] = self.start_in(ns, [
                "--source", specs[0] % tls_dir, "--source", specs[1] % tls_dir,
                "--pool-size", "16384", "--listen", "unix:%s" % self.path(host + ".sock")],
                name=host)
        for host, d in relays.items():
            self.wait_stats(d, lambda s: s["serving"].startswith("egd:tcp:%s.1:" % SUBNET),
                            "%s draws from entropy1" % host)

        clients = {}
        for host, d in relays.items():
            for i in range(2):
                clients["%s-client%d" % (host, i)] = Collector(d.endpoints[0])
        for c in clients.values():
            c.start()
        self.assertTrue(wait_until(lambda: all(c.size() > 100000 for c in clients.values()), 30),
                        "clients: %r" % {k: c.size() for k, c in clients.items()})

        entropy["entropy1"].kill()
        killed_at = time.monotonic()
        at_kill = {k: c.size() for k, c in clients.items()}
        for host, d in relays.items():
            self.wait_stats(d, lambda s: s["serving"].startswith("egd:tcp:%s.2:" % SUBNET),
                            "%s fails over to entropy2" % host)
        self.assertTrue(wait_until(lambda: all(c.size() > at_kill[k] + 100000
                                               for k, c in clients.items()), 30),
                        "clients are not served by entropy2: %r"
                        % {k: c.size() - at_kill[k] for k, c in clients.items()})
        gaps = {k: c.longest_gap(killed_at) for k, c in clients.items()}
        served = {k: c.stop() for k, c in clients.items()}
        for k, c in clients.items():
            self.assertIsNone(c.error, k)
        self.assertLess(max(gaps.values()), 10.0, "longest wait for a byte after the kill: %r"
                        % gaps)
        self.assert_served_once(served, list(seeds.values()))
        for host, d in relays.items():
            s = d.stats()
            self.assertGreater(s["upstream_bytes"], 0, host)
            self.assertGreater(s["source2_upstream_bytes"], 0, host)
            self.assertEqual(s["upstream_tls"], "yes")
            self.assertEqual(s["source2_upstream_connected"], "yes")


if __name__ == "__main__":
    import unittest
    unittest.main()
