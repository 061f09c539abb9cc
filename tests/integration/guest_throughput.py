"""Guest /dev/hwrng throughput: rngmux (rng-egd over TCP and unix, and vhost-user-rng-pci)
against QEMU's own rng-random (/dev/urandom) and rng-builtin, in the same run, on the same
machine; and the daemon's CPU time per MiB served, rng-egd against vhost-user. With --tls,
rng-egd over TLS too (QEMU's tls-creds-x509 with pki.py's certificates) against plain TCP.

    cd tests/integration
    RNGMUX_BINARY=../../build/rngmux python3 guest_throughput.py [--bytes N] [--rounds R] [--tls]

Each round boots one guest per backend (in rotating order, so slow drift of the machine
does not favour one backend), each reading N bytes from /dev/hwrng in 4 KiB reads. The
table shows the median bytes/s seen inside the guest and its ratio to rng-random. rngmux
serves `--source getrandom`, the same kernel CSPRNG behind QEMU's rng-random, so the
comparison is about the path, not the source. Boots under TCG like the test suite.
"""

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile

from guest import VHOST_USER, Guest, ensure_guest
from harness import Daemon, free_tcp_port, sanitizer_reports

BACKENDS = ("rngmux-tcp", "rngmux-unix", "rngmux-vhost-user", "rng-random", "rng-builtin")
# rngmux streaming raw endpoints: they answer no request (QEMU's headers are read and
# dropped) and only keep the socket full, so these are rng-egd's own cost in QEMU with the
# daemon's request handling taken out. A diagnostic, not a way to run it.
RAW_FLOOR = ("rngmux-tcp-raw", "rngmux-unix-raw")
# rng-egd over TLS (pki.py's certificates, mutual authentication), for the cost of TLS
# against rngmux-tcp in the same run: QEMU as TLS client (rngmux listens), and QEMU as TLS
# server (rngmux connects).
TLS_BACKENDS = ("rngmux-tcp-tls", "rngmux-tcp-tls-qemu-listens")
READ_BLOCK = 4096
BOOT_TIMEOUT = 90


def boot_once(backend, nbytes, workdir, tag, source="getrandom"):
    """Boots one guest reading `nbytes` through `backend` (rngmux serving `source`);
    returns its result dict."""
    logdir = os.path.join(workdir, "%s-%s" % (backend, tag))
    extra = "rngbs=%d rngtries=1 rngsync=0" % READ_BLOCK
    daemon = None
    try:
        if backend in TLS_BACKENDS:
            guest, daemon = start_tls(backend, nbytes, logdir, extra, source)
        elif backend.startswith("rngmux-"):
            mode = "raw" if backend in RAW_FLOOR else "qemu"
            guest_backend = "egd"
            if backend == "rngmux-vhost-user":
                sock = os.path.join(logdir, "vhost.sock")
                listen, chardev = "vhost-user:" + sock, "socket,id=c0,path=" + sock
                guest_backend = VHOST_USER
            elif backend.startswith("rngmux-tcp"):
                listen = "tcp:127.0.0.1:0," + mode
                chardev = "socket,id=c0,host=127.0.0.1,port=%s"
            else:
                sock = os.path.join(logdir, "rng.sock")
                listen, chardev = "unix:%s,%s" % (sock, mode), "socket,id=c0,path=" + sock
            os.makedirs(logdir, exist_ok=True)
            args = ["--source", source, "--listen", listen]
            if source.startswith("test:"):
                args.append("--allow-test-source")
            daemon = Daemon(logdir, args, name="rngmux")
            endpoint = daemon.start()[0]
            if backend.startswith("rngmux-tcp"):
                chardev = chardev % endpoint.rsplit(":", 1)[1]
            guest = Guest(chardev, nbytes=nbytes, append_extra=extra, name=backend, logdir=logdir,
                          backend=guest_backend)
        else:
            guest = Guest(None, nbytes=nbytes, append_extra=extra, name=backend,
                          backend=backend.split("-", 1)[1], logdir=logdir)
        with guest:
            guest.start()
            result = guest.wait_result(BOOT_TIMEOUT)
        if daemon is not None:
            result["daemon_cpu_s"] = daemon_cpu_seconds(daemon.pid)
            result["served_bytes"] = daemon.stats()["served_bytes"]
        if result.get("bytes") != nbytes:
            raise AssertionError("%s: the guest read %r of %d bytes: %s"
                                 % (backend, result.get("bytes"), nbytes, result["line"]))
        return result
    finally:
        if daemon is not None:
            daemon.stop()
            reports = sanitizer_reports(daemon.log_text())
            if reports:
                raise AssertionError("%s: sanitizer report in the daemon's log: %s\n%s"
                                     % (backend, reports[0], daemon.log_text()[-20000:]))


