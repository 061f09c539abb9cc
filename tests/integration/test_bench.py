"""`rngmux bench`: the load generator measures, checks reply lengths, and says when a
server misbehaves. Numbers it produces belong in BENCHMARKS.md, not in assertions: these
tests only check that what it reports is consistent.
"""

import json
import socket
import threading

from harness import RngmuxTestCase, run_cli


def bench(*args, timeout=60):
    proc = run_cli(["bench", "--json"] + list(args), timeout=timeout)
    out = proc.stdout.decode()
    return proc.returncode, (json.loads(out) if out.strip() else None), proc.stderr.decode()


class OverAnsweringServer(threading.Thread):
    """A broken EGD server: answers every 02 NN with NN + 1 bytes."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.listener.settimeout(10)

    def run(self):
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(10)
            with conn:
                while True:
                    req = conn.recv(2)
                    if len(req) < 2:
                        return
                    conn.sendall(b"\x55" * (req[1] + 1))
        except OSError:
            return
        finally:
            self.listener.close()


class BenchTest(RngmuxTestCase):
    def serve(self):
        return self.start_daemon(["--source", "test:9", "--allow-test-source",
                                  "--listen", "unix:%s" % self.path("rng.sock"),
                                  "--listen", "tcp:127.0.0.1:0"])

    def test_streams_and_reports_consistent_numbers(self):
        d = self.serve()
        for ep in d.endpoints:
            with self.subTest(ep=ep):
                rc, r, err = bench(ep, "-c", "4", "-d", "8", "-s", "200", "-t", "1",
                                   "--warmup", "0.2")
                self.assertEqual(rc, 0, err)
                self.assertTrue(r["complete"])
                self.assertEqual(r["requested_bytes"], r["received_bytes"])
                self.assertEqual(r["requested_bytes"] % 200, 0)
                self.assertGreater(r["bytes"], 0)
                self.assertGreater(r["jain"], 0.5)
                self.assertGreater(r["latency_samples"], 0)
                self.assertLessEqual(r["p50_us"], r["p99_us"])
                self.assertLessEqual(r["p99_us"], r["p999_us"])
        s = d.stats()
        self.assertEqual(s["bad_requests"], 0)
        self.assertGreaterEqual(s["served_bytes"], 1)
        d.stop()

    def test_udp(self):
        d = self.start_daemon(["--source", "test:9", "--allow-test-source", "--listen",
                               "udp:127.0.0.1:0,rate=100000000,burst=1000000"],
                              expect_listen=1)
        rc, r, err = bench(d.endpoints[0], "-c", "2", "-d", "8", "-t", "1", "--warmup", "0.2")
        self.assertEqual(rc, 0, err)
        self.assertTrue(r["complete"])
        self.assertGreater(r["bytes"], 0)
        self.assertEqual(r["requested_bytes"], r["received_bytes"])
        d.stop()

    def test_probe_measures_one_request_at_a_time(self):
        d = self.serve()
        rc, r, err = bench(d.endpoints[0], "-c", "10", "-d", "4", "-t", "1", "--probe",
                           "--warmup", "0.2")
        self.assertEqual(rc, 0, err)
        self.assertEqual(r["latency_of"], "probe")
        self.assertGreater(r["latency_samples"], 10)
        d.stop()

    def test_rate_paces_each_client(self):
        """--rate caps what each streamer asks for: unpaced, the test source gives these
        clients megabytes a second."""
        d = self.serve()
        clients, rate, seconds, warmup, depth, size = 4, 5000, 2.0, 0.5, 4, 100
        rc, r, err = bench(d.endpoints[0], "-c", str(clients), "-d", str(depth), "-s",
                           str(size), "-t", str(seconds), "--warmup", str(warmup),
                           "--rate", str(rate))
        self.assertEqual(rc, 0, err)
        self.assertTrue(r["complete"])
        self.assertEqual(r["client_rate"], rate)
        # At most the rate over warm-up and window plus one full bucket, per client.
        most = clients * (rate * (warmup + seconds) + depth * size)
        self.assertLessEqual(r["bytes"], most, r)
        self.assertGreaterEqual(r["bytes"], clients * rate * seconds * 0.5, r)
        d.stop()

    def test_a_server_that_sends_too_much_is_caught(self):
        path = self.path("bad.sock")
        server = OverAnsweringServer(path)
        server.start()
        rc, r, err = bench("unix:" + path, "-c", "1", "-d", "1", "-s", "10", "-t", "1",
                           "--warmup", "0")
        self.assertEqual(rc, 1)
        self.assertFalse(r["complete"])
        self.assertIn("received 11 bytes but asked for 10", err)

    def test_usage_errors(self):
        for args, word in ((["tcp:127.0.0.1:1,qemu"], "bench speaks strict EGD"),
                           (["unix:/x", "--raw", "--probe"], "--probe needs EGD"),
                           (["unix:/x", "--raw", "--rate", "10"], "--rate needs EGD"),
                           (["unix:/x", "-s", "300"], "--size")):
            proc = run_cli(["bench"] + args)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertIn(word, proc.stderr.decode())


if __name__ == "__main__":
    import unittest
    unittest.main()
