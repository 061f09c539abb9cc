"""Shared helpers for the rngmux integration tests (Python 3 stdlib only).

Every wait here is bounded by an explicit deadline and every loop by a deadline or
a count; only loopback TCP and unix sockets are used.
"""

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

# Absolute: daemons run with their test directory as the working directory.
BINARY = os.path.abspath(os.environ.get("RNGMUX_BINARY") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "rngmux"))

DEFAULT_TIMEOUT = 10.0

LISTEN_RE = re.compile(r"rngmux \w+: listening on (\S+)")
KEEP_LOGS_ROOT = os.environ.get("RNGMUX_TEST_LOGS") or "/tmp/rngmux-test-logs"
STATS_RE = re.compile(r"rngmux \w+: stats: (.*)$")
CLIENT_STATS_RE = re.compile(r"rngmux \w+: client stats: (peer=.*)$")

# A sanitizer report in a daemon's or a CLI run's stderr fails the test that ran it.
SANITIZER_REPORT_RE = re.compile(
    r"^(==\d+==ERROR: \w+Sanitizer|WARNING: ThreadSanitizer|SUMMARY: \w+Sanitizer"
    r"|.*runtime error: )", re.M)
# How long a daemon has to exit after SIGTERM at the end of a test (sanitizer builds are
# slow to shut down: LeakSanitizer walks the heap at exit).
STOP_TIMEOUT = float(os.environ.get("RNGMUX_STOP_TIMEOUT", "20"))

# Capabilities a test may lack on an odd host and then skip; RNGMUX_REQUIRE (a comma list,
# or "all") turns the skip into a failure. CI=true requires the ones a fresh Debian 12
# machine, run as root, always has.
CAPABILITIES = {
    "ipv6": "IPv6 loopback ([::1])",
    "unshare": "mount namespaces (unshare -m as root)",
    "port1024": "a free 127.0.0.1:1024 (the default endpoint)",
    "qwqng": "the QNG source (rngmux built with -DRNGMUX_WITH_QWQNG=ON)",
    "root": "root (to start rngmux as root and watch it drop to another user)",
    "netns": "network namespaces (`ip netns` as root, and the openssl CLI)",
}
CI_REQUIRED = ("ipv6", "unshare", "port1024", "root", "netns")


# --------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------

def parse_key_values(text):
    """'a=1 b=x' -> {'a': 1, 'b': 'x'}: the stats line and the guest's result line."""
    out = {}
    for tok in text.split():
        if "=" not in tok:
            continue
        k, v = tok.split("=", 1)
        try:
            out[k] = int(v)
        except ValueError:
            out[k] = v
    return out


def proc_status(pid):
    """/proc/PID/status as {field: value}."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    """Polls predicate() until it returns a truthy value or timeout expires.

    Returns the truthy value, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def required_capabilities():
    """The capability names (keys of CAPABILITIES) whose absence fails instead of skipping."""
    value = os.environ.get("RNGMUX_REQUIRE")
    if value is None:
        value = ",".join(CI_REQUIRED) if os.environ.get("CI", "").lower() == "true" else ""
    names = {v.strip() for v in value.split(",") if v.strip()}
    if "all" in names:
        names = set(CAPABILITIES)
    unknown = names - set(CAPABILITIES)
    if unknown:
        raise AssertionError("RNGMUX_REQUIRE names unknown capabilities %s (known: %s)"
                             % (sorted(unknown), ", ".join(sorted(CAPABILITIES))))
    return names


