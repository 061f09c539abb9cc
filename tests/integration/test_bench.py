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

    def test_guests_time_every_request_and_report_the_daemons_cpu(self):
        """--guests: one 02 40 in flight per client, paced; --pid reads the daemon's CPU
        from /proc over the measured window."""
        d = self.serve()
        guests, seconds = 20, 1.0
        rc, r, err = bench(d.endpoints[0], "--guests", str(guests), "-t", str(seconds),
                           "--warmup", "0.3", "--threads", "2", "--pid", str(d.pid))
        self.assertEqual(rc, 0, err)
        self.assertTrue(r["complete"])
        self.assertEqual((r["clients"], r["depth"], r["size"]), (guests, 1, 64))
        self.assertEqual(r["client_rate"], 64000)
        self.assertEqual(r["threads"], 2)
        self.assertEqual(r["requested_bytes"], r["received_bytes"])
        self.assertEqual(r["requested_bytes"] % 64, 0)
        # Every request of every client is timed: paced to 1,000 requests a second each,
        # far more than one per client even on a slow (sanitizer) build.
        self.assertEqual(r["latency_of"], "all")
        self.assertGreater(r["latency_samples"], guests * 10, r)
        self.assertGreater(r["delivered_share"], 0, r)
        self.assertLessEqual(r["delivered_share"], 1.05, r)
        self.assertLessEqual(r["client_min_share"], r["delivered_share"], r)
        self.assertGreater(r["daemon_cpu_seconds"], 0, r)
        self.assertGreater(r["daemon_cpu_seconds_per_gb"], 0, r)
        self.assertGreaterEqual(r["bench_cpu_seconds"], 0, r)
        self.assertEqual(r["daemon_pid"], d.pid)
        d.stop()

    def test_a_missing_pid_is_refused(self):
        # A pid no process has: beyond the kernel's pid_max.
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
        proc = run_cli(["bench", "unix:/nonexistent.sock", "--pid", str(pid_max + 1)])
        self.assertEqual(proc.returncode, 2, proc.stderr)
        err = proc.stderr.decode()
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn("--pid %d: /proc/%d/stat: No such file or directory"
                      % (pid_max + 1, pid_max + 1), err)

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
                           (["unix:/x", "-s", "300"], "--size"),
                           (["unix:/x", "--guests", "5", "-c", "3"], "drop -c"),
                           (["unix:/x", "--guests", "5", "-d", "4"], "drop -s/-d"),
                           (["unix:/x", "--guests", "5", "--raw"], "--guests needs EGD"),
                           (["unix:/x", "--guests", "5", "--probe"], "drop --probe"),
                           (["unix:/x", "--guests", "5", "--rate", "0"], "--rate 0"),
                           (["unix:/x", "--threads", "0"], "--threads")):
            proc = run_cli(["bench"] + args)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertIn(word, proc.stderr.decode())
            if "--guests" in args:
                self.assertEqual(proc.stderr.decode().count("\n"), 1, proc.stderr)


if __name__ == "__main__":
    import unittest
    unittest.main()
