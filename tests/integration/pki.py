"""A throw-away test PKI in QEMU's and libvirt's directory layout, made with the openssl CLI.

    import pki
    p = pki.get()                          # made once per process (about a second), cached
    p.dir(pki.RNGMUX_SERVER)               # .../rngmux-server: ca-cert.pem, ca-crl.pem,
                                           #   server-cert.pem, server-key.pem
    p.dir(pki.QEMU_CLIENT)                 # .../qemu-client: ca-cert.pem, ca-crl.pem,
                                           #   client-cert.pem (CN=qemu-vm1), client-key.pem
    p.subject(pki.RNGMUX_CLIENT, "client") # "O=rngmux-test,CN=rngmux": what QEMU's
                                           #   authz-simple compares (see subject())

Every directory is what QEMU's `-object tls-creds-x509,dir=DIR` and rngmux's `tls-dir=DIR`
read (QEMU's docs/system/tls.rst): ca-cert.pem always, server-cert.pem + server-key.pem for
the listening side, client-cert.pem + client-key.pem for the connecting side, ca-crl.pem
(the good CA's revocation list, valid for ten years, revoking REVOKED_CLIENT's and
REVOKED_SERVER's certificates) beside every good ca-cert.pem.

Directories (the constants are their names):
  RNGMUX_SERVER   rngmux listens: server certificate CN=rngmux, SAN IP:127.0.0.1,
                  IP:::1, DNS:localhost
  RNGMUX_CLIENT   rngmux connects: client certificate CN=rngmux
  QEMU_SERVER     QEMU listens: server certificate CN=qemu-host, same SANs
  QEMU_CLIENT     QEMU connects: client certificate CN=qemu-vm1
  BOTH            a libvirt-style directory holding both pairs (server CN=rngmux,
                  client CN=rngmux): one tls-dir for a daemon that listens and connects
Certificates a verifying peer must refuse (ca-cert.pem is the good CA, so the holder
itself trusts its peer; only its own certificate is bad; QEMU refuses to start with any of
them unless its tls-creds-x509 object says sanity-check=off, seen for OTHER_CA_CLIENT):
  OTHER_CA_CLIENT, OTHER_CA_SERVER     signed by another CA (CN=qemu-vm1 / CN=rngmux,
                                       SANs as above): "unknown CA"
  EXPIRED_CLIENT, EXPIRED_SERVER       valid 2020-01-01 to 2021-01-01 only (QEMU itself
                                       refuses to load them unless sanity-check=off)
  WRONG_HOST_SERVER                    SAN IP:10.9.9.9 only (CN=wrong-host): a client
                                       connecting to 127.0.0.1 must refuse it
  REVOKED_CLIENT, REVOKED_SERVER       revoked in ca-crl.pem (CN=revoked-client /
                                       CN=revoked-server, SANs as above)
OTHER_CA is a directory with the other CA's ca-cert.pem alone (a peer that trusts only it).

Keys are ECDSA P-256 (fast to make; GnuTLS in QEMU and OpenSSL both take them).
Certificates carry the extensions QEMU's sanity check wants: basicConstraints CA:FALSE,
keyUsage digitalSignature+keyEncipherment, extendedKeyUsage serverAuth or clientAuth; CAs
basicConstraints CA:TRUE and keyUsage keyCertSign+cRLSign.

get() makes the PKI in a temp dir removed at exit, or, with $RNGMUX_TEST_PKI set, in that
directory (made once and reused by later runs and processes: built aside and renamed into
place, so concurrent makers never see half a PKI).
"""

import atexit
import datetime
import os
import shutil
import subprocess
import tempfile

RNGMUX_SERVER = "rngmux-server"
RNGMUX_CLIENT = "rngmux-client"
QEMU_SERVER = "qemu-server"
QEMU_CLIENT = "qemu-client"
BOTH = "both"
OTHER_CA_CLIENT = "other-ca-client"
OTHER_CA_SERVER = "other-ca-server"
EXPIRED_CLIENT = "expired-client"
EXPIRED_SERVER = "expired-server"
WRONG_HOST_SERVER = "wrong-host-server"
REVOKED_CLIENT = "revoked-client"
REVOKED_SERVER = "revoked-server"
OTHER_CA = "other-ca"

ORGANIZATION = "rngmux-test"
LOOPBACK_SANS = "IP:127.0.0.1,IP:::1,DNS:localhost"
EXPIRED_DATES = ("20200101000000Z", "20210101000000Z")
OPENSSL_TIMEOUT = 30
# Bumped when the layout or a certificate changes, so a cached $RNGMUX_TEST_PKI is remade.
VERSION = "1"