def built_with_ubsan_vptr_checks(binary=None):
    """True for the ASan/UBSan build, which checks dynamic types. (ThreadSanitizer's
    runtime carries UBSan's handlers too, unused: ASan's marks the build.)"""
    import mmap
    with open(binary or BINARY, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return (m.find(b"__ubsan_handle_dynamic_type_cache_miss") >= 0
                and m.find(b"__asan_init") >= 0)


def sanitizer_reports(text):
    """The lines of `text` that start a sanitizer report (ASan, LSan, UBSan, TSan)."""
    return [m.group(0) for m in SANITIZER_REPORT_RE.finditer(text)]


def run_cli(args, timeout=30, input_bytes=None, env=None):
    """Runs `rngmux ARGS...` to completion (bounded); returns CompletedProcess (bytes).
    A sanitizer report on its stderr raises AssertionError."""
    proc = subprocess.run([BINARY] + list(args), input=input_bytes, capture_output=True,
                          timeout=timeout, env=env)
    text = proc.stderr.decode("utf-8", "replace")
    if sanitizer_reports(text):
        raise AssertionError("sanitizer report from rngmux %s:\n%s"
                             % (" ".join(map(str, args)), text[-20000:]))
    return proc


def reference_stream(seed, n, timeout=60):
    """The deterministic byte stream `serve --source test:SEED` puts into its pool."""
    proc = run_cli(["read", "--source", "test:%s" % seed, "-n", str(n)], timeout=timeout)
    if proc.returncode != 0 or len(proc.stdout) != n:
        raise AssertionError("rngmux read --source test:%s -n %d failed: rc=%d, %d bytes, stderr=%r"
                             % (seed, n, proc.returncode, len(proc.stdout), proc.stderr[-500:]))
    return proc.stdout


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"%s"' % value


def render_config(settings, sources, listen, connect=()):
    """A configuration file's text. settings: top-level keys; sources: source specs;
    listen, connect: [{"address": ..., other endpoint keys...}]."""
    lines = ["%s = %s" % (k, toml_value(v)) for k, v in settings.items()]
    for spec in sources:
        lines += ["", "[[source]]", "spec = %s" % toml_value(spec)]
    for kind, endpoints in (("listen", listen), ("connect", connect)):
        for endpoint in endpoints:
            lines += ["", "[[%s]]" % kind]
            lines += ["%s = %s" % (k, toml_value(v)) for k, v in endpoint.items()]
    return "\n".join(lines) + "\n"


def free_port(host="127.0.0.1", kind=socket.SOCK_STREAM):
    """A port that was free a moment ago (for endpoints that rngmux connects to)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_tcp_port(host="127.0.0.1"):
    return free_port(host, socket.SOCK_STREAM)


def free_udp_port(host="127.0.0.1"):
    return free_port(host, socket.SOCK_DGRAM)


def free_udp_ports(n, host="127.0.0.1"):
    """n distinct UDP ports that were free a moment ago (held open together while picked,
    so two calls in a row cannot hand out the same one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    held = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for s in held:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def has_ipv6_loopback():
    """(bool, reason)."""
    if not socket.has_ipv6:
        return False, "Python was built without IPv6 support"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True, ""
    except OSError as e:
        return False, "cannot bind [::1]:0 on this host: %s" % e


def has_cpu_flag(flag):
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") and flag in line.split(":", 1)[1].split():
                    return True
    except OSError:
        pass
    return False


# --------------------------------------------------------------------------
# Endpoints and sockets
# --------------------------------------------------------------------------

def parse_endpoint(ep):
    """'tcp:H:P[,opts]' / 'udp:[v6]:P' / 'unix:PATH[,opts]' -> (family, address)."""
    if ep.startswith("unix:"):
        path = ep[len("unix:"):].split(",", 1)[0]
        return socket.AF_UNIX, path
    if ep.startswith(("tcp:", "udp:")):
        rest = ep[len("tcp:"):].split(",", 1)[0]
        m = re.fullmatch(r"\[([^\]]+)\]:(\d+)", rest)
        if m:
            return socket.AF_INET6, (m.group(1), int(m.group(2)))
        host, _, port = rest.rpartition(":")
        return socket.AF_INET, (host, int(port))
    raise ValueError("unsupported endpoint %r" % ep)


def connect(ep, timeout=DEFAULT_TIMEOUT, rcvbuf=None):
    family, addr = parse_endpoint(ep)
    if family != socket.AF_UNIX:
        host = addr[0]
        assert host in ("127.0.0.1", "::1", "localhost"), "tests only use loopback, got %r" % ep
    s = socket.socket(family, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(addr)
    return s


def recv_exact(sock, n, timeout=DEFAULT_TIMEOUT):
    """Reads exactly n bytes or raises AssertionError (EOF) / TimeoutError."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("recv_exact: got %d of %d bytes before timeout" % (len(buf), n))
        sock.settimeout(left)
        chunk = sock.recv(min(1 << 16, n - len(buf)))
        if not chunk:
            raise AssertionError("recv_exact: EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_for(sock, seconds, limit=1 << 24):
    """Collects whatever arrives during `seconds` (stops early on EOF). Returns (data, eof)."""
    buf = bytearray()
    deadline = time.monotonic() + seconds
    while len(buf) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(buf), False
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        try:
            chunk = sock.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError):
            return bytes(buf), True
        if not chunk:
            return bytes(buf), True
        buf += chunk
    return bytes(buf), False


def wait_closed(sock, timeout=DEFAULT_TIMEOUT, drain_limit=1 << 26):
    """Drains the socket until the peer closes it. Returns (closed, bytes_drained)."""
    drained = 0
    deadline = time.monotonic() + timeout
    while drained < drain_limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, drained
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        try:
            chunk = sock.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError):
            return True, drained
        if not chunk:
            return True, drained
        drained += len(chunk)
    return False, drained


def egd_read(n):
    assert 0 <= n <= 255
    return bytes([0x02, n])


def egd_pid(sock, timeout=DEFAULT_TIMEOUT):
    """Sends 04 and returns the PID text (str)."""
    sock.sendall(b"\x04")
    ln = recv_exact(sock, 1, timeout)[0]
    return recv_exact(sock, ln, timeout).decode("ascii")


class Streamer(threading.Thread):
    """A well-behaved client that keeps `depth` `02 FF` requests in flight until stopped.

    progress: list of (monotonic_time, total_bytes) samples, one per recv."""

    def __init__(self, ep, depth=8, size=255, max_seconds=60):
        super().__init__(daemon=True)
        self.ep = ep
        self.depth = depth
        self.size = size
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.total = 0
        self.error = None
        self.lock = threading.Lock()
        self.progress = []
        self.connected = threading.Event()

    def run(self):
        try:
            s = connect(self.ep)
            self.connected.set()
            deadline = time.monotonic() + self.max_seconds
            requested = 0
            with s:
                while not self.stop_event.is_set() and time.monotonic() < deadline:
                    while requested - self.total < self.depth * self.size:
                        s.sendall(egd_read(self.size))
                        requested += self.size
                    r, _, _ = select.select([s], [], [], 0.2)
                    if not r:
                        continue
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        raise AssertionError("streamer %s: unexpected EOF after %d bytes"
                                             % (self.ep, self.total))
                    with self.lock:
                        self.total += len(chunk)
                        self.progress.append((time.monotonic(), self.total))
                    if self.total > requested:
                        raise AssertionError("streamer %s: got %d bytes but asked only %d"
                                             % (self.ep, self.total, requested))
        except Exception as e:  # reported by the test through .error
            self.error = e
        finally:
            self.connected.set()

    def bytes_now(self):
        with self.lock:
            return self.total

    def stop(self, timeout=10):
        self.stop_event.set()
        self.join(timeout)
        return not self.is_alive()


# --------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------

class Collector(threading.Thread):
    """An EGD client keeping 8 `02 FF` in flight and every byte it gets; bounded in time.
    times: (monotonic time, total bytes) after every receive."""

    def __init__(self, ep, max_seconds=90):
        super().__init__(daemon=True)
        self.ep = ep
        self.data = bytearray()
        self.times = []
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.error = None

    def run(self):
        try:
            with connect(self.ep) as s:
                asked = 0
                while not self.stop_event.is_set() and time.monotonic() < self.deadline:
                    while asked - len(self.data) < 8 * 255:
                        s.sendall(egd_read(255))
                        asked += 255
                    if select.select([s], [], [], 0.2)[0]:
                        chunk = s.recv(65536)
                        if not chunk:
                            raise AssertionError("EOF from %s" % self.ep)
                        with self.lock:
                            self.data += chunk
                            self.times.append((time.monotonic(), len(self.data)))
        except Exception as e:  # reported by the test
            self.error = e

    def size(self):
        with self.lock:
            return len(self.data)

    def stop(self):
        self.stop_event.set()
        self.join(10)
        return bytes(self.data)

    def longest_gap(self, since):
        """The longest time without a byte after `since` (monotonic), until now."""
        with self.lock:
            stamps = [t for t, _ in self.times if t >= since]
        points = [since] + stamps + [time.monotonic()]
        return max(b - a for a, b in zip(points, points[1:]))


class Daemon:
    """One `rngmux serve ...` process with its stderr captured in a file."""

    def __init__(self, workdir, args, name="rngmux", wrapper=()):
        self.workdir = workdir
        self.args = list(args)
        self.name = name
        self.wrapper = list(wrapper)  # a command that execs the rest (same pid)
        self.log_path = os.path.join(workdir, "%s.stderr.log" % name)
        self.out_path = os.path.join(workdir, "%s.stdout.log" % name)
        self.proc = None
        self.endpoints = []
        self.returncode = None

    # -- process control ----------------------------------------------------
    def start(self, expect_listen=None, timeout=DEFAULT_TIMEOUT, wait_for=None):
        """Starts the daemon. Waits (bounded) for `expect_listen` 'listening on' lines
        (default: the number of --listen args) and returns the actual endpoints."""
        if expect_listen is None:
            expect_listen = sum(1 for a in self.args if a == "--listen")
        self._log = open(self.log_path, "wb")
        self._out = open(self.out_path, "wb")
        # Daemons of parallel tests must not share the default control socket.
        if not any(a in ("--control", "--config") for a in self.args):
            self.args += ["--control", "none"]
        self.proc = subprocess.Popen(self.wrapper + [BINARY, "serve"] + self.args,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._log, cwd=self.workdir)
        if expect_listen:
            got = wait_until(lambda: len(self.listening()) >= expect_listen or self.exited(),
                             timeout)
            eps = self.listening()
            if len(eps) < expect_listen:
                raise AssertionError("%s: expected %d 'listening on' lines within %.0fs, got %r "
                                     "(exited=%r)\n%s" % (self.name, expect_listen, timeout, eps,
                                                         self.proc.poll(), self.log_text()))
            self.endpoints = eps
        if wait_for is not None:
            self.wait_log(wait_for, timeout)
        if self.exited():
            raise AssertionError("%s exited early with %r\n%s"
                                 % (self.name, self.proc.returncode, self.log_text()))
        return self.endpoints

    @property
    def pid(self):
        return self.proc.pid

    def exited(self):
        return self.proc is not None and self.proc.poll() is not None

    def wait_exit(self, timeout=DEFAULT_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=DEFAULT_TIMEOUT, sig=signal.SIGTERM, expect_rc=0):
        """Sends SIGTERM (default) and asserts a clean exit with expect_rc."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self._close_files()
            raise AssertionError("%s did not exit within %.0fs of %s\n%s"
                                 % (self.name, timeout, signal.Signals(sig).name, self.log_text()))
        self.returncode = rc
        self._close_files()
        if expect_rc is not None and rc != expect_rc:
            raise AssertionError("%s exited with %r after %s, expected %r\n%s"
                                 % (self.name, rc, signal.Signals(sig).name, expect_rc,
                                    self.log_text()))
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._close_files()

    def _close_files(self):
        for f in (getattr(self, "_log", None), getattr(self, "_out", None)):
            if f is not None and not f.closed:
                f.close()

    # -- logs -----------------------------------------------------------------
    @staticmethod
    def _read_text(path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_text(self):
        return self._read_text(self.log_path)

    def stdout_text(self):
        return self._read_text(self.out_path)

    def log_lines(self):
        """The complete lines of the log: a last line still being written (no "\\n"
        yet) is left out, so a match never sees half a line."""
        text = self.log_text()
        return text[:text.rfind("\n") + 1].splitlines()

    def listening(self):
        eps = []
        for line in self.log_lines():
            m = LISTEN_RE.search(line)
            if m:
                eps.append(m.group(1))
        return eps

    def count_log(self, pattern):
        rx = re.compile(pattern)
        return sum(1 for line in self.log_lines() if rx.search(line))

    def wait_log(self, pattern, timeout=DEFAULT_TIMEOUT, count=1):
        """Waits until `count` log lines match `pattern`; returns the last match."""
        rx = re.compile(pattern)

        def check():
            matches = [m for m in (rx.search(line) for line in self.log_lines()) if m]
            return matches[count - 1] if len(matches) >= count else None

        m = wait_until(check, timeout)
        if m is None:
            raise AssertionError("%s: no %d log line(s) matching %r within %.0fs\n%s"
                                 % (self.name, count, pattern, timeout, self.log_text()))
        return m

    def stats(self, timeout=DEFAULT_TIMEOUT):
        """SIGUSR1 -> parses the new `stats: k=v ...` line into a dict (ints when numeric)."""
        before = self.count_log(STATS_RE.pattern)
        self.proc.send_signal(signal.SIGUSR1)
        m = self.wait_log(STATS_RE.pattern, timeout, count=before + 1)
        out = parse_key_values(m.group(1))
        out["client_list"] = self._client_stats_before(before + 1)
        for key in ("source", "clients", "served_bytes", "bad_requests", "queue_overflows",
                    "connections_total"):
            if key not in out:
                raise AssertionError("%s: stats line lacks %r: %r" % (self.name, key, m.group(0)))
        return out


    def _client_stats_before(self, n):
        """The `client stats: peer=...` lines logged just before the n-th summary line."""
        lines = self.log_lines()
        seen = 0
        end = None
        for i, line in enumerate(lines):
            if STATS_RE.search(line):
                seen += 1
                if seen == n:
                    end = i
                    break
        clients = []
        for line in reversed(lines[:end] if end is not None else []):
            if STATS_RE.search(line):
                break
            m = CLIENT_STATS_RE.search(line)
            if m:
                clients.append(parse_key_values(m.group(1)))
        clients.reverse()
        return clients


def _only_files_and_dirs(directory, names):
    """copytree filter: skips sockets and FIFOs (logs are regular files)."""
    skip = []
    for name in names:
        path = os.path.join(directory, name)
        if not (os.path.isfile(path) or os.path.isdir(path)):
            skip.append(name)
    return skip


class RngmuxTestCase(unittest.TestCase):
    """Base class: a temp dir per test, daemons stopped on cleanup, logs dumped on failure."""

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        self.tmp = tempfile.mkdtemp(prefix="rngmux-it-")
        self.daemons = []
        # Runs after tearDown and the test's own cleanups, inside the test: a daemon that
        # does not stop cleanly or logged a sanitizer report fails the test.
        self.addCleanup(self._stop_daemons_and_check_logs)
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            failed = len(result.failures) + len(result.errors) > before
            for d in self.daemons:
                d.kill()
            if failed:
                for d in self.daemons:
                    sys.stderr.write("\n----- %s (%s) args=%r stderr log -----\n%s"
                                     % (d.name, self.id(), d.args, d.log_text()[-20000:]))
                    out = d.stdout_text()
                    if out:
                        sys.stderr.write("----- %s stdout -----\n%s" % (d.name, out[-4000:]))
                    sys.stderr.write("----- end of %s -----\n" % d.name)
                self._keep_logs()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _stop_daemons_and_check_logs(self):
        """SIGTERM to every daemon still running, then a bounded wait for its exit (so
        LeakSanitizer runs and flushes its report); then every daemon's log is searched
        for sanitizer reports. A daemon that must be killed, or any report, fails."""
        problems = []
        for d in self.daemons:
            if d.proc is None:
                continue
            if d.proc.poll() is None:
                d.proc.send_signal(signal.SIGTERM)
                try:
                    d.returncode = d.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    d.kill()
                    problems.append("%s did not exit within %.0fs of SIGTERM at the end of the "
                                    "test" % (d.name, STOP_TIMEOUT))
            d._close_files()
            reports = sanitizer_reports(d.log_text())
            if reports:
                problems.append("%s logged %d sanitizer report(s), first: %s"
                                % (d.name, len(reports), reports[0]))
        if problems:
            self.fail("\n".join(problems))

    def note_missing(self, capability, why=""):
        """For a test that covers less without `capability` (e.g. IPv4 only): fails when
        RNGMUX_REQUIRE/CI requires it, else says loudly what is left out."""
        what = CAPABILITIES[capability]
        if capability in required_capabilities():
            self.fail("this host lacks %s, which RNGMUX_REQUIRE or CI=true requires (%s)"
                      % (what, why))
        sys.stderr.write("\n*** %s: lacks %s (%s); that part is left out ***\n"
                         % (self.id(), what, why))

    def skip_unless(self, capability, ok, why=""):
        """Skips the test when `ok` is false, unless RNGMUX_REQUIRE (or CI=true) says this
        host must have `capability` (a key of CAPABILITIES): then the test fails."""
        if ok:
            return
        what = CAPABILITIES[capability]
        if capability in required_capabilities():
            self.fail("this host lacks %s, which RNGMUX_REQUIRE or CI=true requires (%s)" % (what, why))
        sys.stderr.write("\n*** SKIPPING %s: lacks %s (%s) ***\n" % (self.id(), what, why))
        self.skipTest("[%s] lacks %s (%s)" % (capability, what, why))

    def _keep_logs(self):
        """A failed test's directory (daemon logs, guest consoles, QEMU logs) is copied to
        $RNGMUX_TEST_LOGS/<test id>/ (default /tmp/rngmux-test-logs) before it is removed."""
        dest = os.path.join(KEEP_LOGS_ROOT, self.id())
        try:
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(self.tmp, dest, ignore=_only_files_and_dirs,
                            ignore_dangling_symlinks=True)
            sys.stderr.write("----- logs of %s kept in %s -----\n" % (self.id(), dest))
        except OSError as e:
            sys.stderr.write("----- could not keep the logs of %s: %s -----\n" % (self.id(), e))

    def setUp(self):
        if not os.access(BINARY, os.X_OK):
            self.fail("rngmux binary %r is missing or not executable (set RNGMUX_BINARY)" % BINARY)

    def start_daemon(self, args, name=None, wrapper=(), **kw):
        d = Daemon(self.tmp, args, name=name or "rngmux%d" % len(self.daemons), wrapper=wrapper)
        self.daemons.append(d)
        d.start(**kw)
        return d

    def path(self, name):
        return os.path.join(self.tmp, name)

    def wait_stats(self, d, pred, what, timeout=20):
        """Polls d.stats() until pred(stats) holds (bounded); returns those stats."""
        last = {}

        def check():
            last.clear()
            last.update(d.stats())
            return pred(last)
        self.assertTrue(wait_until(check, timeout, interval=0.2),
                        "%s within %ds; last stats %r" % (what, timeout, last))
        return dict(last)

    def assert_each_byte_served_once(self, index, served):
        """served: {client name: bytes}. Every client's bytes are located in the reference
        stream (index: a ReferenceIndex) and no piece of it went to two clients."""
        named = {}
        total = in_runs = claimed = 0
        for name, data in served.items():
            ivs, a, b = index.claims(data)
            named[name] = ivs
            total += len(data)
            in_runs += a
            claimed += b
        problems = check_disjoint(named)
        sys.stderr.write("\n%d bytes served to %d clients: %d located in the reference, "
                         "%d covered by the duplicate check\n"
                         % (total, len(served), in_runs, claimed))
        self.assertEqual(problems, [], "bytes served more than once:\n" + "\n".join(problems))
        # Bytes not found in the reference at all: from pieces shorter than ~11 bytes, or
        # bytes that are not from the pool (or from beyond the reference).
        self.assertGreaterEqual(in_runs / total, 0.95,
                                "only %d of %d served bytes located in the reference stream"
                                % (in_runs, total))
        self.assertGreaterEqual(claimed / total, 0.85,
                                "duplicate check covers only %d of %d bytes" % (claimed, total))

    def assert_from_reference(self, data, ref, what):
        """Samples of `data` (start, middle, end) are pieces of the reference stream."""
        self.assertGreaterEqual(len(data), 32)
        for off in (0, len(data) // 2, len(data) - 32):
            self.assertNotEqual(ref.find(data[off:off + 32]), -1,
                                "%s: bytes at %d are not from the pool stream" % (what, off))


# --------------------------------------------------------------------------
# Integrity: are served bytes pieces of the reference stream, each served once?
# --------------------------------------------------------------------------

def _match_forward(data, i, ref, r):
    """Length of the common run data[i:] vs ref[r:]."""
    n = 0
    limit = min(len(data) - i, len(ref) - r)
    step = 256
    while n < limit:
        k = min(step, limit - n)
        if data[i + n:i + n + k] == ref[r + n:r + n + k]:
            n += k
            continue
        if k == 1:
            break
        step = max(1, k // 8)
    return n


class ReferenceIndex:
    """Locates served bytes inside the reference stream.

    Soundness argument:
      * The reference is indexed by 8-byte windows at every STRIDE-th offset. A random
        8-byte window matching a wrong place of a multi-MiB random reference has
        probability ~len(ref)/2^64, so an anchor found here is where the bytes came from.
      * From an anchor, a run is extended left and right while data and reference agree.
        At a true piece boundary the next byte of another piece agrees by chance with
        probability 1/256, k bytes with 256^-k, so runs can overshoot by a few bytes.
        We therefore CLAIM only the core of every run, without EDGE bytes at each end:
        a byte is wrongly claimed only after >= EDGE+1 accidental matches (256^-4).
      * Claimed reference intervals from all clients must be pairwise disjoint: a byte
        served twice (to one or two clients) makes two claims overlap.
      * Bytes in pieces too short to contain an indexed window (< 8 + STRIDE - 1) are
        reported as unmatched; the caller bounds their share, so almost every served
        byte is covered by the duplicate check.
    """

    W = 8
    STRIDE = 4
    EDGE = 3

    def __init__(self, ref):
        self.ref = ref
        self.index = {}
        self.ambiguous = 0
        idx = self.index
        W = self.W
        for o in range(0, len(ref) - W + 1, self.STRIDE):
            k = ref[o:o + W]
            if k in idx:
                idx[k] = -1  # repeated window in the reference: never use it as an anchor
                self.ambiguous += 1
            else:
                idx[k] = o

    def runs(self, data):
        """Maximal runs [(data_start, data_end, ref_start)] of data found in the reference."""
        ref, idx, W = self.ref, self.index, self.W
        out = []
        y = 0
        n = len(data)
        floor = 0  # do not extend a run left into the previous run's start
        while y + W <= n:
            o = idx.get(bytes(data[y:y + W]))
            if o is None or o < 0:
                y += 1
                continue
            delta = o - y
            s = y
            while s > floor and s + delta > 0 and data[s - 1] == ref[s - 1 + delta]:
                s -= 1
            e = y + W + _match_forward(data, y + W, ref, o + W)
            out.append((s, e, s + delta))
            floor = s + 1
            y = e
        return out

    def claims(self, data):
        """(claimed ref intervals [(start, end, data_pos)], bytes_in_runs, bytes_claimed)."""
        intervals = []
        in_runs = 0
        claimed = 0
        prev_end = 0
        for s, e, r in self.runs(data):
            # bytes of this run not already counted as part of the previous run
            in_runs += e - max(s, prev_end)
            prev_end = max(prev_end, e)
            a, b = r + self.EDGE, r + (e - s) - self.EDGE
            if b > a:
                intervals.append((a, b, s + self.EDGE))
                claimed += b - a
        return intervals, in_runs, claimed


def check_disjoint(named_intervals):
    """named_intervals: {name: [(start, end, data_pos)]}. Returns a list of overlap descriptions."""
    allv = sorted((a, b, name, pos) for name, ivs in named_intervals.items() for a, b, pos in ivs)
    problems = []
    best_end, best = -1, None
    for a, b, name, pos in allv:
        if a < best_end:
            problems.append("reference bytes [%d,%d) served to %s@%d overlap [%d,%d) served to %s@%d"
                            % (a, min(b, best_end), name, pos, best[0], best[1], best[2], best[3]))
            if len(problems) >= 20:
                break
        if b > best_end:
            best_end, best = b, (a, b, name, pos)
    return problems
