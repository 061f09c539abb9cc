"""Daemon CPU per MiB served, vhost-user against EGD, with the guest taken out.

    cd tests/integration
    RNGMUX_BINARY=../../build/rngmux python3 vhost_user_cpu.py [--buffers N]

A driver in this process plays the guest exactly as Linux's virtio-rng does: one 64-byte
request at a time. Over vhost-user it offers one 64-byte buffer, kicks, and waits for the
call eventfd (the FakeQemu of test_vhost_user_hostile.py); over EGD it sends `02 40` on a
unix socket and waits for the 64 bytes. The daemon serves `--source getrandom`; its
CPU time (user + system, all threads, /proc/PID/stat) is read before and after the
requests, and divided by the MiB served. The source thread refilling the pool is
included in both, so the difference is the per-request path.
"""

import argparse
import os
import socket
import sys
import tempfile
import time

from guest_throughput import daemon_cpu_seconds
from harness import Daemon
from test_vhost_user_hostile import FakeQemu


def run(kind, buffers, workdir):
    sock = os.path.join(workdir, "%s.sock" % kind)
    listen = "vhost-user:" + sock if kind == "vhost-user" else "unix:" + sock
    d = Daemon(workdir, ["--source", "getrandom", "--listen", listen], name="rngmux-" + kind)
    d.start()
    try:
        time.sleep(1.0)  # the pool's start-up fill is not part of the measurement
        if kind == "vhost-user":
            q = FakeQemu(sock)
            q.setup()
            read = lambda: q.read(64)
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock)

            def read():
                s.sendall(b"\x02\x40")
                got = b""
                while len(got) < 64:
                    got += s.recv(64 - len(got))
                return got
        read()
        cpu0, t0 = daemon_cpu_seconds(d.pid), time.monotonic()
        for _ in range(buffers):
            if len(read()) != 64:
                raise AssertionError("short read")
        cpu1, t1 = daemon_cpu_seconds(d.pid), time.monotonic()
        mib = buffers * 64 / (1 << 20)
        return (cpu1 - cpu0) * 1000 / mib, buffers / (t1 - t0)
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--buffers", type=int, default=32768, help="64-byte requests per kind")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="rngmux-vhost-cpu-")
    for r in range(args.rounds):
        for kind in ("egd", "vhost-user"):
            ms, rate = run(kind, args.buffers, workdir)
            print("round %d %-10s %7.1f ms CPU per MiB served, %6.0f requests/s"
                  % (r + 1, kind, ms, rate))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
