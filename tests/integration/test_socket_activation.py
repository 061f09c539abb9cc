"""Socket activation without systemd as PID 1: systemd's own systemd-socket-activate
listens, starts the daemon at the first connection and passes the sockets (LISTEN_FDS,
LISTEN_FDNAMES).

The daemon adopts each passed socket as the configured endpoint that names it (name=)
or has its address; a socket no endpoint claims is served with the default endpoint's
options. A client that connects before the daemon runs loses nothing: its request is
answered with bytes of the test source's stream. A reload keeps a passed socket, and
neither a reload nor shutdown removes its socket file (systemd's); a passed socket
whose endpoint leaves the configuration is still served, with default options.
"""

import os
import shutil
import signal
import socket

from harness import (RngmuxTestCase, connect, egd_read, free_tcp_port, free_udp_port,
                     recv_exact, reference_stream, wait_until)

SEED = 4242
ACTIVATE = shutil.which("systemd-socket-activate")


class SocketActivationTest(RngmuxTestCase):
    def setUp(self):
        super().setUp()
        self.assertIsNotNone(ACTIVATE, "systemd-socket-activate (package systemd) is missing")
        self.ref = reference_stream(SEED, 1 << 20)

    def activated(self, listen, args, names=None, datagram=False):
        """The daemon under systemd-socket-activate (not started until a client comes)."""
        wrapper = [ACTIVATE]
        if datagram:
            wrapper.append("--datagram")
        for address in listen:
            wrapper += ["-l", address]
        if names:
            wrapper.append("--fdname=" + ":".join(names))
        base = ["--source", "test:%d" % SEED, "--allow-test-source", "--log-level", "debug"]
        d = self.start_daemon(base + list(args), wrapper=wrapper, expect_listen=0)
        # systemd-socket-activate says "Listening on ADDRESS as FD." for each socket
        d.wait_log(r"Listening on .* as \d+", count=len(listen))
        return d

    def assert_stream_bytes(self, data, what):
        self.assertNotEqual(self.ref.find(data), -1, "%s: not a piece of the test stream" % what)

    def test_clients_before_the_daemon_lose_nothing(self):
        port = free_tcp_port()
        path = self.path("egd.sock")
        d = self.activated(["127.0.0.1:%d" % port, path],
                           ["--listen", "tcp:127.0.0.1:%d,name=egd-tcp" % port,
                            "--listen", "unix:%s,name=egd-unix" % path],
                           names=["egd-tcp", "egd-unix"])
        # systemd-socket-activate holds both sockets; the daemon is not running yet.
        self.assertTrue(wait_until(lambda: os.path.exists(path), 10), "socket file not made")
        self.assertEqual(d.listening(), [])
        tcp = socket.create_connection(("127.0.0.1", port), timeout=30)
        tcp.sendall(egd_read(64))
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.settimeout(30)
        unix.connect(path)
        unix.sendall(egd_read(100))
        # 02 NN (blocking read) is answered with exactly NN bytes
        self.assert_stream_bytes(recv_exact(tcp, 64, timeout=30), "tcp client")
        self.assert_stream_bytes(recv_exact(unix, 100, timeout=30), "unix client")
        d.wait_log(r"adopts the socket systemd passed: \"egd-tcp\" \(tcp:127\.0\.0\.1:%d\)" % port)
        d.wait_log(r"adopts the socket systemd passed: \"egd-unix\" \(unix:%s\)" % path)
        self.assertEqual(sorted(d.listening()),
                         sorted(["tcp:127.0.0.1:%d" % port, "unix:%s" % path]))
        # more of the same connections, and new ones, keep working
        tcp.sendall(egd_read(255))
        self.assert_stream_bytes(recv_exact(tcp, 255, timeout=30), "tcp client, second read")
        with connect("tcp:127.0.0.1:%d" % port) as again:
            again.sendall(egd_read(10))
            self.assert_stream_bytes(recv_exact(again, 10), "new tcp client")
        tcp.close()
        unix.close()
        d.stop()
        # the socket file is systemd's: the daemon leaves it
        self.assertTrue(os.path.exists(path), "the daemon removed the passed socket file")

    def test_a_socket_no_endpoint_names_is_served_with_the_default_options(self):
        port = free_tcp_port()
        d = self.activated(["127.0.0.1:%d" % port], [], names=["egd"])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            # the default endpoint's options: QEMU compatibility, a lead before any request
            lead = recv_exact(s, 4096, timeout=30)
            self.assert_stream_bytes(lead, "lead")
        d.wait_log(r"passed socket \"egd\" \(tcp:127\.0\.0\.1:%d\) matches no configured "
                   r"endpoint: serving it as listen tcp:127\.0\.0\.1:%d,qemu,name=egd" % (port, port))
        # the default endpoint (tcp:127.0.0.1:1024) is not bound besides it
        self.assertEqual(d.listening(), ["tcp:127.0.0.1:%d" % port])
        d.stop()

    def test_reload_keeps_the_passed_socket(self):
        port = free_tcp_port()
        other = free_tcp_port()
        config = self.path("rngmux.toml")

        def write(listens):
            with open(config, "w") as f:
                f.write('control = "none"\n')  # the source comes from the command line
                for address in listens:
                    f.write('[[listen]]\naddress = "%s"\n' % address)

        write(["tcp:127.0.0.1:%d" % port])
        d = self.activated(["127.0.0.1:%d" % port], ["--config", config])
        held = socket.create_connection(("127.0.0.1", port), timeout=30)
        held.sendall(egd_read(32))
        self.assert_stream_bytes(recv_exact(held, 32, timeout=30), "before reload")
        d.wait_log("listening on tcp:127.0.0.1:%d" % port)

        # another endpoint added: the passed one and its client stay
        write(["tcp:127.0.0.1:%d" % port, "tcp:127.0.0.1:%d" % other])
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded: ")
        held.sendall(egd_read(32))
        self.assert_stream_bytes(recv_exact(held, 32), "after reload, same connection")

        # removed from the configuration: a passed socket is always served (the socket
        # unit says what is listened on), now with the default endpoint's options; its
        # client stays
        write(["tcp:127.0.0.1:%d" % other])
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded: ", count=2)
        d.wait_log(r"passed socket tcp:127\.0\.0\.1:%d matches no configured endpoint: "
                   r"serving it as listen tcp:127\.0\.0\.1:%d,qemu" % (port, port))
        held.sendall(egd_read(32))
        self.assert_stream_bytes(recv_exact(held, 32), "after its endpoint left the file")
        with connect("tcp:127.0.0.1:%d" % port) as s:
            self.assert_stream_bytes(recv_exact(s, 4096), "lead on the default options")
        # back in the file: its own options again, on the same socket, never bound afresh
        # (systemd still holds it: a bind would fail with "address in use")
        write(["tcp:127.0.0.1:%d" % port])
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded: ", count=3)
        self.assertEqual(d.count_log("adopts the socket systemd passed"), 1)
        self.assertEqual(d.count_log("reload failed"), 0)
        with connect("tcp:127.0.0.1:%d" % port) as s:
            s.sendall(egd_read(50))
            self.assert_stream_bytes(recv_exact(s, 50), "after the endpoint came back")
        held.close()
        d.stop()

    def test_udp_datagram_sent_before_the_daemon_is_answered(self):
        port = free_udp_port()
        d = self.activated(["127.0.0.1:%d" % port], ["--listen", "udp:127.0.0.1:%d" % port],
                           datagram=True)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        s.send(egd_read(200))
        reply = s.recv(65536)
        self.assertEqual(len(reply), 200)
        self.assert_stream_bytes(reply, "udp reply")
        d.wait_log(r"adopts the socket systemd passed: udp:127\.0\.0\.1:%d" % port)
        s.close()
        d.stop()

    def test_a_name_bound_elsewhere_is_one_clear_error(self):
        port = free_tcp_port()
        wrong = free_tcp_port()
        d = self.activated(["127.0.0.1:%d" % port],
                           ["--listen", "tcp:127.0.0.1:%d,name=egd" % wrong], names=["egd"])
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.assertIsNotNone(wait_until(d.exited, 30), "daemon did not exit")
        s.close()
        rc = d.wait_exit()
        self.assertNotEqual(rc, 0)
        errors = [l for l in d.log_lines() if "error" in l]
        self.assertEqual(errors, ["rngmux: error: listen \"tcp:127.0.0.1:%d,name=egd\": the socket "
                                  "named \"egd\" is tcp:127.0.0.1:%d, not tcp:127.0.0.1:%d"
                                  % (wrong, port, wrong)], d.log_text())


if __name__ == "__main__":
    import unittest
    unittest.main()
