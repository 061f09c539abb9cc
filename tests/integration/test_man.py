"""The man pages: rngmux(8) and rngmux.toml(5) render without warnings, rngmux(8) names
every option `--help` lists in the section of its subcommand, and rngmux.toml(5) names
every key of the example configuration file.

The pages are the ones the build renders with scdoc (the `man` target), in the man/
directory beside the binary under test (RNGMUX_BINARY)."""

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

from harness import BINARY, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "etc", "rngmux.toml")
MAN_DIR = os.path.join(os.path.dirname(BINARY), "man")
SUBCOMMANDS = ("serve", "read", "fetch", "check", "bench", "check-config", "status", "stats",
               "reload")

# An option line of CLI11's help: two spaces, then "-n,--bytes ..." or "--hex ...".
HELP_OPTION_RE = re.compile(r"^  (-[^\s]+)")
# A key line of the example file, commented out or not: `key = value`.
KEY_LINE_RE = re.compile(r"^#?\s*([a-z][a-z0-9-]*)\s*=\s*(\"|\[|[0-9]|true\b|false\b)")
TABLE_LINE_RE = re.compile(r"^#?\s*\[\[([a-z-]+)\]\]")


def help_options(args):
    """The option spellings (short and long) `rngmux ARGS --help` lists."""
    proc = run_cli(list(args) + ["--help"], timeout=10)
    if proc.returncode != 0:
        raise AssertionError("rngmux %s --help: exit %d: %r"
                             % (" ".join(args), proc.returncode, proc.stderr))
    options = []
    for line in proc.stdout.decode().splitlines():
        m = HELP_OPTION_RE.match(line)
        if m:
            options += m.group(1).split(",")
    return options


def help_subcommands():
    proc = run_cli(["--help"], timeout=10)
    text = proc.stdout.decode()
    if "Subcommands:" not in text:
        raise AssertionError("rngmux --help lists no subcommands: %r" % text)
    return [line.split()[0] for line in text.split("Subcommands:", 1)[1].splitlines()
            if line.startswith("  ") and line.strip()]


def mentions(text, word):
    """True if `word` occurs in `text` as a whole option or key (not inside a longer one:
    "--json" is not found in "--json-lines", nor "-n" in "--no")."""
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text) is not None


def plain_rendered(text):
    """Rendered man text as typed: overstrike undone, a word the formatter hyphenated
    (U+2010) or broke after one of its own hyphens ("--qemu-" / "chardev") joined again."""
    text = re.sub(r".\x08", "", text)
    text = re.sub(r"\u2010\n\s+", "", text)
    text = re.sub(r"-\n\s+", "-", text)
    for glyph in ("\u2010", "\u2011", "\u2212"):
        text = text.replace(glyph, "-")
    return text


def plain_roff(line):
    """One line of roff source without font changes and escapes."""
    line = re.sub(r"\\f(\[[^\]]*\]|.)", "", line)
    return line.replace("\\-", "-").replace("\\&", "").replace("\\\\", "\\")


def roff_sections(path):
    """{heading: body} of a roff page, one entry per .SH and .SS heading."""
    sections = {}
    heading = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r'^\.S[HS] "?(.*?)"?\s*$', line)
            if m:
                heading = plain_roff(m.group(1)).strip()
                sections[heading] = ""
            elif heading is not None:
                sections[heading] += plain_roff(line)
    return sections


def literal_blocks(roff_text):
    """The text of each .nf ... .fi block (scdoc's ``` blocks) of a roff section."""
    blocks = []
    for block in re.findall(r"^\.nf\n(.*?)^\.fi$", roff_text, re.S | re.M):
        blocks.append("".join(l + "\n" for l in block.splitlines() if not l.startswith(".")))
    return blocks


def example_keys():
    """(top-level keys, table names, keys inside tables) of etc/rngmux.toml, commented
    out or not."""
    top, tables, inner = [], [], []
    in_table = False
    with open(EXAMPLE, encoding="utf-8") as f:
        for line in f:
            t = TABLE_LINE_RE.match(line)
            if t:
                in_table = True
                if t.group(1) not in tables:
                    tables.append(t.group(1))
                continue
            k = KEY_LINE_RE.match(line)
            if k:
                (inner if in_table else top).append(k.group(1))
    return top, tables, inner


