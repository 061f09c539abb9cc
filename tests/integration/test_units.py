"""The systemd units, the sysusers.d file and the udev rule, as `cmake --install` puts
them: every file lands where systemd, udev and man look; `systemd-analyze verify` passes
on each unit (its ExecStart pointed at the installed binary); the service's exposure
score (`systemd-analyze security --offline=yes`) stays at or below 2.0; the socket unit
listens where the packaged configuration does; and the udev rule matches the kernel's
hardware RNG device.

The build tree is the one of the binary under test (RNGMUX_BINARY)."""

import fnmatch
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
import unittest

from harness import BINARY

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.dirname(BINARY)
MAX_EXPOSURE = 2.0
HWRNG_SYSFS = "/sys/dev/char/10:183"  # misc major 10, minor 183: /dev/hwrng


def cmake_cache(name):
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        for line in f:
            m = re.match(r"^%s:[A-Z]+=(.*)$" % re.escape(name), line.rstrip("\n"))
            if m:
                return m.group(1)
    raise AssertionError("%s not in %s/CMakeCache.txt" % (name, BUILD))


def unit_values(path, key):
    """The values of `key=` in a unit file, in order."""
    with open(path) as f:
        return [line.split("=", 1)[1].strip() for line in f
                if line.startswith(key + "=")]


class UnitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rngmux-units-")
        cls.destdir = os.path.join(cls.tmp, "dest")
        env = dict(os.environ, DESTDIR=cls.destdir)
        proc = subprocess.run(["cmake", "--install", BUILD], env=env, capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            raise AssertionError("cmake --install: %s%s" % (proc.stdout, proc.stderr))
        cls.prefix = cmake_cache("CMAKE_INSTALL_PREFIX")
        cls.root = cls.destdir + cls.prefix

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def installed(self, relative):
        path = os.path.join(self.root, relative)
        self.assertTrue(os.path.isfile(path), "cmake --install did not install %s" % path)
        return path

    def test_install_puts_every_file_in_place(self):
        for relative in ("bin/rngmux", "lib/systemd/system/rngmux.service",
                         "lib/systemd/system/rngmux.socket", "lib/sysusers.d/rngmux.conf",
                         "lib/udev/rules.d/60-rngmux.rules", "share/man/man8/rngmux.8",
                         "share/man/man5/rngmux.toml.5"):
            self.installed(relative)
        sysconfdir = cmake_cache("CMAKE_INSTALL_SYSCONFDIR")
        if not os.path.isabs(sysconfdir):
            # GNUInstallDirs: etc under the prefix, but /etc for the prefix /usr
            sysconfdir = "/etc" if self.prefix == "/usr" else os.path.join(self.prefix,
                                                                            sysconfdir)
        config = os.path.join(sysconfdir, "rngmux", "rngmux.toml")
        self.assertTrue(os.path.isfile(self.destdir + config), "no %s installed" % config)
        # The unit starts the installed binary with the installed configuration.
        service = self.installed("lib/systemd/system/rngmux.service")
        self.assertEqual(unit_values(service, "ExecStart"),
                         ["%s/bin/rngmux serve --config %s" % (self.prefix, config)])
        with open(self.installed("lib/sysusers.d/rngmux.conf")) as f:
            users = [line.split() for line in f if line.strip() and not line.startswith("#")]
        self.assertEqual([u[:2] for u in users], [["u", "rngmux"]])
        self.assertEqual(unit_values(service, "User"), ["rngmux"])
        self.assertEqual(unit_values(service, "Group"), ["rngmux"])

    def verify_copy(self):
        """The installed units in a directory of their own, ExecStart pointed at the
        installed binary (which exists), as systemd-analyze verify checks it."""
        units = os.path.join(self.tmp, "verify")
        shutil.rmtree(units, ignore_errors=True)
        os.makedirs(units)
        for name in ("rngmux.service", "rngmux.socket"):
            with open(self.installed("lib/systemd/system/" + name)) as f:
                text = f.read()
            text = text.replace("ExecStart=%s/bin/" % self.prefix,
                                "ExecStart=%s/bin/" % self.root)
            with open(os.path.join(units, name), "w") as f:
                f.write(text)
        return units

    def test_systemd_analyze_verify_passes_on_every_unit(self):
        units = self.verify_copy()
        for name in ("rngmux.service", "rngmux.socket"):
            proc = subprocess.run(["systemd-analyze", "verify", "--man=no",
                                   os.path.join(units, name)],
                                  capture_output=True, text=True, timeout=60)
            self.assertEqual(proc.returncode, 0, "%s: %s%s" % (name, proc.stdout, proc.stderr))
            self.assertNotIn("rngmux", proc.stderr, "%s: verify warns: %s" % (name, proc.stderr))
        # The check is real: a missing binary fails it.
        with open(os.path.join(units, "rngmux.service")) as f:
            broken = f.read().replace("ExecStart=%s/bin/rngmux" % self.root,
                                      "ExecStart=%s/bin/rngmux-missing" % self.root)
        with open(os.path.join(units, "rngmux.service"), "w") as f:
            f.write(broken)
        proc = subprocess.run(["systemd-analyze", "verify", "--man=no",
                               os.path.join(units, "rngmux.service")],
                              capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0, "verify passed a unit without its binary")

    def test_security_exposure_is_at_most_two(self):
        units = self.verify_copy()
        proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                               os.path.join(units, "rngmux.service")],
                              capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for rngmux\.service: ([0-9.]+)", proc.stdout)
        self.assertIsNotNone(m, "no exposure level in: %s%s" % (proc.stdout, proc.stderr))
        exposure = float(m.group(1))
        print("rngmux.service exposure: %.1f" % exposure)
        self.assertLessEqual(exposure, MAX_EXPOSURE, proc.stdout)
        # docs/systemd.md states the score this unit has.
        with open(os.path.join(REPO, "docs", "systemd.md")) as f:
            self.assertIn("exposure level for rngmux.service: %.1f" % exposure, f.read(),
                          "docs/systemd.md does not state the exposure score %.1f" % exposure)

    def test_socket_unit_listens_where_the_packaged_configuration_does(self):
        socket_unit = self.installed("lib/systemd/system/rngmux.socket")
        listen = unit_values(socket_unit, "ListenStream")
        names = unit_values(socket_unit, "FileDescriptorName")
        # systemd gives a unit's FileDescriptorName= (the last one) to every socket of the
        # unit: with several sockets, a name cannot tell them apart.
        self.assertTrue(len(listen) == 1 or not names,
                        "FileDescriptorName=%r would name all %d sockets alike" % (names, len(listen)))
        self.assertEqual(unit_values(socket_unit, "Service"), ["rngmux.service"])
        with open(os.path.join(REPO, "etc", "rngmux.toml"), "rb") as f:
            config = tomllib.load(f)
        endpoints = {e["address"]: e for e in config.get("listen", [])}
        for address in listen:
            expected = "unix:" + address if address.startswith("/") else "tcp:" + address
            self.assertIn(expected, endpoints,
                          "rngmux.socket listens on %s, etc/rngmux.toml has no such "
                          "[[listen]]" % address)
            # adopted by address: a name= would look for a socket of that name, and bind
            # the address itself (taken by systemd) when none is passed
            self.assertNotIn("name", endpoints[expected],
                             "%s has name= but rngmux.socket names no socket" % expected)
        # The unix socket's directory is the service's RuntimeDirectory, kept across
        # restarts so that the socket unit's file survives the service.
        service = self.installed("lib/systemd/system/rngmux.service")
        self.assertEqual(unit_values(service, "RuntimeDirectory"), ["rngmux"])
        self.assertEqual(unit_values(service, "RuntimeDirectoryPreserve"), ["yes"])
        self.assertIn("rngmux", unit_values(socket_unit, "SocketGroup"))

    def test_udev_rule_matches_the_kernels_hwrng_device(self):
        with open(self.installed("lib/udev/rules.d/60-rngmux.rules")) as f:
            rules = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        self.assertEqual(len(rules), 1, rules)
        matches = dict(re.findall(r'([A-Z]+)=="([^"]*)"', rules[0]))
        assigns = dict(re.findall(r'([A-Z]+)="([^"]*)"', rules[0]))
        self.assertEqual(assigns, {"GROUP": "rngmux", "MODE": "0640"})
        if not os.path.exists(HWRNG_SYSFS):
            import sys
            sys.stderr.write("\n*** SKIPPING %s: no %s (no hw_random misc device on this "
                             "host) ***\n" % (self.id(), HWRNG_SYSFS))
            self.skipTest("no %s on this host: the kernel's name is not checked" % HWRNG_SYSFS)
        device = os.path.realpath(HWRNG_SYSFS)
        actual = {"KERNEL": os.path.basename(device),
                  "SUBSYSTEM": os.path.basename(os.path.realpath(
                      os.path.join(device, "subsystem")))}
        for key, pattern in matches.items():
            self.assertIn(key, actual, "the rule matches on %s, which this test cannot read" % key)
            self.assertTrue(fnmatch.fnmatchcase(actual[key], pattern),
                            "%s==\"%s\" does not match the device's %s" % (key, pattern,
                                                                           actual[key]))


if __name__ == "__main__":
    unittest.main()
