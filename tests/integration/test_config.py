"""The configuration file: `serve --config`, flags over it, `check-config`, and the
example file and the documentation's examples, which must stay valid."""

import os
import re
import signal
import tomllib
import unittest

from harness import (RngmuxTestCase, connect, egd_read, free_tcp_port, recv_exact,
                     reference_stream, render_config, run_cli, wait_closed)
import pki

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "etc", "rngmux.toml")
DOCS = os.path.join(REPO, "docs", "configuration.md")
README = os.path.join(REPO, "README.md")
SEED = 41


def err_lines(proc):
    return [l for l in proc.stderr.decode("utf-8", "replace").splitlines() if l.strip()]


def without_comments(text):
    return "\n".join(l for l in text.splitlines() if not l.startswith("#"))


class ConfigTest(RngmuxTestCase):
    def write(self, text, name="rngmux.toml"):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def settings(self, **extra):
        out = {"allow-test-source": True, "control": ""}
        out.update(extra)
        return out

    def read64(self, port):
        with connect("tcp:127.0.0.1:%d" % port) as s:
            s.sendall(egd_read(64))
            return recv_exact(s, 64)

    def assert_usage_error(self, args, expected_line):
        p = run_cli(args, timeout=10)
        self.assertEqual(p.returncode, 2, "rngmux %s: %r" % (" ".join(args), p.stderr))
        self.assertEqual(err_lines(p), ["rngmux: error: " + expected_line])

    def check_config(self, args):
        p = run_cli(["check-config"] + args, timeout=10)
        self.assertEqual(p.returncode, 0, "check-config %s: %r" % (" ".join(args), p.stderr))
        return p.stdout.decode()

    def test_serve_from_a_file(self):
        port = free_tcp_port()
        config = self.write(render_config(
            self.settings(), ["test:%d" % SEED],
            [{"address": "tcp:127.0.0.1:%d" % port, "allow": ["127.0.0.0/8"], "weight": 2}]))
        d = self.start_daemon(["--config", config], expect_listen=1)
        self.assertEqual(d.endpoints, ["tcp:127.0.0.1:%d" % port])
        got = self.read64(port)
        ref = reference_stream(SEED, 1 << 20)
        self.assertNotEqual(ref.find(got[:32]), -1, "bytes not from the file's test source")
        d.stop()

    def test_flags_override_the_file_and_again_at_reload(self):
        file_port, flag_port = free_tcp_port(), free_tcp_port()
        config = self.write(render_config(
            self.settings(**{"log-level": "debug"}), ["test:%d" % SEED],
            [{"address": "tcp:127.0.0.1:%d" % file_port}]))
        d = self.start_daemon(["--config", config, "--listen", "tcp:127.0.0.1:%d" % flag_port,
                               "--log-level", "info"], expect_listen=1)
        # --listen replaced the file's listen list; --log-level its log level.
        self.assertEqual(d.endpoints, ["tcp:127.0.0.1:%d" % flag_port])
        self.assertEqual(len(self.read64(flag_port)), 64)
        with self.assertRaises(OSError):
            connect("tcp:127.0.0.1:%d" % file_port, timeout=2)
        # A reload reads the file again and puts the same flags over it.
        other = free_tcp_port()
        self.write(render_config(self.settings(**{"log-level": "debug"}), ["test:%d" % SEED],
                                 [{"address": "tcp:127.0.0.1:%d" % other}]))
        d.proc.send_signal(signal.SIGHUP)
        m = d.wait_log(r"reloaded: (.*)$")
        self.assertEqual(m.group(1), "nothing changed")
        self.assertEqual(d.count_log(r"rngmux debug: "), 0)
        self.assertEqual(len(self.read64(flag_port)), 64)
        d.stop()

    def test_bad_files_exit_2_naming_file_line_and_key(self):
        text = render_config(self.settings(), ["test:1"],
                             [{"address": "tcp:127.0.0.1:1024"},
                              {"address": "tcp:127.0.0.1:1025", "wieght": 2}])
        path = self.write(text)
        line = 1 + text.splitlines().index("wieght = 2")
        self.assert_usage_error(["serve", "--config", path],
                                '%s:%d: listen[1]: unknown key "wieght"' % (path, line))
        self.assert_usage_error(["check-config", "--config", path],
                                '%s:%d: listen[1]: unknown key "wieght"' % (path, line))

        path = self.write('control = ""\n\n[[listen]]\naddress = "udp:127.0.0.1:1024"\n'
                          'allow = ["10.0.0.0/4"]\n')
        self.assert_usage_error(["serve", "--config", path],
                                '%s:5: listen[0].allow: "10.0.0.0/4" is too wide: prefixes '
                                'shorter than /8 would answer much of the internet (name your '
                                'networks, like 10.0.0.0/8)' % path)
        path = self.write('control = ""\n[[listen]]\naddress = "tcp:127.0.0.1:1024"\n'
                          'weight = "heavy"\n')
        self.assert_usage_error(["serve", "--config", path],
                                "%s:4: listen[0].weight: expected an integer, got a string" % path)
        path = self.write('control = ""\npool-size = 100\n')
        self.assert_usage_error(["serve", "--config", path],
                                "%s:2: pool-size 100: must be 4096 to 1073741824 bytes" % path)
        path = self.write('control = ""\nlog-level = "info\n')
        p = run_cli(["serve", "--config", path], timeout=10)
        self.assertEqual(p.returncode, 2)
        lines = err_lines(p)
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("rngmux: error: %s:2: parse error: " % path), lines)
        missing = self.path("missing.toml")
        self.assert_usage_error(["serve", "--config", missing],
                                "%s: No such file or directory" % missing)

    def test_check_config_prints_what_it_accepts_back(self):
        port = free_tcp_port()
        path = self.write(render_config(
            self.settings(**{"pool-size": 65536, "metrics": "tcp:127.0.0.1:9797"}),
            ["test:%d,rate=100000" % SEED, "getrandom"],
            [{"address": "tcp:127.0.0.1:%d" % port, "qemu": True, "allow": ["127.0.0.0/8", "::1"],
              "rate": 50000}, {"address": "unix:%s" % self.path("egd.sock"), "mode": "0660"}],
            [{"address": "udp:127.0.0.1:4555", "local": "127.0.0.1:4556", "qemu": True}]))
        printed = self.check_config(["--config", path, "--max-clients", "99"])
        parsed = tomllib.loads(printed)
        self.assertEqual(parsed["pool-size"], 65536)
        self.assertEqual(parsed["max-clients"], 99)  # the flag over the file
        self.assertEqual(parsed["control"], "")
        self.assertEqual(parsed["metrics"], "tcp:127.0.0.1:9797")
        self.assertEqual(parsed["health-alpha"], 30)
        self.assertEqual([s["spec"] for s in parsed["source"]],
                         ["test:%d,rate=100000" % SEED, "getrandom"])
        self.assertEqual(parsed["listen"][0], {"address": "tcp:127.0.0.1:%d" % port, "qemu": True,
                                               "allow": ["127.0.0.0/8", "::1"], "rate": 50000})
        self.assertEqual(parsed["listen"][1]["mode"], "0660")
        self.assertEqual(parsed["connect"][0]["local"], "127.0.0.1:4556")
        again = self.write(printed, "printed.toml")
        self.assertEqual(without_comments(self.check_config(["--config", again])),
                         without_comments(printed))

    def test_check_config_without_a_file_and_its_defaults(self):
        printed = self.check_config(["--pool-size", "8192", "--qemu-chardev",
                                     "socket,id=c0,host=127.0.0.1,port=1030"])
        parsed = tomllib.loads(printed)
        self.assertEqual(parsed["pool-size"], 8192)
        self.assertEqual(parsed["control"], "/run/rngmux/control.sock")
        self.assertEqual(parsed["source"], [{"spec": "auto"}])
        self.assertEqual(parsed["listen"], [{"address": "tcp:127.0.0.1:1030", "qemu": True}])
        self.assertEqual(tomllib.loads(self.check_config([]))["listen"],
                         [{"address": "tcp:127.0.0.1:1024", "qemu": True}])
        self.assert_usage_error(["check-config", "--metrics", "unix:/tmp/m.sock"],
                                '--metrics "unix:/tmp/m.sock": expected tcp:HOST:PORT')
        p = run_cli(["check-config", "--metrics", "tcp:0.0.0.0:9797"], timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertEqual(err_lines(p), ["rngmux: warning: metrics tcp:0.0.0.0:9797 is not a "
                                        "loopback address: anyone who can reach it reads the "
                                        "metrics"])

    def test_example_file_is_valid_and_loopback_only(self):
        printed = tomllib.loads(self.check_config(["--config", EXAMPLE]))
        for endpoint in printed.get("listen", []):
            self.assertRegex(endpoint["address"], r"^(tcp|udp):127\.0\.0\.1:|^unix:")
        self.assertEqual(printed["metrics"], "")
        # Every commented example in the tables, uncommented, is valid too.
        with open(EXAMPLE) as f:
            lines = f.read().splitlines()
        first_table = next(i for i, line in enumerate(lines) if line.startswith("[["))
        uncommented = lines[:first_table]
        for line in lines[first_table:]:
            m = re.match(r"^# ((\[\[\w+\]\])|([a-z-]+ = .*))$", line)
            uncommented.append(m.group(1) if m else line)
        # check-config loads the TLS files: the example's paths point at the test PKI.
        p = pki.get()
        text = "\n".join(uncommented) + "\n"
        text = text.replace("/etc/pki/rngmux/cert.pem", p.file(pki.BOTH, "server-cert.pem"))
        text = text.replace("/etc/pki/libvirt-chardev", p.dir(pki.BOTH))
        path = self.write(text, "uncommented.toml")
        # (its test:1 source needs allow-test-source, which the example leaves off)
        data = tomllib.loads(self.check_config(["--config", path, "--allow-test-source"]))
        keys = {k for t in data.get("listen", []) + data.get("connect", []) for k in t}
        for key in ("address", "qemu", "lead", "allow", "allow-user", "allow-group",
                    "weight", "share", "max-conns", "rate", "burst", "mode", "idle", "peers",
                    "local", "tls-dir", "tls-cert", "tls-verify", "tls-min", "tls-timeout",
                    "allow-subject"):
            self.assertIn(key, keys, "the example file does not show endpoint key %r" % key)
        self.assertEqual(len(data["source"]), 5)

    def test_docs_examples_are_valid(self):
        blocks = []
        for doc in (DOCS, README):
            with open(doc) as f:
                found = re.findall(r"```toml\n(.*?)```", f.read(), re.S)
            self.assertGreater(len(found), 0, "no ```toml examples in %s" % doc)
            blocks += found
        for i, block in enumerate(blocks):
            path = self.write(block, "docs%d.toml" % i)
            p = run_cli(["check-config", "--config", path], timeout=10)
            self.assertEqual(p.returncode, 0, "docs example %d: %r\n%s" % (i, p.stderr, block))


if __name__ == "__main__":
    unittest.main()
