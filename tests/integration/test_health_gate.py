"""The health gate seen from a client: bytes from a block that failed SP 800-90B
RCT or APT never reach anyone, and everything else arrives whole and in order.

The source is a FIFO that the test writes: good random blocks with stuck and
biased stretches between them. With block=512 the health windows (W = 512)
coincide with blocks, so the test can predict exactly which blocks the daemon
must serve: every block that is clean and not consumed by a start-up test.
"""

import os
import threading
import time

from harness import RngmuxTestCase, connect, recv_for

BLOCK = 512
RCT_CUTOFF = 5  # 8 bits/byte at alpha 2^-30
STARTUP_BLOCKS = 1024 // BLOCK


def has_long_run(block, length=RCT_CUTOFF):
    run = 1
    for i in range(1, len(block)):
        run = run + 1 if block[i] == block[i - 1] else 1
        if run >= length:
            return True
    return False


def good_blocks(n):
    out = []
    while len(out) < n:
        b = os.urandom(BLOCK)
        if not has_long_run(b) and b[0] != 0x42:
            out.append(b)
    return out


def stuck_bytes(value, n):
    return bytes([value]) * n


def biased_block():
    # The window's first sample, 0x42, fills half the window: APT fails (cutoff 16 of 512).
    noise = bytes(x if x != 0x42 else 0x43 for x in os.urandom(BLOCK // 2))
    return bytes(b for pair in zip([0x42] * (BLOCK // 2), noise) for b in pair)


class HealthGateTest(RngmuxTestCase):
    def test_failed_blocks_never_reach_a_client(self):
        # The stream, as blocks. A stuck run of 600 bytes spills 88 bytes into the
        # next block, which must fail too (during its start-up test).
        stream = b"".join(good_blocks(24))
        stream += stuck_bytes(0xAA, 600) + os.urandom(BLOCK - 88)
        stream += b"".join(good_blocks(24))
        stream += biased_block() + biased_block()
        stream += b"".join(good_blocks(24))
        stream += stuck_bytes(0x55, BLOCK)
        stream += b"".join(good_blocks(24))
        self.assertEqual(len(stream) % BLOCK, 0)
        blocks = [stream[i:i + BLOCK] for i in range(0, len(stream), BLOCK)]
        bad = [has_long_run(b) or b[0:BLOCK:2] == bytes([0x42]) * (BLOCK // 2) for b in blocks]
        self.assertEqual(sum(bad), 5)

        # What the daemon must serve: clean blocks past each start-up test.
        expected = []
        startup_left = STARTUP_BLOCKS
        for index, is_bad in enumerate(bad):
            if is_bad:
                startup_left = STARTUP_BLOCKS
            elif startup_left:
                startup_left -= 1
            else:
                expected.append(index)

        fifo = self.path("trng.fifo")
        os.mkfifo(fifo)
        d = self.start_daemon(["--source", "file:%s,block=%d,entropy=8" % (fifo, BLOCK),
                               "--listen", "unix:%s,raw" % self.path("raw.sock")])
        client = connect(d.endpoints[0])

        writer_error = []

        def write_stream():
            try:
                with open(fifo, "wb") as f:  # blocks until rngmux opens the FIFO
                    f.write(stream)
            except OSError as e:
                writer_error.append(e)

        writer = threading.Thread(target=write_stream, daemon=True)
        writer.start()

        # Everything expected (bounded by a deadline), then a quiet spell in which
        # any block that should not have been served would show up.
        received = bytearray()
        deadline = time.monotonic() + 60
        while len(received) < len(expected) * BLOCK and time.monotonic() < deadline:
            chunk, eof = recv_for(client, 0.5)
            received += chunk
            if eof:
                break
        writer.join(5)
        chunk, _ = recv_for(client, 1.0)
        received += chunk
        self.assertFalse(writer.is_alive(), "the FIFO writer never finished")
        self.assertEqual(writer_error, [])
        client.close()

        self.assertEqual(len(received) % BLOCK, 0, "served bytes are not whole blocks")
        served = []
        for i in range(0, len(received), BLOCK):
            piece = bytes(received[i:i + BLOCK])
            matches = [k for k, b in enumerate(blocks) if b == piece]
            self.assertEqual(len(matches), 1, "served block %d is not one written block" % (i // BLOCK))
            served.append(matches[0])
        served_bad = [k for k in served if bad[k]]
        self.assertEqual(served_bad, [], "blocks that failed health tests were served")
        self.assertEqual(served, expected)

        stats = d.stats()
        self.assertGreaterEqual(stats["blocks_failed"], 4)
        self.assertEqual(stats["blocks_passed"], len(expected))
        self.assertEqual(stats["served_bytes"], len(expected) * BLOCK)
        self.assertGreaterEqual(d.count_log(r"health test RCT failed"), 1)
        self.assertGreaterEqual(d.count_log(r"health test APT failed"), 1)


if __name__ == "__main__":
    import unittest

    unittest.main()
