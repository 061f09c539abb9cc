"""Fair sharing of a slow source, seen from real clients.

A strict client (QEMU's rng-egd without a lead: one `02 40` in flight, the next
sent as soon as the 64 bytes arrive) must get about as much as a client that
pipelines many `02 FF`, not only what is left between its requests.
"""

import socket
import threading
import time

from harness import RngmuxTestCase, connect, egd_read

RATE = 10000  # bytes per second from the test source: a strict client has 12 ms a round trip
SECONDS = 6.0
STALL_SECONDS = 2.0


class StrictClient(threading.Thread):
    def __init__(self, ep, deadline):
        super().__init__(daemon=True)
        self.ep, self.deadline, self.received, self.error = ep, deadline, 0, None

    def run(self):
        try:
            with connect(self.ep) as s:
                s.settimeout(STALL_SECONDS)
                while time.monotonic() < self.deadline:
                    s.sendall(egd_read(64))
                    got = 0
                    while got < 64:
                        chunk = s.recv(64 - got)
                        if not chunk:
                            raise ConnectionError("daemon closed the connection")
                        got += len(chunk)
                    self.received += 64
        except socket.timeout:
            # 64 bytes of a 10 kB/s source, shared by two clients, are due within ms: a
            # request unanswered for 2 s (also the last one, sent before the deadline)
            # is a stall, not a slow round trip.
            self.error = AssertionError("strict client stalled: no reply to 02 40 within %.0f s "
                                        "after %d bytes" % (STALL_SECONDS, self.received))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


class PipeliningClient(threading.Thread):
    def __init__(self, ep, deadline, depth=64):
        super().__init__(daemon=True)
        self.ep, self.deadline, self.depth, self.received, self.error = ep, deadline, depth, 0, None

    def run(self):
        try:
            with connect(self.ep) as s:
                s.settimeout(0.2)
                s.sendall(egd_read(255) * self.depth)
                asked = 255 * self.depth
                while time.monotonic() < self.deadline:
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        continue
                    if not chunk:
                        raise ConnectionError("daemon closed the connection")
                    self.received += len(chunk)
                    while asked - self.received < 255 * self.depth // 2:
                        s.sendall(egd_read(255))
                        asked += 255
        except Exception as e:  # noqa: BLE001
            self.error = e


class FairnessTest(RngmuxTestCase):
    def test_strict_client_is_not_starved_by_a_pipelining_one(self):
        d = self.start_daemon(["--source", "test:1,rate=%d" % RATE, "--allow-test-source",
                               "--pool-size", "4096", "--listen", "tcp:127.0.0.1:0,share=connection"])
        # Both clients are one identity (this test's uid): share=connection gives each
        # connection its own share, which is what this case is about. Between identities
        # the same holds by default (test_tenants).
        # Let the start-up backlog (the pool filling before anyone asks) drain first.
        time.sleep(0.5)
        deadline = time.monotonic() + SECONDS
        greedy = PipeliningClient(d.endpoints[0], deadline)
        strict = StrictClient(d.endpoints[0], deadline)
        greedy.start()
        strict.start()
        greedy.join(SECONDS + 10)
        strict.join(SECONDS + 10)
        self.assertFalse(greedy.is_alive() or strict.is_alive(), "a client hung")
        self.assertIsNone(greedy.error, repr(greedy.error))
        self.assertIsNone(strict.error, repr(strict.error))
        total = greedy.received + strict.received
        print("\nstrict %d B, pipelining %d B in %.0f s (source %d B/s)"
              % (strict.received, greedy.received, SECONDS, RATE))
        self.assertGreater(total, RATE * SECONDS * 0.5, "the source's output did not reach clients")
        # An equal split is 50%; before reserves for briefly idle clients it was about 1.5%.
        self.assertGreater(strict.received / total, 0.35,
                           "strict client got %d of %d bytes" % (strict.received, total))


if __name__ == "__main__":
    import unittest

    unittest.main()
