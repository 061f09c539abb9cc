#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace rngmux {

// TLS settings of one TCP endpoint or one egd: source, as written by the user. Pure
// data: nothing here reads a file (MakeTlsContext does, at start-up and at every reload).
//
// Options (comma-separated, in endpoint and egd: source specs alike):
//   tls                 TLS with the defaults below (implied by every tls-* option)
//   tls-dir=DIR         QEMU's and libvirt's layout: DIR/ca-cert.pem, DIR/ca-crl.pem (if
//                       present), and DIR/server-cert.pem + server-key.pem when rngmux is
//                       the TLS server (listen), DIR/client-cert.pem + client-key.pem (if
//                       present) when it is the client (connect, egd: sources)
//   tls-cert=FILE       certificate chain (PEM); overrides the one tls-dir names
//   tls-key=FILE        its private key (PEM)
//   tls-ca=FILE         CA certificates that vouch for the peer (PEM)
//   tls-crl=FILE        certificate revocation list (PEM)
//   tls-verify=on|off   check the peer's certificate: as a server, require a client
//                       certificate signed by the CA (default on when a CA is given); as
//                       a client, the server's certificate and name (default on)
//   tls-min=1.2|1.3     lowest protocol version (default 1.2; 1.3 is preferred anyway)
//   tls-name=NAME       client side: the name (DNS or IP) the server's certificate must
//                       carry (default: the host of the address)
//   tls-timeout=SECONDS handshake time limit, 1-300 (default 10)
//   allow-subject=NAME[+NAME...]  server side: admit only clients whose verified
//                       certificate has one of these names (subject CN, DNS or IP SAN)
struct TlsOptions {
  static constexpr std::chrono::seconds kDefaultHandshakeTimeout{10};
  static constexpr unsigned kMaxHandshakeTimeoutSeconds = 300;

  bool enabled = false;
  std::string dir;
  std::string cert;
  std::string key;
  std::string ca;
  std::string crl;
  std::optional<bool> verify;  // unset: the default for the side (see above)
  bool min_tls13 = false;      // tls-min=1.3
  std::string server_name;     // tls-name=
  std::chrono::seconds handshake_timeout = kDefaultHandshakeTimeout;
  std::vector<std::string> allow_subjects;

  // The options as written back in a spec: ",tls-dir=/etc/pki/qemu,tls-min=1.3" ("" when off).
  std::string ToOptionText() const;
  bool operator==(const TlsOptions&) const = default;
};

// True for the option keys ParseTlsOption takes ("tls", "tls-*", "allow-subject").
bool IsTlsOptionKey(std::string_view key);

// Applies one option to `options`. `has_value` says whether "=" was written;
// `repeated` that the key came before. Errors are the message after the spec's
// prefix: `tls-verify must be on or off`, `tls-timeout must be 1-300 seconds`,
// `option "tls-ca" given twice`, `allow-subject: empty name in list`.
Status ParseTlsOption(TlsOptions& options, std::string_view key, std::string_view value,
                      bool has_value, bool repeated);

// The files a side uses, after tls-dir is applied (explicit files win). Empty
// strings are files not used. `server`: rngmux accepts the TLS connection.
struct TlsFiles {
  std::string cert;
  std::string key;
  std::string ca;
  std::string crl;
  bool cert_optional = false;  // client side from tls-dir: client-cert.pem may be absent
  bool crl_optional = false;   // from tls-dir: ca-crl.pem may be absent
  bool verify = false;         // the effective tls-verify
};
TlsFiles ResolveTlsFiles(const TlsOptions& options, bool server);

// Checks the combination without touching files, e.g.
//   "TLS on a listen endpoint needs a certificate and key: tls-dir=DIR or
//    tls-cert=FILE and tls-key=FILE"
//   "tls-verify=on needs a CA: tls-ca=FILE or tls-dir=DIR"
//   "allow-subject needs verified client certificates (a CA, and not tls-verify=off)"
//   "tls-name applies only to the connecting side"
Status CheckTlsOptions(const TlsOptions& options, bool server);

}  // namespace rngmux
