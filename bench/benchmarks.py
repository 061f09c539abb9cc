#!/usr/bin/env python3
"""The rngmux benchmark suite: every number in BENCHMARKS.md's target table, in one run.

    python3 bench/benchmarks.py [--binary build/rngmux] [--only NAME ...] [--quick]

Benchmarks (each prints one result line; --only runs a subset):
  capacity   8 EGD clients x 256 pipelined `02 FF` on a unix socket, test source and
             getrandom, against socat streaming /dev/urandom to 8 raw readers, same run;
             each server's CPU seconds per GB delivered (`rngmux bench --pid`)
  latency    one client with a single `02 40` outstanding (what a Linux guest does)
             while 100 others stream (as fast as answered, then paced to 100 kB/s
             each), and alone, loopback TCP: p50/p99/p99.9
  guests     1,000 QEMU-like clients (one `02 40` in flight each, paced to 64 kB/s,
             staggered), loopback TCP and unix: p50/p99/p99.9 of every request, Jain,
             share of the asked rate delivered, daemon and generator CPU
  floor      the latency and guests cases against bench/floor_server.c, a responder that
             only does one recv and one send per readiness (1 and 2 event loops), beside
             rngmux in the same run: what this machine allows any EGD daemon
  slow       a 500 kB/s source, 8 equal clients asking more than it makes, 20 s:
             share of the source's output delivered, and Jain's fairness index
  scale      RSS idle (default source, then the test source), RSS with 10,000 idle
             connections, CPU used while idle
  startup    exec to a connectable listening socket, with a ready source
  tenants    a guest-like client's share of a 10 kB/s source beside a connection churner
             of another uid (by identity, and per connection as before); RSS per idle
             connection with and without a delivered 4 KiB lead (10,000 each); probe
             latency with 10,000 idle clients present and with none
  operate    with 200 clients streaming: `rngmux reload` (a changed log level) and
             `rngmux status --json` round trips through the control socket, and a
             /metrics scrape (time and size)
  relay      relay hops over loopback TCP, plain and TLS: a client of the entropy host A,
             of a relay B drawing from A (one hop) and of a relay C drawing from B (two
             hops): throughput of one bulk reader (256 x 02 FF pipelined) and p50/p99 of
             a single `02 40` outstanding
  guest      QEMU guest /dev/hwrng throughput through rngmux over TCP and unix,
             against QEMU's rng-random and rng-builtin (tests/integration/guest_throughput.py)

Only loopback and unix sockets are used; every wait is bounded.
"""

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def pss_kb(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return -1


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Serve:
    """`rngmux serve ARGS` in the background, waiting (bounded) for its listeners."""

    def __init__(self, binary, args, workdir, listeners=1):
        self.binary = binary
        stamp = time.monotonic_ns()
        self.log = os.path.join(workdir, "serve.%d.log" % stamp)
        # Daemons here run side by side: each has a control socket of its own in the
        # workdir (never the default one), which stats() asks.
        if "--control" in args:
            self.control = args[args.index("--control") + 1]
        else:
            self.control = os.path.join(workdir, "serve.%d.control" % stamp)
            args = list(args) + ["--control", self.control]
        self.proc = subprocess.Popen([binary, "serve"] + args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))
        self.endpoints = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(self.endpoints) < listeners:
            self.endpoints = [line.split("listening on ")[1].strip()
                              for line in open(self.log, errors="replace")
                              if "listening on " in line]
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if len(self.endpoints) < listeners:
            self.stop()
            raise RuntimeError("rngmux serve %r did not come up:\n%s"
                               % (args, open(self.log, errors="replace").read()[-2000:]))

    def stats(self):
        """The daemon's counters, through its control socket (`rngmux stats --json`)."""
        proc = subprocess.run([self.binary, "stats", "--json", "--control", self.control],
                              capture_output=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError("rngmux stats --control %s failed: %s"
                               % (self.control, proc.stderr.decode().strip()))
        return json.loads(proc.stdout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def bench(binary, endpoint, *args, timeout=300):
    proc = subprocess.run([binary, "bench", endpoint, "--json"] + list(args),
                          capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("rngmux bench %s %r failed: %s" % (endpoint, args, proc.stderr.decode()))
    return json.loads(proc.stdout)


def per_gb(r):
    """`rngmux bench --pid`'s CPU seconds per GB delivered, as text."""
    return "%.2f s/GB" % r["daemon_cpu_seconds_per_gb"]


def run_capacity(binary, workdir, quick):
    """rngmux on the test source and on getrandom, and socat streaming /dev/urandom (the
    kernel generator getrandom reads, with no protocol), to the same 8 clients in one run;
    each server's CPU per GB delivered (socat's forked children included)."""
    seconds = "3" if quick else "10"
    rngmux = {}
    for source in ("test:1", "getrandom"):
        sock = os.path.join(workdir, "cap-%s.sock" % source.replace(":", ""))
        s = Serve(binary, ["--source", source, "--allow-test-source",
                           "--listen", "unix:" + sock], workdir)
        try:
            rngmux[source] = bench(binary, "unix:" + sock, "-c", "8", "-d", "256", "-s", "255",
                                   "-t", seconds, "--pid", str(s.proc.pid))
        finally:
            s.stop()
    socat_sock = os.path.join(workdir, "socat.sock")
    socat = subprocess.Popen(["socat", "UNIX-LISTEN:%s,fork" % socat_sock, "OPEN:/dev/urandom"],
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not os.path.exists(socat_sock) and time.monotonic() < deadline:
            time.sleep(0.02)
        q = bench(binary, "unix:" + socat_sock, "--raw", "-c", "8", "-t", seconds,
                  "--pid", str(socat.pid))
    finally:
        socat.terminate()
        socat.wait(10)
    r, g = rngmux["test:1"], rngmux["getrandom"]
    return ("capacity: rngmux %.0f MB/s (8 clients x 256 x 02 FF, unix, test source, Jain %.4f, "
            "daemon %s); socat /dev/urandom %.0f MB/s (8 raw readers, %s incl. its forked "
            "children); ratio %.2fx\n"
            "capacity, getrandom: rngmux --source getrandom %.0f MB/s (same 8 clients, Jain "
            "%.4f, daemon %s) against socat /dev/urandom %.0f MB/s: ratio %.2fx; CPU per GB "
            "%.2fx socat's"
            % (r["bytes_per_second"] / 1e6, r["jain"], per_gb(r), q["bytes_per_second"] / 1e6,
               per_gb(q), r["bytes_per_second"] / q["bytes_per_second"],
               g["bytes_per_second"] / 1e6, g["jain"], per_gb(g), q["bytes_per_second"] / 1e6,
               g["bytes_per_second"] / q["bytes_per_second"],
               g["daemon_cpu_seconds_per_gb"] / q["daemon_cpu_seconds_per_gb"]))


def run_latency(binary, workdir, quick):
    """The probe beside 100 streamers as fast as they are answered (the target's case), beside
    100 streamers paced to 100 kB/s each (10 MB/s together, 20 times a PQ4000KU), and alone
    (this machine's floor for one loopback round trip through the daemon)."""
    s = Serve(binary, ["--source", "test:2", "--allow-test-source",
                       "--listen", "tcp:127.0.0.1:0"], workdir)
    seconds = "3" if quick else "10"
    try:
        full = bench(binary, s.endpoints[0], "-c", "100", "-d", "8", "-s", "255", "--probe",
                     "-t", seconds)
        paced = bench(binary, s.endpoints[0], "-c", "100", "-d", "8", "-s", "255", "--probe",
                      "--rate", "100000", "-t", seconds)
        alone = bench(binary, s.endpoints[0], "-c", "0", "--probe", "-t", seconds)
    finally:
        s.stop()

    def percentiles(r):
        return "p50 %.1f us, p99 %.1f us, p99.9 %.1f us" % (r["p50_us"], r["p99_us"],
                                                          r["p999_us"])

    return ("latency, loopback TCP: probe %s (%d requests) beside 100 streaming clients at "
            "%.0f MB/s; %s beside 100 clients paced to 100 kB/s each (%.1f MB/s); %s with no "
            "other client" % (percentiles(full), full["latency_samples"],
                              full["bytes_per_second"] / 1e6, percentiles(paced),
                              paced["bytes_per_second"] / 1e6, percentiles(alone)))


def run_slow(binary, workdir, quick):
    seconds = 5 if quick else 20
    s = Serve(binary, ["--source", "test:3,rate=500000", "--allow-test-source",
                       "--pool-size", "16384",
                       "--listen", "unix:" + os.path.join(workdir, "slow.sock")], workdir)
    try:
        before = s.stats()
        r = bench(binary, s.endpoints[0], "-c", "8", "-d", "16", "-s", "255",
                  "-t", str(seconds), "--warmup", "1")
        after = s.stats()
    finally:
        s.stop()
    # What the source produced while clients measured, against what they got. The
    # bench's measured window is `seconds` long after a 1 s warm-up; the daemon's
    # counters cover the whole run, so compare rates.
    produced = after["source_bytes_accepted"] - before["source_bytes_accepted"]
    served = after["served_bytes"] - before["served_bytes"]
    return ("slow source (500 kB/s): clients received %.2f%% of what the source produced "
            "(%d of %d bytes over the run), measured %.0f kB/s over %d s, Jain %.4f"
            % (100.0 * served / produced, served, produced, r["bytes_per_second"] / 1e3,
               seconds, r["jain"]))


def run_scale(binary, workdir, quick):
    n = 2000 if quick else 10000
    if not raise_nofile(n):
        return "scale: skipped, RLIMIT_NOFILE hard limit below %d" % (n + 100)
    # Idle as deployed: the default source (`auto`: the best hardware source present),
    # which loads nothing from libcrypto unless a source needs conditioning.
    sock = os.path.join(workdir, "idle.sock")
    s = Serve(binary, ["--listen", "unix:" + sock], workdir)
    try:
        time.sleep(2.0)
        default_source = s.stats().get("serving", "?")
        default_rss = rss_kb(s.proc.pid)
        default_pss = pss_kb(s.proc.pid)
    finally:
        s.stop()
    # The test source (AES-CTR from libcrypto) for the rest: it fills the pool at once.
    sock = os.path.join(workdir, "scale.sock")
    # One uid holds every connection: lift the per-identity cap (max-conns, 1024 by
    # default) so that the daemon keeps all n.
    s = Serve(binary, ["--source", "test:4", "--allow-test-source", "--max-clients", str(n + 100),
                       "--listen", "unix:%s,max-conns=%d" % (sock, n + 100)], workdir)
    conns = []
    try:
        time.sleep(1.0)  # pool filled, source parked
        idle_rss = rss_kb(s.proc.pid)
        cpu0 = cpu_seconds(s.proc.pid)
        time.sleep(5.0)
        idle_cpu = cpu_seconds(s.proc.pid) - cpu0
        for _ in range(n):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(sock)
            conns.append(c)
        deadline = time.monotonic() + 30
        while s.stats()["clients"] < n and time.monotonic() < deadline:
            time.sleep(0.2)
        clients = s.stats()["clients"]
        if clients != n:
            raise RuntimeError("scale: the daemon holds %d of %d idle connections" % (clients, n))
        many_rss = rss_kb(s.proc.pid)
        cpu1 = cpu_seconds(s.proc.pid)
        time.sleep(5.0)
        many_cpu = cpu_seconds(s.proc.pid) - cpu1
    finally:
        for c in conns:
            c.close()
        s.stop()
    return ("scale: idle RSS %.1f MB (PSS %.1f MB) with the default source (%s); with the test "
            "source: idle RSS %.1f MB, CPU %.2f s in 5 s idle; %d idle connections: RSS %.1f MB, "
            "CPU %.2f s in 5 s" % (default_rss / 1024, default_pss / 1024, default_source,
                                   idle_rss / 1024, idle_cpu, clients, many_rss / 1024, many_cpu))


def raise_nofile(n):
    """Lifts this process's RLIMIT_NOFILE (inherited by the daemon and the bench) to n + 100;
    returns False if the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 100:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n + 100), hard))
    return True


def run_guests(binary, workdir, quick):
    """1,000 QEMU-like clients (`rngmux bench --guests`: one `02 40` in flight each, paced
    to 64 kB/s, phases staggered), loopback TCP and a unix socket, test source. The bench
    runs two event-loop threads on the same 2 cores as the daemon: its CPU is printed
    beside the daemon's."""
    n = 200 if quick else 1000
    seconds = "3" if quick else "10"
    if not raise_nofile(n):
        return "guests: skipped, RLIMIT_NOFILE hard limit below %d" % (n + 100)
    lines = []
    # Every guest here has one identity (one uid, one address): lift the per-identity
    # connection cap (max-conns, 1024 by default) above n.
    for name, listen in (("loopback TCP", "tcp:127.0.0.1:0,max-conns=%d" % (n + 100)),
                         ("unix socket", "unix:%s,max-conns=%d"
                          % (os.path.join(workdir, "guests.sock"), n + 100))):
        s = Serve(binary, ["--source", "test:12", "--allow-test-source",
                           "--max-clients", str(n + 100), "--listen", listen], workdir)
        try:
            r = bench(binary, s.endpoints[0], "--guests", str(n), "--rate", "64000",
                      "--threads", "2", "-t", seconds, "--warmup", "1",
                      "--pid", str(s.proc.pid))
        finally:
            s.stop()
        lines.append("guests, %s: %d clients x 02 40 paced to 64 kB/s, %s s: p50 %.1f us, "
                     "p99 %.1f us, p99.9 %.1f us (%d requests), Jain %.4f, delivered %.1f %% "
                     "(lowest client %.1f %%, %d below 90 %%); daemon CPU %.2f s (%s), bench "
                     "CPU %.2f s"
                     % (name, n, seconds, r["p50_us"], r["p99_us"], r["p999_us"],
                        r["latency_samples"], r["jain"], 100 * r["delivered_share"],
                        100 * r["client_min_share"], r["clients_below_90pct"],
                        r["daemon_cpu_seconds"], per_gb(r), r["bench_cpu_seconds"]))
    return "\n".join(lines)


def build_floor_server(workdir):
    """Compiles bench/floor_server.c into workdir; returns the executable's path, or None
    without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    out = os.path.join(workdir, "floor_server")
    proc = subprocess.run([cc, "-O2", "-pthread", "-o", out,
                           os.path.join(ROOT, "bench", "floor_server.c")],
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError("cannot build floor_server: " + proc.stderr.decode()[-2000:])
    return out


def run_floor(binary, workdir, quick):
    """The probe beside 100 streamers, and QEMU-like guests at 64 kB/s, against rngmux and
    against floor_server (one recv and one send per readiness, nothing else) with one and
    with two event loops, one after the other on the same machine: the share of a miss
    that no EGD daemon answering with system calls could avoid here. The load generator
    shares the cores with the server in every case."""
    n = 200 if quick else 1000
    seconds = "3" if quick else "5"
    if not raise_nofile(n):
        return "floor: skipped, RLIMIT_NOFILE hard limit below %d" % (n + 100)
    floor_server = build_floor_server(workdir)
    if floor_server is None:
        return "floor: skipped, no C compiler (cc) to build bench/floor_server.c"

    def measure(endpoint, pid):
        probe = bench(binary, endpoint, "-c", "100", "-d", "8", "-s", "255", "--probe",
                      "-t", seconds, "--pid", str(pid))
        guests = bench(binary, endpoint, "--guests", str(n), "--rate", "64000", "--threads",
                       "2", "-t", seconds, "--warmup", "1", "--pid", str(pid))
        return ("probe beside 100 streamers p50 %.1f us, p99 %.1f us at %.0f MB/s (server "
                "%s); %d guests p50 %.1f us, p99 %.1f us, delivered %.1f %% (server %s, "
                "bench CPU %.2f s)"
                % (probe["p50_us"], probe["p99_us"], probe["bytes_per_second"] / 1e6,
                   per_gb(probe), n, guests["p50_us"], guests["p99_us"],
                   100 * guests["delivered_share"], per_gb(guests), guests["bench_cpu_seconds"]))

    lines = []
    s = Serve(binary, ["--source", "test:12", "--allow-test-source", "--max-clients",
                       str(n + 200), "--listen", "tcp:127.0.0.1:0,max-conns=%d" % (n + 200)],
              workdir)
    try:
        lines.append("floor, loopback TCP, %s s each: rngmux (test source): %s"
                     % (seconds, measure(s.endpoints[0], s.proc.pid)))
    finally:
        s.stop()
    for threads in (1, 2):
        proc = subprocess.Popen([floor_server, str(threads)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        try:
            address = proc.stdout.readline().decode().strip()
            if not address:
                raise RuntimeError("floor_server printed no address")
            lines.append("  floor_server, %d event loop%s: %s"
                         % (threads, "s" if threads > 1 else "",
                            measure("tcp:" + address, proc.pid)))
        finally:
            proc.kill()
            proc.wait(10)
    return "\n".join(lines)


def idle_connections(path, n, read_lead):
    conns = []
    for _ in range(n):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        conns.append(c)
    if read_lead:
        for c in conns:
            c.settimeout(10)
            got = 0
            while got < 4096:
                chunk = c.recv(4096 - got)
                if not chunk:
                    raise RuntimeError("connection closed before its lead arrived")
                got += len(chunk)
    return conns


def run_tenants(binary, workdir, quick):
    n = 2000 if quick else 10000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n + 100), hard))
    results = []

    # 1. A guest-like client beside a churner of another uid (tests/integration/clients).
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    from test_tenants import CHURNER, RATE, GuestLikeClient, as_nobody  # noqa: E402
    os.chmod(workdir, 0o755)
    seconds = 4.0 if quick else 8.0
    for share in ("identity", "connection"):
        s = Serve(binary, ["--source", "test:1,rate=%d" % RATE, "--allow-test-source",
                           "--pool-size", "4096",
                           "--listen", "tcp:127.0.0.1:0,qemu,share=%s" % share], workdir)
        try:
            guest = GuestLikeClient(s.endpoints[0], seconds)
            start = time.monotonic()
            churner = subprocess.Popen(as_nobody([sys.executable, CHURNER, s.endpoints[0],
                                                  str(seconds)]), stdout=subprocess.PIPE)
            guest.start()
            guest.join(seconds + 15)
            out = churner.communicate(timeout=30)[0].decode().strip()
            rate = guest.rate_between(start + 2, start + seconds)
        finally:
            s.stop()
        results.append("guest-like client beside a churner of another uid, share=%s: %.0f B/s "
                       "of %d (%.0f %%; churner %s)" % (share, rate, RATE, 100 * rate / RATE, out))

    # 2. Memory per idle connection, with and without a delivered lead.
    for lead in (False, True):
        path = os.path.join(workdir, "idle-%d.sock" % lead)
        s = Serve(binary, ["--source", "test:4", "--allow-test-source", "--max-clients",
                           str(n + 100), "--listen", "unix:%s,max-conns=%d%s" % (path, n + 100,
                                                                 ",qemu" if lead else "")],
                  workdir)
        conns = []
        try:
            time.sleep(1.0)
            before = rss_kb(s.proc.pid)
            conns = idle_connections(path, n, lead)
            deadline = time.monotonic() + 30
            while s.stats()["clients"] < n and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)
            after = rss_kb(s.proc.pid)
        finally:
            for c in conns:
                c.close()
            s.stop()
        results.append("%d idle connections %s: RSS %.1f MB -> %.1f MB, %.2f kB each"
                       % (n, "that each received a 4 KiB lead" if lead else "(no lead)",
                          before / 1024, after / 1024, (after - before) / n))

    # 3. Request cost with many idle clients present.
    path = os.path.join(workdir, "idle-probe.sock")
    probe_path = os.path.join(workdir, "probe.sock")
    s = Serve(binary, ["--source", "test:5", "--allow-test-source", "--max-clients", str(n + 100),
                       "--listen", "unix:%s,qemu,max-conns=%d" % (path, n + 100),
                       "--listen", "unix:" + probe_path],
              workdir, listeners=2)
    conns = []
    try:
        seconds = "2" if quick else "5"
        alone = bench(binary, "unix:" + probe_path, "-c", "0", "--probe", "-t", seconds)
        conns = idle_connections(path, n, True)
        crowd = bench(binary, "unix:" + probe_path, "-c", "0", "--probe", "-t", seconds)
    finally:
        for c in conns:
            c.close()
        s.stop()
    results.append("probe `02 40` on a unix socket: p50 %.1f us, p99 %.1f us alone; p50 %.1f us, "
                   "p99 %.1f us with %d idle clients (each sent its lead) present"
                   % (alone["p50_us"], alone["p99_us"], crowd["p50_us"], crowd["p99_us"], n))
    return "tenants:\n  " + "\n  ".join(results)


def run_startup(binary, workdir, quick):
    times = []
    for i in range(5 if quick else 20):
        sock = os.path.join(workdir, "start%d.sock" % i)
        t0 = time.monotonic()
        proc = subprocess.Popen([binary, "serve", "--source", "test:5", "--allow-test-source",
                                 "--listen", "unix:" + sock],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = t0 + 5
            while time.monotonic() < deadline:
                try:
                    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    c.connect(sock)
                    c.close()
                    break
                except OSError:
                    time.sleep(0.0005)
            times.append(time.monotonic() - t0)
        finally:
            proc.terminate()
            proc.wait(10)
    return ("startup: exec to connectable unix socket: median %.1f ms, max %.1f ms (%d runs)"
            % (statistics.median(times) * 1000, max(times) * 1000, len(times)))


def run_operate(binary, workdir, quick):
    """Control socket and metrics cost while clients stream: what an admin's `rngmux reload`,
    `rngmux status` and a Prometheus scrape wait for on a busy daemon."""
    import urllib.request
    sock = os.path.join(workdir, "op.sock")
    control = os.path.join(workdir, "op.control")
    config = os.path.join(workdir, "op.toml")
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def write(level):
        with open(config, "w") as f:
            f.write('allow-test-source = true\nlog-level = "%s"\n[[source]]\nspec = "test:9"\n'
                    '[[listen]]\naddress = "unix:%s"\n' % (level, sock))

    write("info")
    s = Serve(binary, ["--config", config, "--control", control,
                       "--metrics", "tcp:127.0.0.1:%d" % port], workdir)
    runs = 5 if quick else 20
    clients = 200
    load = subprocess.Popen([binary, "bench", "unix:" + sock, "--json", "-c", str(clients),
                             "-d", "4", "-s", "255", "-t", str(4 + runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reload_ms, status_ms, scrape_ms, scrape_bytes = [], [], [], 0
    try:
        time.sleep(2)
        for i in range(runs):
            write("warning" if i % 2 == 0 else "info")
            t0 = time.monotonic()
            p = subprocess.run([binary, "reload", "--control", control], capture_output=True,
                               timeout=30)
            reload_ms.append((time.monotonic() - t0) * 1000)
            if p.returncode != 0:
                raise RuntimeError("rngmux reload failed: %s" % p.stderr.decode())
            t0 = time.monotonic()
            p = subprocess.run([binary, "status", "--json", "--control", control],
                               capture_output=True, timeout=30)
            status_ms.append((time.monotonic() - t0) * 1000)
            if p.returncode != 0:
                raise RuntimeError("rngmux status failed: %s" % p.stderr.decode())
            t0 = time.monotonic()
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
                scrape_bytes = len(r.read())
            scrape_ms.append((time.monotonic() - t0) * 1000)
        out, err = load.communicate(timeout=60)
        if load.returncode != 0:
            raise RuntimeError("rngmux bench failed: %s" % err.decode())
        streamed = json.loads(out)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
        s.stop()

    def summary(ms):
        return "median %.1f ms, max %.1f ms" % (statistics.median(ms), max(ms))

    return ("operate, %d clients streaming %.0f MB/s (unix, test source): rngmux reload %s; "
            "rngmux status --json %s; /metrics scrape %s, %d bytes (%d runs each; the CLI "
            "times include exec)" % (clients, streamed["bytes_per_second"] / 1e6,
                                     summary(reload_ms), summary(status_ms),
                                     summary(scrape_ms), scrape_bytes, runs))


def relay_pki():
    """The test PKI's directories in QEMU's layout: a server certificate for 127.0.0.1 and
    a client certificate (tests/integration/pki.py, reused through $RNGMUX_TEST_PKI)."""
    import pki
    p = pki.get()
    return p.dir(pki.RNGMUX_SERVER), p.dir(pki.RNGMUX_CLIENT)


def run_relay(binary, workdir, quick):
    """A -> B -> C over loopback TCP. The relays claim 8 bits/byte (an rngmux upstream), so
    bytes pass through unconditioned: what is measured is the hop, not SHA-256."""
    seconds = "3" if quick else "10"
    lines = []
    for mode in ("plain", "TLS"):
        server_tls = client_tls = ""
        if mode == "TLS":
            server_dir, client_dir = relay_pki()
            server_tls = ",tls-dir=" + server_dir
            client_tls = ",tls-dir=" + client_dir
        ports = []
        for _ in range(3):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                ports.append(probe.getsockname()[1])
        daemons = []
        try:
            upstream = None
            for name, port in zip("ABC", ports):
                source = (["--source", "test:7", "--allow-test-source"] if upstream is None else
                          ["--source", "egd:tcp:127.0.0.1:%d,entropy=8,requests=16%s"
                           % (upstream, client_tls)])
                daemons.append(Serve(binary, source + [
                    "--listen", "unix:" + os.path.join(workdir, "relay-%s.sock" % name),
                    "--listen", "tcp:127.0.0.1:%d%s" % (port, server_tls)], workdir, 2))
                upstream = port
            results = []
            for name in "ABC":
                ep = "unix:" + os.path.join(workdir, "relay-%s.sock" % name)
                bulk = bench(binary, ep, "-c", "1", "-d", "256", "-s", "255", "-t", seconds,
                             "--warmup", "1")
                probe = bench(binary, ep, "-c", "0", "--probe", "-t", seconds)
                results.append((name, bulk, probe))
        finally:
            for d in reversed(daemons):
                d.stop()
        lines.append("relay %s: " % mode + "; ".join(
            "%s %.1f MB/s, 02 40 p50 %.0f us p99 %.0f us" % (
                {"A": "direct", "B": "1 hop", "C": "2 hops"}[name],
                bulk["bytes_per_second"] / 1e6, probe["p50_us"], probe["p99_us"])
            for name, bulk, probe in results))
    return "\n".join(lines)


def run_guest(binary, workdir, quick):
    os.environ["RNGMUX_BINARY"] = binary
    import guest_throughput
    nbytes = 262144 if quick else 1048576
    rates = guest_throughput.measure(nbytes, 1 if quick else 5, workdir, out=sys.stderr)
    return guest_throughput.table(rates, nbytes)


BENCHMARKS = {"capacity": run_capacity, "latency": run_latency, "guests": run_guests,
              "floor": run_floor, "slow": run_slow,
              "scale": run_scale, "startup": run_startup, "tenants": run_tenants,
              "operate": run_operate, "relay": run_relay, "guest": run_guest}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "rngmux"))
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    ap.add_argument("--quick", action="store_true", help="shorter runs (a smoke test)")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        ap.error("%s is not an executable rngmux (build first)" % binary)
    workdir = tempfile.mkdtemp(prefix="rngmux-bench-")
    failed = False
    try:
        for name in args.only or list(BENCHMARKS):
            try:
                print(BENCHMARKS[name](binary, workdir, args.quick), flush=True)
            except (RuntimeError, subprocess.TimeoutExpired, AssertionError, OSError) as e:
                failed = True
                print("%s: FAILED: %s" % (name, e), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