_CA_CONFIG = """\
[ ca ]
default_ca = ca_default

[ ca_default ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_crl_days = 3650
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[ policy_any ]
organizationName = optional
commonName = supplied

[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ server_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = ${{ENV::RNGMUX_PKI_SAN}}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class PkiError(RuntimeError):
    pass


def _openssl(args, cwd, env=None):
    proc = subprocess.run(["openssl"] + args, cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=OPENSSL_TIMEOUT,
                          env=dict(os.environ, **dict({"RNGMUX_PKI_SAN": LOOPBACK_SANS}, **(env or {}))))
    if proc.returncode != 0:
        raise PkiError("openssl %s failed (rc=%d): %s"
                       % (" ".join(args), proc.returncode,
                          proc.stderr.decode("utf-8", "replace").strip()[-2000:]))
    return proc.stdout.decode("utf-8", "replace")


class _Ca:
    """One CA run with `openssl ca` (its database lets it revoke and issue CRLs)."""

    def __init__(self, root, name):
        self.dir = os.path.join(root, "ca-" + name)
        os.makedirs(os.path.join(self.dir, "issued"))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(self.dir, "crlnumber"), "w") as f:
            f.write("1000\n")
        self.config = os.path.join(self.dir, "openssl.cnf")
        with open(self.config, "w") as f:
            f.write(_CA_CONFIG.format(dir=self.dir))
        self.key = os.path.join(self.dir, "ca-key.pem")
        self.cert = os.path.join(self.dir, "ca-cert.pem")
        _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-out", self.key], self.dir)
        # Self-signed through `openssl ca -selfsign` so the start date can lie in the past
        # (the expired certificates must fall inside the CA's validity).
        csr = os.path.join(self.dir, "ca.csr")
        _openssl(["req", "-new", "-config", self.config, "-key", self.key,
                  "-subj", "/O=%s/CN=rngmux test CA %s" % (ORGANIZATION, name), "-out", csr],
                 self.dir)
        _openssl(["ca", "-batch", "-notext", "-config", self.config, "-selfsign",
                  "-keyfile", self.key, "-in", csr, "-out", self.cert, "-extensions", "ca_ext",
                  "-startdate", "20190101000000Z", "-enddate", _years_from_now(20)], self.dir)

    def issue(self, out_dir, kind, cn, sans=LOOPBACK_SANS, dates=None):
        """Writes out_dir/{kind}-cert.pem and {kind}-key.pem (kind "server" or "client");
        returns the certificate's path."""
        cert = os.path.join(out_dir, "%s-cert.pem" % kind)
        key = os.path.join(out_dir, "%s-key.pem" % kind)
        csr = os.path.join(out_dir, "%s.csr" % kind)
        _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-out", key], out_dir)
        _openssl(["req", "-new", "-config", self.config, "-key", key,
                  "-subj", "/O=%s/CN=%s" % (ORGANIZATION, cn), "-out", csr], out_dir)
        start, end = dates or (_days_from_now(-1), _years_from_now(10))
        _openssl(["ca", "-batch", "-notext", "-config", self.config, "-cert", self.cert,
                  "-keyfile", self.key, "-in", csr, "-out", cert, "-extensions", kind + "_ext",
                  "-startdate", start, "-enddate", end], out_dir,
                 env={"RNGMUX_PKI_SAN": sans})
        os.unlink(csr)
        os.chmod(key, 0o600)
        return cert

    def revoke(self, cert):
        _openssl(["ca", "-batch", "-config", self.config, "-cert", self.cert, "-keyfile",
                  self.key, "-revoke", cert], self.dir)

    def crl(self, out):
        # lastUpdate a day back: a CRL "not yet valid" by a second would refuse everyone
        _openssl(["ca", "-batch", "-config", self.config, "-cert", self.cert, "-keyfile",
                  self.key, "-gencrl", "-crl_lastupdate", _days_from_now(-1),
                  "-crl_nextupdate", _years_from_now(10), "-out", out], self.dir)


def _utc(delta):
    return (datetime.datetime.now(datetime.timezone.utc) + delta).strftime("%Y%m%d%H%M%SZ")


def _days_from_now(days):
    return _utc(datetime.timedelta(days=days))


def _years_from_now(years):
    return _utc(datetime.timedelta(days=365 * years))