def start_tls(backend, nbytes, logdir, extra, source):
    """For a TLS backend: starts rngmux (listening, or connecting to QEMU's TLS server
    socket) and returns (guest not yet started, daemon)."""
    import pki
    p = pki.get()
    os.makedirs(logdir, exist_ok=True)
    args = ["--source", source] + (["--allow-test-source"] if source.startswith("test:") else [])
    if backend == "rngmux-tcp-tls":
        daemon = Daemon(logdir, args + ["--listen", "tcp:127.0.0.1:0,qemu,tls-dir=%s"
                                        % p.dir(pki.RNGMUX_SERVER)], name="rngmux")
        port = int(re.match(r"tcp:.*:(\d+)(?:,|$)", daemon.start()[0]).group(1))
        chardev = ["-object", "tls-creds-x509,id=tls0,dir=%s,endpoint=client"
                   % p.dir(pki.QEMU_CLIENT),
                   "-chardev", "socket,id=c0,host=127.0.0.1,port=%d,reconnect=1,tls-creds=tls0"
                   % port]
    else:
        port = free_tcp_port()
        chardev = ["-object", "tls-creds-x509,id=tls0,dir=%s,endpoint=server,verify-peer=on"
                   % p.dir(pki.QEMU_SERVER),
                   "-chardev", "socket,id=c0,host=127.0.0.1,port=%d,server=on,wait=off,"
                   "tls-creds=tls0" % port]
        # rngmux keeps retrying until QEMU listens; the lead un-sticks a request made before
        daemon = Daemon(logdir, args + ["--connect", "tcp:127.0.0.1:%d,qemu,tls-dir=%s"
                                        % (port, p.dir(pki.RNGMUX_CLIENT))], name="rngmux")
        daemon.start(expect_listen=0)
    guest = Guest(chardev, nbytes=nbytes, append_extra=extra, name=backend, logdir=logdir)
    return guest, daemon


def daemon_cpu_seconds(pid):
    """User + system CPU time of a process so far (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CPU = {}  # backend -> [daemon CPU ms per MiB served, ...]


def measure(nbytes, rounds, workdir, out=sys.stdout, backends=BACKENDS, source="getrandom",
            results=None):
    """Runs `rounds` rounds over `backends`; returns {backend: [bytes/s, ...]}. rngmux
    serves `source`; `results`, if given, collects {backend: [result dict, ...]}."""
    ensure_guest()
    rates = {b: [] for b in backends}
    for r in range(rounds):
        order = backends[r % len(backends):] + backends[:r % len(backends)]
        for backend in order:
            result = boot_once(backend, nbytes, workdir, "round%d" % r, source=source)
            if results is not None:
                results.setdefault(backend, []).append(result)
            rates[backend].append(result["bytes_per_s"])
            if "daemon_cpu_s" in result:
                CPU.setdefault(backend, []).append(
                    result["daemon_cpu_s"] * 1000 / (result["served_bytes"] / (1 << 20)))
            out.write("  round %d %-12s %8.0f kB/s\n" % (r + 1, backend,
                                                         result["bytes_per_s"] / 1000))
            out.flush()
    return rates


def table(rates, nbytes):
    base = statistics.median(rates["rng-random"])
    plain = statistics.median(rates["rngmux-tcp"]) if "rngmux-tcp" in rates else None
    lines = ["guest /dev/hwrng throughput, %d bytes in %d-byte reads, TCG, median of %d:"
             % (nbytes, READ_BLOCK, len(rates["rng-random"]))]
    for backend in rates:
        med = statistics.median(rates[backend])
        lines.append("  %-15s %8.0f kB/s  %.2fx rng-random  (runs: %s)"
                     % (backend, med / 1000, med / base,
                        " ".join("%.0f" % (x / 1000) for x in rates[backend])))
    if "rng-builtin" in rates:
        builtin = statistics.median(rates["rng-builtin"])
        for backend in rates:
            if backend.startswith("rngmux-"):
                lines.append("  %-15s %.2fx rng-builtin" % (
                    backend, statistics.median(rates[backend]) / builtin))
    for backend in TLS_BACKENDS:
        if backend in rates and plain:
            lines.append("  %-15s %.2fx rngmux-tcp (TLS against plain TCP, same run)"
                         % (backend, statistics.median(rates[backend]) / plain))
    for backend, values in CPU.items():
        lines.append("  daemon CPU, %-15s %6.1f ms per MiB served (runs: %s; whole process, "
                     "source thread included)" % (backend, statistics.median(values),
                                                  " ".join("%.1f" % v for v in values)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bytes", type=int, default=1 << 20, help="bytes each guest reads")
    ap.add_argument("--rounds", type=int, default=5, help="boots per backend")
    ap.add_argument("--tls", action="store_true",
                    help="also boot against rngmux over TLS (QEMU as TLS client and as TLS "
                    "server, mutual authentication): TLS's cost against rngmux-tcp")
    ap.add_argument("--raw-floor", action="store_true",
                    help="also boot against raw rngmux TCP and unix endpoints (answer no request): "
                    "what rng-egd costs inside QEMU alone")
    args = ap.parse_args()
    if args.bytes <= 0 or args.bytes % READ_BLOCK:
        ap.error("--bytes must be a positive multiple of %d" % READ_BLOCK)
    if not 1 <= args.rounds <= 50:
        ap.error("--rounds must be between 1 and 50")
    workdir = tempfile.mkdtemp(prefix="rngmux-guest-throughput-")
    try:
        rates = measure(args.bytes, args.rounds, workdir,
                        backends=BACKENDS + (RAW_FLOOR if args.raw_floor else ())
                        + (TLS_BACKENDS if args.tls else ()))
    except AssertionError as e:
        sys.stderr.write("%s\nlogs kept in %s\n" % (e, workdir))
        return 1
    print(table(rates, args.bytes))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
