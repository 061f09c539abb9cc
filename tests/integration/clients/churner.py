"""Connects and closes in a loop from several threads: a tenant that tries to win a larger
share by churning connections (each one is owed a lead on a `qemu` endpoint).

Usage: churner.py ENDPOINT SECONDS [THREADS] [HOLD_MS] [MODE]
MODE: "churn" (default) or "nonblocking" (one connection sending 01 FF as fast as answered).
Prints "connections=N bytes=N" when done. Runs as whatever user it is started as (tests use
setpriv to run it as nobody).
"""

import socket
import sys
import threading
import time


def open_socket(ep):
    if ep.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(ep[len("unix:"):].split(",", 1)[0])
        return s
    host, _, port = ep[len("tcp:"):].split(",", 1)[0].rpartition(":")
    assert host in ("127.0.0.1", "localhost"), "loopback only"
    return socket.create_connection((host, int(port)))


def churn(ep, deadline, hold, totals, lock):
    while time.monotonic() < deadline:
        try:
            s = open_socket(ep)
        except OSError:
            time.sleep(hold)
            continue
        got = 0
        s.settimeout(hold)
        try:
            end = time.monotonic() + hold
            while time.monotonic() < end:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            pass
        s.close()
        with lock:
            totals[0] += 1
            totals[1] += got


def nonblocking(ep, deadline, totals):
    s = open_socket(ep)
    s.settimeout(2)
    totals[0] += 1
    while time.monotonic() < deadline:
        s.sendall(b"\x01\xff")
        length = s.recv(1)
        if not length:
            break
        want = length[0]
        while want:
            chunk = s.recv(want)
            if not chunk:
                return
            want -= len(chunk)
            totals[1] += len(chunk)
    s.close()


def main():
    ep, seconds = sys.argv[1], float(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    hold = (float(sys.argv[4]) if len(sys.argv) > 4 else 10) / 1000
    mode = sys.argv[5] if len(sys.argv) > 5 else "churn"
    deadline = time.monotonic() + seconds
    totals = [0, 0]
    lock = threading.Lock()
    if mode == "nonblocking":
        nonblocking(ep, deadline, totals)
    else:
        workers = [threading.Thread(target=churn, args=(ep, deadline, hold, totals, lock))
                   for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(seconds + 10)
    print("connections=%d bytes=%d" % (totals[0], totals[1]), flush=True)


if __name__ == "__main__":
    main()