class Pki:
    """A made PKI: `root` holds one directory per name above."""

    def __init__(self, root):
        self.root = root

    def dir(self, name):
        """The directory `name` (one of the constants), for tls-dir= or QEMU's dir=."""
        path = os.path.join(self.root, name)
        if not os.path.isdir(path):
            raise KeyError("no PKI directory %r in %s" % (name, self.root))
        return path

    def file(self, name, filename):
        """dir(name)/filename, e.g. file(QEMU_CLIENT, "client-cert.pem")."""
        return os.path.join(self.dir(name), filename)

    def subject(self, name, kind):
        """The subject DN of dir(name)/{kind}-cert.pem as QEMU 7.2 sees it (GnuTLS's
        gnutls_x509_crt_get_dn: the certificate's order, "O=rngmux-test,CN=rngmux"), the
        text QEMU's authz-simple compares with `identity=` (seen: the RFC 4514 order
        "CN=rngmux,O=rngmux-test" is denied). On QEMU's command line every "," in it must
        be doubled: identity=O=rngmux-test,,CN=rngmux."""
        out = _openssl(["x509", "-noout", "-subject", "-nameopt", "RFC2253,-dn_rev", "-in",
                        self.file(name, "%s-cert.pem" % kind)], self.root).strip()
        return out.split("=", 1)[1] if out.startswith("subject=") else out


def make(root):
    """Makes the whole PKI under `root` (which must not exist yet) and returns a Pki."""
    work = os.path.join(root, ".ca")
    os.makedirs(work)
    good = _Ca(work, "good")
    other = _Ca(work, "other")

    def layout(name, ca_cert=good.cert):
        d = os.path.join(root, name)
        os.makedirs(d)
        shutil.copyfile(ca_cert, os.path.join(d, "ca-cert.pem"))
        return d

    good.issue(layout(RNGMUX_SERVER), "server", "rngmux")
    good.issue(layout(RNGMUX_CLIENT), "client", "rngmux")
    good.issue(layout(QEMU_SERVER), "server", "qemu-host")
    good.issue(layout(QEMU_CLIENT), "client", "qemu-vm1")
    both = layout(BOTH)
    good.issue(both, "server", "rngmux")
    good.issue(both, "client", "rngmux")
    other.issue(layout(OTHER_CA_CLIENT), "client", "qemu-vm1")
    other.issue(layout(OTHER_CA_SERVER), "server", "rngmux")
    good.issue(layout(EXPIRED_CLIENT), "client", "expired-client", dates=EXPIRED_DATES)
    good.issue(layout(EXPIRED_SERVER), "server", "expired-server", dates=EXPIRED_DATES)
    good.issue(layout(WRONG_HOST_SERVER), "server", "wrong-host", sans="IP:10.9.9.9")
    good.revoke(good.issue(layout(REVOKED_CLIENT), "client", "revoked-client"))
    good.revoke(good.issue(layout(REVOKED_SERVER), "server", "revoked-server"))
    layout(OTHER_CA, ca_cert=other.cert)

    crl = os.path.join(work, "ca-crl.pem")
    good.crl(crl)
    for name in os.listdir(root):
        d = os.path.join(root, name)
        if name != OTHER_CA and not name.startswith("."):
            shutil.copyfile(crl, os.path.join(d, "ca-crl.pem"))
    with open(os.path.join(root, "VERSION"), "w") as f:
        f.write(VERSION + "\n")
    return Pki(root)


_cached = None


def get():
    """The PKI of this process: made on first use (in $RNGMUX_TEST_PKI if set and not
    made there yet, else in a temp dir removed at exit), then reused."""
    global _cached
    if _cached is not None:
        return _cached
    shared = os.environ.get("RNGMUX_TEST_PKI")
    if shared:
        try:
            with open(os.path.join(shared, "VERSION")) as f:
                current = f.read().strip() == VERSION
        except OSError:
            current = False
        if not current:
            parent = os.path.dirname(os.path.abspath(shared)) or "."
            os.makedirs(parent, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".rngmux-pki-", dir=parent)
            make(os.path.join(staging, "pki"))
            if os.path.isdir(shared):
                shutil.rmtree(shared, ignore_errors=True)
            try:
                os.rename(os.path.join(staging, "pki"), shared)
            except OSError:
                pass  # another process put a complete one in place first
            shutil.rmtree(staging, ignore_errors=True)
        _cached = Pki(shared)
        return _cached
    tmp = tempfile.mkdtemp(prefix="rngmux-pki-")
    atexit.register(shutil.rmtree, tmp, True)
    _cached = make(os.path.join(tmp, "pki"))
    return _cached


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python3 pki.py DIR   (makes the test PKI in DIR)\n")
        sys.exit(2)
    p = make(sys.argv[1])
    for entry in sorted(os.listdir(p.root)):
        if not entry.startswith(".") and os.path.isdir(os.path.join(p.root, entry)):
            print("%-18s %s" % (entry, " ".join(sorted(os.listdir(p.dir(entry))))))
