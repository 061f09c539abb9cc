"""The Prometheus endpoint: /metrics in the text format (promtool check metrics passes), a
real Prometheus server scrapes it and answers a query, other paths 404, bad requests 400
and close only their own connection."""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

from harness import (RngmuxTestCase, connect, egd_read, free_tcp_port, recv_exact,
                     wait_until)


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers, r.read().decode()


def raw_request(port, data, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def sample(text, name, labels=""):
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return float(m.group(1)) if m else None


def read_then_scrape(endpoint, url, replies=20):
    """Reads `replies` 255-byte replies one at a time on one connection, then scrapes
    while it is open; returns the bytes read and the scrape (status, headers, text)."""
    read = 0
    with connect(endpoint) as s:
        for _ in range(replies):
            s.sendall(egd_read(255))
            recv_exact(s, 255)
            read += 255
        return read, http_get(url)


class MetricsTest(RngmuxTestCase):
    def serve(self, *extra):
        d = self.start_daemon(["--source", "test:9", "--allow-test-source", "--listen",
                               "tcp:127.0.0.1:0", "--metrics", "tcp:127.0.0.1:0", *extra],
                              wait_for=r"metrics at http://")
        m = re.search(r"metrics at (http://127\.0\.0\.1:(\d+)/metrics)", d.log_text())
        return d, m.group(1), int(m.group(2))

    def test_scrape_matches_what_clients_read_and_promtool_accepts_it(self):
        d, url, _ = self.serve()
        read, (status, headers, text) = read_then_scrape(d.endpoints[0], url)
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        ep = '{endpoint="listen tcp:127.0.0.1:0"}'
        self.assertEqual(sample(text, "rngmux_endpoint_served_bytes_total", ep), read)
        self.assertEqual(sample(text, "rngmux_endpoint_clients", ep), 1)
        self.assertEqual(sample(text, "rngmux_served_bytes_total"), read)
        # No --write-threads: the event loop sent every byte.
        self.assertEqual(sample(text, "rngmux_write_thread_sent_bytes_total"), 0)
        self.assertEqual(sample(text, "rngmux_pool_capacity_bytes"), 262144)
        self.assertGreaterEqual(sample(text, "rngmux_pool_out_bytes_total"), read)
        src = '{source="test:9[TEST-ONLY]"}'
        self.assertEqual(sample(text, "rngmux_source_serving", src), 1)
        self.assertEqual(sample(text, "rngmux_source_state",
                                '{source="test:9[TEST-ONLY]",state="serving"}'), 1)
        self.assertGreater(sample(text, "rngmux_source_bytes_accepted_total", src), 0)
        self.assertEqual(sample(text, "rngmux_last_reload_success"), 1)
        self.assertEqual(sample(text, "rngmux_client_served_bytes",
                                '{identity="uid:%d",endpoint="listen tcp:127.0.0.1:0"}'
                                % os.geteuid()), read)
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                self.assertIn(line.split()[3], ("counter", "gauge"), line)
        if shutil.which("promtool") is None:
            self.skipTest("promtool (Debian package prometheus) is not installed")
        p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_bytes_sent_on_write_threads_are_counted(self):
        d, url, _ = self.serve("--write-threads", "1")
        # One reply at a time into an empty socket: each leaves whole on the write
        # thread, so the count is exact.
        read, (_, _, text) = read_then_scrape(d.endpoints[0], url)
        self.assertEqual(sample(text, "rngmux_served_bytes_total"), read)
        # The thread counts a reply once its send has returned, which can be just after
        # the client read it: the count comes to what was read, and never goes past it.
        counts = [sample(text, "rngmux_write_thread_sent_bytes_total")]
        while counts[-1] != read and len(counts) < 100:
            time.sleep(0.05)
            counts.append(sample(http_get(url)[2], "rngmux_write_thread_sent_bytes_total"))
        self.assertEqual(counts[-1], read, counts)
        self.assertLessEqual(max(counts), read, counts)
        # The SIGUSR1 line reports the same counter.
        self.assertEqual(d.stats()["write_thread_sent_bytes"], read)

    def test_connections_beyond_the_limit_are_closed_counted_and_logged_once(self):
        d, url, port = self.serve()
        idle = []
        try:
            for _ in range(64):  # served: each waits for its request head
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            for _ in range(3):  # closed at once, without an answer
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    try:
                        self.assertEqual(s.recv(1), b"")
                    except ConnectionResetError:
                        pass
        finally:
            for s in idle:
                s.close()
        # Until the daemon has seen the idle ones go, a scrape is turned away too.
        turned_away = 0
        for _ in range(100):
            try:
                text = http_get(url)[2]
                break
            except (OSError, http.client.HTTPException):
                turned_away += 1
                time.sleep(0.1)
        self.assertEqual(sample(text, "rngmux_metrics_busy_refusals_total"), 3 + turned_away)
        self.assertEqual(d.count_log(r"metrics: 64 connections open already"), 1)

    def test_other_paths_methods_and_bad_requests(self):
        d, url, port = self.serve()
        base = url[:-len("/metrics")]
        with self.assertRaises(urllib.error.HTTPError) as e:
            http_get(base + "/")
        self.assertEqual(e.exception.code, 404)
        head = raw_request(port, b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n").decode()
        self.assertTrue(head.startswith("HTTP/1.1 200 OK\r\n"), head)
        self.assertTrue(head.endswith("\r\n\r\n"), "HEAD has no body")
        post = raw_request(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(post.startswith(b"HTTP/1.1 405 "), post)
        # A connection that sends garbage is answered 400 and closed; others go on.
        slow = socket.create_connection(("127.0.0.1", port), timeout=15)
        slow.sendall(b"GET /metrics HTTP/1.1\r\n")  # never finishes its head
        bad = raw_request(port, b"\x16\x03\x01\x00\xa5\x01\x00")
        self.assertTrue(bad.startswith(b"HTTP/1.1 400 Bad Request\r\n"), bad)
        big = raw_request(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10000 + b"\r\n\r\n")
        self.assertTrue(big.startswith(b"HTTP/1.1 400 "), big)
        self.assertIn(b"request head longer than 8192 bytes", big)
        # Many scrapers at once.
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
        for s in socks:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in socks:
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 200 OK"), data[:100])
            self.assertIn(b"rngmux_build_info", data)
        d.wait_log(r"metrics: closing a connection from 127\.0\.0\.1: request has a byte that "
                   r"is not allowed \(0x16\)")
        _, _, text = http_get(url)
        self.assertEqual(sample(text, "rngmux_metrics_bad_requests_total"), 2)
        # The stalled one is timed out (10 s) and counted.
        self.assertEqual(slow.recv(100), b"")
        slow.close()
        _, _, text = http_get(url)
        self.assertEqual(sample(text, "rngmux_metrics_bad_requests_total"), 3)

    def test_a_prometheus_server_scrapes_it(self):
        if shutil.which("prometheus") is None:
            self.skipTest("prometheus (Debian package prometheus) is not installed")
        d, url, port = self.serve()
        prom_port = free_tcp_port()
        config = self.path("prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: rngmux\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % port)
        log = open(self.path("prometheus.log"), "wb")
        proc = subprocess.Popen(["prometheus", "--config.file=" + config,
                                 "--storage.tsdb.path=" + self.path("tsdb"),
                                 "--web.listen-address=127.0.0.1:%d" % prom_port],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)

        def stop():
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()
        self.addCleanup(stop)
        query = ("http://127.0.0.1:%d/api/v1/query?query=rngmux_pool_capacity_bytes"
                 % prom_port)
        answer = {}

        def scraped():
            try:
                _, _, body = http_get(query, timeout=2)
            except (OSError, urllib.error.URLError):
                return False
            result = json.loads(body)["data"]["result"]
            if result:
                answer["value"] = float(result[0]["value"][1])
                answer["job"] = result[0]["metric"]["job"]
            return bool(result)
        wait_until(scraped, 45, interval=0.5, what="a Prometheus query with a result")
        self.assertEqual(answer["value"], 262144)
        self.assertEqual(answer["job"], "rngmux")
        self.assertEqual(proc.poll(), None)


if __name__ == "__main__":
    import unittest
    unittest.main()