class ManPageTest(unittest.TestCase):
    def setUp(self):
        if not os.access(BINARY, os.X_OK):
            self.fail("rngmux binary %r is missing (set RNGMUX_BINARY)" % BINARY)
        if shutil.which("man") is None:
            self.fail("man is not installed (apt-get install man-db; see scripts/install-deps.sh)")

    def page(self, name):
        path = os.path.join(MAN_DIR, name)
        if not os.path.isfile(path):
            self.fail("man page %s is missing: the build renders it with scdoc (target `man`) "
                      "into the man/ directory beside RNGMUX_BINARY (%s)" % (name, BINARY))
        return path

    def render(self, name, hyphenate=True):
        """The page as `man --warnings -l` shows it at 80 columns (checked for warnings),
        as plain text; hyphenate=False renders it without hyphenation, for searches."""
        env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
        env.pop("MAN_KEEP_FORMATTING", None)
        args = ["man", "--warnings"] + ([] if hyphenate else ["--no-hyphenation"])
        proc = subprocess.run(args + ["-l", self.page(name)], capture_output=True, timeout=60,
                              env=env)
        self.assertEqual(proc.returncode, 0, "man -l %s: %r" % (name, proc.stderr))
        self.assertEqual(proc.stderr.decode("utf-8", "replace"), "",
                         "man --warnings -l %s printed warnings" % name)
        text = proc.stdout.decode("utf-8", "replace")
        self.assertTrue(text.strip(), "man -l %s rendered nothing" % name)
        return plain_rendered(text)

    def test_pages_render_without_warnings(self):
        for name, title in (("rngmux.8", "rngmux(8)"), ("rngmux.toml.5", "rngmux.toml(5)")):
            with self.subTest(page=name):
                text = self.render(name)
                self.assertTrue(text.lstrip().startswith(title), text[:200])
                for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
                    self.assertRegex(text, r"(?m)^" + heading + r"$")

    def test_rngmux8_has_the_sections_an_admin_looks_for(self):
        text = self.render("rngmux.8", hyphenate=False)
        for heading in ("COMMANDS", "ENDPOINTS", "SOURCES", "SIGNALS", "EXIT STATUS",
                        "ENVIRONMENT", "FILES", "EXAMPLES"):
            self.assertRegex(text, r"(?m)^" + heading + r"$")
        for word in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "NOTIFY_SOCKET", "WATCHDOG_USEC",
                     "JOURNAL_STREAM", "/etc/rngmux/rngmux.toml", "/run/rngmux/control.sock",
                     "/dev/hwrng", "rng-egd", "virtio-rng-pci", "vhost-user-rng-pci",
                     "<backend model='egd'", "rngmux.toml(5)"):
            self.assertIn(word, text)

    def test_every_subcommand_has_a_section(self):
        listed = help_subcommands()
        self.assertEqual(sorted(listed), sorted(SUBCOMMANDS))
        sections = roff_sections(self.page("rngmux.8"))
        for sub in listed:
            self.assertIn("rngmux " + sub, sections,
                          "rngmux(8) has no section for %r (sections: %s)"
                          % (sub, ", ".join(sections)))

    def test_every_help_option_is_in_its_subcommands_section(self):
        sections = roff_sections(self.page("rngmux.8"))
        rendered = self.render("rngmux.8", hyphenate=False)
        top = help_options([])
        self.assertIn("--version", top)
        self.assertIn("-h", top)
        for option in top:
            self.assertTrue(mentions(rendered, option), "rngmux(8) does not mention %s" % option)
        checked = 0
        for sub in help_subcommands():
            options = help_options([sub])
            self.assertIn("--help", options, "no options parsed from rngmux %s --help" % sub)
            body = sections.get("rngmux " + sub, "")
            for option in options:
                if option in ("-h", "--help"):
                    continue  # said once for every subcommand, in DESCRIPTION
                with self.subTest(subcommand=sub, option=option):
                    self.assertTrue(mentions(body, option),
                                    "rngmux(8): section \"rngmux %s\" does not mention %s, which "
                                    "`rngmux %s --help` lists" % (sub, option, sub))
                    self.assertTrue(mentions(rendered, option),
                                    "rngmux(8) as rendered does not show %s" % option)
                    checked += 1
        # serve alone has 16 options besides --help; the parse must have found them.
        self.assertGreater(checked, 50)

    def test_every_key_of_the_example_file_is_in_rngmux_toml5(self):
        text = self.render("rngmux.toml.5", hyphenate=False)
        top, tables, inner = example_keys()
        for key in ("pool-size", "qemu-chardev", "metrics", "allow-test-source"):
            self.assertIn(key, top)  # the example file was parsed
        self.assertEqual(sorted(tables), ["connect", "listen", "source"])
        for key in top + inner:
            with self.subTest(key=key):
                self.assertTrue(mentions(text, key), "rngmux.toml(5) does not mention %r" % key)
        for table in tables:
            self.assertIn("[[%s]]" % table, text)

    def test_toml5_example_is_valid_and_is_the_command_line_it_says(self):
        blocks = literal_blocks(roff_sections(self.page("rngmux.toml.5"))["EXAMPLE"])
        self.assertEqual(len(blocks), 2, blocks)
        toml_text, command = blocks
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "rngmux.toml")
            with open(path, "w") as f:
                f.write(toml_text)
            from_file = run_cli(["check-config", "--config", path], timeout=10)
        self.assertEqual(from_file.returncode, 0, from_file.stderr)
        args = shlex.split(command.replace("\\\n", " "))
        self.assertEqual(args[:2], ["rngmux", "serve"])
        from_flags = run_cli(["check-config"] + args[2:], timeout=10)
        self.assertEqual(from_flags.returncode, 0, from_flags.stderr)
        # The first comment line names the file; the configuration must be the same.
        def settings(proc):
            return [l for l in proc.stdout.decode().splitlines() if not l.startswith("#")]
        self.assertIn('address = "unix:/run/qemu/vm1-rng.sock"', settings(from_file))
        self.assertEqual(settings(from_file), settings(from_flags))


if __name__ == "__main__":
    unittest.main()
