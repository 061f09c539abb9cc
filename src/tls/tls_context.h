#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "tls/tls_options.h"

namespace rngmux {

// The largest TLS record rngmux sends (see TlsContext::Make).
inline constexpr int kTlsMaxRecordBytes = 2048;

// An OpenSSL context made from TlsOptions: the files are read here, so a reload
// that makes a new one picks up renewed certificates and keys. TLS 1.2 or later
// (1.3 preferred), Debian's default cipher policy, no renegotiation, no
// compression. Shared by the connections made with it; thread-safe once made.
class TlsContext {
 public:
  // `server`: rngmux accepts the TLS connection (a listen endpoint). Errors name the
  // file and OpenSSL's reason, e.g.
  //   "tls-cert /etc/pki/qemu/server-cert.pem: No such file or directory"
  //   "tls-key /x/server-key.pem: does not match the certificate /x/server-cert.pem"
  static Result<std::shared_ptr<TlsContext>> Make(const TlsOptions& options, bool server);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* native() const { return ctx_; }
  bool server() const { return server_; }
  bool verify() const { return files_.verify; }
  const TlsOptions& options() const { return options_; }

  // A new connection's SSL object (client side: with the expected server name for
  // SNI and verification; `host` is used when tls-name= is not given). nullptr on
  // allocation failure.
  SSL* NewConnection(const std::string& host) const;

 private:
  TlsContext(SSL_CTX* ctx, bool server, TlsOptions options, TlsFiles files);

  SSL_CTX* ctx_;
  bool server_;
  TlsOptions options_;
  TlsFiles files_;
};

// What a verified peer certificate says about its holder.
struct PeerCertificate {
  std::string common_name;         // subject CN ("" if none)
  std::string distinguished_name;  // "CN=vm1,O=Example" (RFC 2253)
  std::vector<std::string> names;  // CN, then DNS and IP SANs, without repeats
};
// The peer's certificate after a handshake; nullopt if it sent none.
std::optional<PeerCertificate> ReadPeerCertificate(SSL* ssl);

// Why a handshake failed, in words, from the verify result and OpenSSL's error
// queue (which it empties): "certificate verify failed: certificate has expired",
// "the client sent no certificate (...)", "wrong version number". `fallback` when neither says.
std::string DescribeTlsFailure(SSL* ssl, const std::string& fallback);

}  // namespace rngmux
