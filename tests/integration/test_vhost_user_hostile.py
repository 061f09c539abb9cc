"""A test client that plays a hostile QEMU against `--listen vhost-user:PATH`.

Each case sets up a real device (a memfd as guest memory, eventfds for kick and call,
passed with SCM_RIGHTS like QEMU does), then breaks one rule of the protocol or the
split ring. Every case must close only that device, with a log line and a counter,
while a well-behaved device on the same daemon keeps being served bytes that are the
test source's stream (checked against the reference).
"""

import mmap
import os
import select
import socket
import struct
import unittest

from harness import RngmuxTestCase, reference_stream, wait_until

GET_FEATURES, SET_FEATURES, SET_OWNER = 1, 2, 3
SET_MEM_TABLE, SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE = 5, 8, 9, 10
GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL = 11, 12, 13
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, SET_VRING_ENABLE = 15, 16, 18
NEED_REPLY = 0x8
VERSION = 0x1

MEM_BYTES = 64 * 1024
GPA = 0x100000          # guest physical address of the region
UVA = 0x7f0000000000    # "QEMU's" virtual address of the region
DESC, AVAIL, USED, DATA = 0x0, 0x1000, 0x2000, 0x4000
NUM = 4
WRITE, NEXT, INDIRECT = 2, 1, 4
TIMEOUT = 10


class FakeQemu:
    """One vhost-user connection with one ring, driven by hand."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.memfd = os.memfd_create("guest")
        os.ftruncate(self.memfd, MEM_BYTES)
        self.mem = mmap.mmap(self.memfd, MEM_BYTES)
        self.kick = os.eventfd(0, os.EFD_NONBLOCK)
        self.call = os.eventfd(0, os.EFD_NONBLOCK)
        self.avail_idx = 0
        self.used_seen = 0

    def close(self):
        for fd in (self.memfd, self.kick, self.call):
            try:
                os.close(fd)
            except OSError:
                pass
        self.mem.close()
        self.sock.close()

    # -- messages -------------------------------------------------------------------------
    def send(self, request, payload=b"", fds=(), flags=VERSION):
        msg = struct.pack("<III", request, flags, len(payload)) + payload
        if fds:
            socket.send_fds(self.sock, [msg], list(fds))
        else:
            self.sock.sendall(msg)

    def reply(self):
        data = b""
        while len(data) < 20:
            chunk = self.sock.recv(20 - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        request, flags, size = struct.unpack("<III", data[:12])
        return request, flags, data[12:20]

    def setup(self):
        self.send(GET_FEATURES)
        _, _, features = self.reply()
        self.features = struct.unpack("<Q", features)[0]
        self.send(SET_FEATURES, struct.pack("<Q", 0x170000000))
        self.send(GET_PROTOCOL_FEATURES)
        self.reply()
        self.send(SET_PROTOCOL_FEATURES, struct.pack("<Q", 0x9))
        self.send(SET_OWNER)
        region = struct.pack("<QQQQ", GPA, MEM_BYTES, UVA, 0)
        self.send(SET_MEM_TABLE, struct.pack("<II", 1, 0) + region, fds=[self.memfd],
                  flags=VERSION | NEED_REPLY)
        _, _, ack = self.reply()
        assert struct.unpack("<Q", ack)[0] == 0
        self.send(SET_VRING_NUM, struct.pack("<II", 0, NUM))
        self.send(SET_VRING_BASE, struct.pack("<II", 0, 0))
        self.send(SET_VRING_ADDR, struct.pack("<IIQQQQ", 0, 0, UVA + DESC, UVA + USED,
                                              UVA + AVAIL, 0))
        self.send(SET_VRING_KICK, struct.pack("<Q", 0), fds=[self.kick])
        self.send(SET_VRING_CALL, struct.pack("<Q", 0), fds=[self.call])
        self.send(SET_VRING_ENABLE, struct.pack("<II", 0, 1), flags=VERSION | NEED_REPLY)
        _, _, ack = self.reply()
        assert struct.unpack("<Q", ack)[0] == 0

    # -- the ring, as a driver --------------------------------------------------------------
    def desc(self, i, addr, length, flags, nxt=0, table=DESC):
        struct.pack_into("<QIHH", self.mem, table + 16 * i, addr, length, flags, nxt)

    def offer(self, head, jump=None):
        struct.pack_into("<H", self.mem, AVAIL + 4 + 2 * (self.avail_idx % NUM), head)
        self.avail_idx = (self.avail_idx + 1) & 0xffff if jump is None else jump
        struct.pack_into("<H", self.mem, AVAIL + 2, self.avail_idx)
        os.eventfd_write(self.kick, 1)

    def used_idx(self):
        return struct.unpack_from("<H", self.mem, USED + 2)[0]

    def read(self, n):
        """Offers one n-byte buffer and waits for it to come back; returns its bytes."""
        self.desc(0, GPA + DATA, n, WRITE)
        # EVENT_IDX: ask to be signalled when this buffer is used (used_event = avail->ring[num])
        struct.pack_into("<H", self.mem, AVAIL + 4 + 2 * NUM, self.used_seen & 0xffff)
        self.offer(0)
        ready = select.select([self.call], [], [], TIMEOUT)[0]
        assert ready, "no call signal within %ds" % TIMEOUT
        os.eventfd_read(self.call)
        assert self.used_idx() == (self.used_seen + 1) & 0xffff
        slot = self.used_seen % NUM
        self.used_seen += 1
        head, length = struct.unpack_from("<II", self.mem, USED + 4 + 8 * slot)
        assert head == 0, head
        return bytes(self.mem[DATA:DATA + length])

    def wait_closed(self):
        """True if the daemon closes the connection within TIMEOUT."""
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


class HostileQemuTest(RngmuxTestCase):
    def setUp(self):
        super().setUp()
        self.seed = 301
        self.sock_path = self.path("vm.sock")
        self.d = self.start_daemon(["--source", "test:%d" % self.seed, "--allow-test-source",
                                    "--listen", "vhost-user:%s" % self.sock_path,
                                    "--log-level", "debug"])
        self.good = self.qemu()
        self.got = self.good.read(64)  # the bystander is served before...

    def qemu(self):
        q = FakeQemu(self.sock_path)
        self.addCleanup(q.close)
        q.setup()
        return q

    def check_only_that_device_closed(self, q, counter, reason):
        self.assertTrue(q.wait_closed(), "the hostile device was not closed")
        self.d.wait_log(r"vhost-user device .*: closing: .*%s" % reason)
        stats = self.d.stats()
        self.assertEqual(stats[counter], 1, stats)
        # ... and after: its bytes continue the same stream (nothing lost to it, no repeat)
        self.got += self.good.read(64)
        ref = reference_stream(self.seed, 1 << 20)
        off = ref.find(self.got)
        self.assertGreaterEqual(off, 0, "the bystander's bytes are not one slice of the stream")
        self.assertEqual(stats["clients"], 1, stats)
        self.assertFalse(self.d.exited())

    def test_good_device_reads_the_stream(self):
        self.got += self.good.read(64)
        self.assertEqual(len(self.got), 128)
        self.assertGreaterEqual(reference_stream(self.seed, 1 << 20).find(self.got), 0)
        self.assertEqual(self.good.features, 0x170000000)

    def test_bad_buffer_address(self):
        q = self.qemu()
        q.desc(0, GPA + MEM_BYTES - 8, 64, WRITE)  # runs past the region's end
        q.offer(0)
        self.check_only_that_device_closed(q, "vhost_user_bad_rings", "not inside one memory")

    def test_descriptor_loop(self):
        q = self.qemu()
        q.desc(0, GPA + DATA, 8, WRITE | NEXT, 1)
        q.desc(1, GPA + DATA, 8, WRITE | NEXT, 0)
        q.offer(0)
        self.check_only_that_device_closed(q, "vhost_user_bad_rings", "a loop")

    def test_oversized_chain(self):
        q = self.qemu()
        table = DATA + 0x1000
        for i in range(8):
            q.desc(i, GPA + DATA, 1, WRITE | NEXT, i + 1, table=table)
        q.desc(0, GPA + table, 16 * 9, INDIRECT)
        q.offer(0)
        self.check_only_that_device_closed(q, "vhost_user_bad_rings", "longer than the ring")

    def test_indirect_table_out_of_range(self):
        q = self.qemu()
        q.desc(0, GPA + MEM_BYTES - 16, 64, INDIRECT)
        q.offer(0)
        self.check_only_that_device_closed(q, "vhost_user_bad_rings", "outside guest memory")

    def test_readable_descriptor(self):
        q = self.qemu()
        q.desc(0, GPA + DATA, 64, 0)
        q.offer(0)
        self.check_only_that_device_closed(q, "vhost_user_bad_rings", "device-readable")

    def test_ring_index_jump(self):
        q = self.qemu()
        q.desc(0, GPA + DATA, 64, WRITE)
        q.offer(0, jump=40)
        self.check_only_that_device_closed(q, "vhost_user_bad_rings", "avail index jumped")

    def test_fd_where_none_belongs(self):
        q = self.qemu()
        q.send(SET_OWNER, fds=[q.kick])
        self.check_only_that_device_closed(q, "vhost_user_bad_messages",
                                           "came with 1 file descriptors")

    def test_ring_addresses_outside_memory(self):
        q = FakeQemu(self.sock_path)
        self.addCleanup(q.close)
        q.send(SET_MEM_TABLE, struct.pack("<II", 1, 0) + struct.pack("<QQQQ", GPA, MEM_BYTES,
                                                                     UVA, 0), fds=[q.memfd])
        q.send(SET_VRING_NUM, struct.pack("<II", 0, NUM))
        q.send(SET_VRING_ADDR, struct.pack("<IIQQQQ", 0, 0, UVA + MEM_BYTES, UVA + USED,
                                           UVA + AVAIL, 0))
        q.send(SET_VRING_KICK, struct.pack("<Q", 0), fds=[q.kick])
        self.check_only_that_device_closed(q, "vhost_user_bad_messages",
                                           "not inside the memory table")

    def test_memory_region_larger_than_its_file(self):
        q = FakeQemu(self.sock_path)
        self.addCleanup(q.close)
        q.send(SET_MEM_TABLE, struct.pack("<II", 1, 0) + struct.pack("<QQQQ", GPA, 1 << 30,
                                                                     UVA, 0), fds=[q.memfd])
        self.check_only_that_device_closed(q, "vhost_user_bad_messages",
                                           "fewer than offset \\+ size")

    def test_garbage_message(self):
        q = FakeQemu(self.sock_path)
        self.addCleanup(q.close)
        q.send(99, b"\0" * 8)
        self.check_only_that_device_closed(q, "vhost_user_bad_messages", "unsupported request 99")

    def test_oversized_payload(self):
        q = FakeQemu(self.sock_path)
        self.addCleanup(q.close)
        q.sock.sendall(struct.pack("<III", SET_MEM_TABLE, VERSION, 1 << 30))
        self.check_only_that_device_closed(q, "vhost_user_bad_messages", "payload of")

    def test_restarted_backend_acks_mem_table_first(self):
        """A connection that starts with SET_MEM_TABLE (QEMU after a backend restart) gets
        its need_reply answered, and the ring runs without any negotiation."""
        q = FakeQemu(self.sock_path)
        self.addCleanup(q.close)
        q.send(SET_MEM_TABLE, struct.pack("<II", 1, 0) + struct.pack("<QQQQ", GPA, MEM_BYTES,
                                                                     UVA, 0),
               fds=[q.memfd], flags=VERSION | NEED_REPLY)
        request, flags, ack = q.reply()
        self.assertEqual((request, flags & 0x4, struct.unpack("<Q", ack)[0]),
                         (SET_MEM_TABLE, 0x4, 0))
        q.send(SET_VRING_NUM, struct.pack("<II", 0, NUM))
        q.send(SET_VRING_BASE, struct.pack("<II", 0, 0))
        q.send(SET_VRING_ADDR, struct.pack("<IIQQQQ", 0, 0, UVA + DESC, UVA + USED,
                                           UVA + AVAIL, 0))
        q.send(SET_VRING_KICK, struct.pack("<Q", 0), fds=[q.kick])
        q.send(SET_VRING_CALL, struct.pack("<Q", 0), fds=[q.call])
        self.assertEqual(len(q.read(64)), 64)


if __name__ == "__main__":
    unittest.main()
