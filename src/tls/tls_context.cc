#include "tls/tls_context.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>

namespace rngmux {
namespace {

// OpenSSL's error queue as one line ("no start line" ...), emptied.
std::string OpenSslErrors() {
  std::string out;
  unsigned long code = 0;
  while ((code = ERR_get_error()) != 0) {
    const char* reason = ERR_reason_error_string(code);
    std::string text = reason != nullptr ? reason : "error " + std::to_string(code);
    if (out.find(text) != std::string::npos) continue;
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

// "tls-cert FILE: No such file or directory" when the file cannot be read at all,
// which OpenSSL's own message hides behind "system lib".
Status Readable(const char* what, const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return Status::Error(std::string(what) + " " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Status::Error(std::string(what) + " " + path + ": not a file");
  if (std::ifstream(path).fail()) {  // after stat: errno is open's
    return Status::Error(std::string(what) + " " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

Status LoadError(const char* what, const std::string& path) {
  return Status::Error(std::string(what) + " " + path + ": " + OpenSslErrors());
}

// A PEM key that needs a pass phrase: PKCS#8 "ENCRYPTED PRIVATE KEY" or the older
// "Proc-Type: 4,ENCRYPTED" header.
bool IsEncryptedKey(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  for (int i = 0; i < 8 && std::getline(in, line); ++i) {
    if (line.find("ENCRYPTED") != std::string::npos) return true;
  }
  return false;
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

Status LoadCrl(SSL_CTX* ctx, const std::string& path) {
  Status readable = Readable("tls-crl", path);
  if (!readable.ok()) return readable;
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  X509_LOOKUP* lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
  if (lookup == nullptr || X509_load_crl_file(lookup, path.c_str(), X509_FILETYPE_PEM) <= 0) {
    return LoadError("tls-crl", path);
  }
  // The peer's own certificate is checked against its issuer's CRL (as GnuTLS does in
  // QEMU); a chain's intermediate CAs need no CRL of their own.
  X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  return Status::Ok();
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

}  // namespace

TlsContext::TlsContext(SSL_CTX* ctx, bool server, TlsOptions options, TlsFiles files)
    : ctx_(ctx), server_(server), options_(std::move(options)), files_(std::move(files)) {}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

Result<std::shared_ptr<TlsContext>> TlsContext::Make(const TlsOptions& options, bool server) {
  Status check = CheckTlsOptions(options, server);
  if (!check.ok()) return check;
  const TlsFiles files = ResolveTlsFiles(options, server);
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (raw == nullptr) return Status::Error("TLS: " + OpenSslErrors());
  std::shared_ptr<TlsContext> context(new TlsContext(raw, server, options, files));
  SSL_CTX* ctx = context->ctx_;
  SSL_CTX_set_min_proto_version(ctx, options.min_tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  // QEMU 7.2 reads a TLS chardev only when its socket turns readable: bytes left
  // decrypted but unread inside its TLS library wait for the next record. With the
  // 4096-byte lead in one record a guest stalls; records of 2048 bytes keep it moving.
  SSL_CTX_set_max_send_fragment(ctx, kTlsMaxRecordBytes);
  // An encrypted key must fail to load, not make OpenSSL ask on the terminal.
  SSL_CTX_set_default_passwd_cb(ctx, [](char*, int, int, void*) { return 0; });

  const bool load_cert = !files.cert.empty() && !(files.cert_optional && !FileExists(files.cert));
  if (load_cert) {
    Status readable = Readable("tls-cert", files.cert);
    if (!readable.ok()) return readable;
    if (SSL_CTX_use_certificate_chain_file(ctx, files.cert.c_str()) != 1) {
      return LoadError("tls-cert", files.cert);
    }
    readable = Readable("tls-key", files.key);
    if (!readable.ok()) return readable;
    if (SSL_CTX_use_PrivateKey_file(ctx, files.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      if (IsEncryptedKey(files.key)) {
        ERR_clear_error();
        return Status::Error("tls-key " + files.key +
                             ": the key is encrypted; rngmux takes an unencrypted key (keep it "
                             "readable by the daemon's user only)");
      }
      Status error = LoadError("tls-key", files.key);
      if (error.message().find("key values mismatch") == std::string::npos) return error;
      return Status::Error("tls-key " + files.key + ": does not match the certificate " +
                           files.cert);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      ERR_clear_error();
      return Status::Error("tls-key " + files.key + ": does not match the certificate " +
                           files.cert);
    }
  }
  if (!files.ca.empty()) {
    Status readable = Readable("tls-ca", files.ca);
    if (!readable.ok()) return readable;
    if (SSL_CTX_load_verify_locations(ctx, files.ca.c_str(), nullptr) != 1) {
      return LoadError("tls-ca", files.ca);
    }
    if (server) {
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.ca.c_str());
      if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
    }
  }
  if (!files.crl.empty() && !(files.crl_optional && !FileExists(files.crl))) {
    Status crl = LoadCrl(ctx, files.crl);
    if (!crl.ok()) return crl;
  }
  if (files.verify) {
    SSL_CTX_set_verify(
        ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (server) {
    // One context per endpoint: its session cache id keeps resumption within it.
    static const unsigned char kSessionContext[] = "rngmux";
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  }
  ERR_clear_error();
  return context;
}

SSL* TlsContext::NewConnection(const std::string& host) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr || server_) return ssl;
  const std::string& name = options_.server_name.empty() ? host : options_.server_name;
  if (name.empty()) return ssl;
  if (IsIpLiteral(name)) {
    if (files_.verify) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, name.c_str());
    if (files_.verify) SSL_set1_host(ssl, name.c_str());
  }
  return ssl;
}

std::optional<PeerCertificate> ReadPeerCertificate(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return std::nullopt;
  PeerCertificate out;
  X509_NAME* subject = X509_get_subject_name(cert);
  // The CN as UTF-8, whole: a name with a NUL or a control character in it is no name
  // (it must not match allow-subject= by its prefix, nor reach the log).
  const int cn_index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (cn_index >= 0) {
    unsigned char* utf8 = nullptr;
    const int length = ASN1_STRING_to_UTF8(
        &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, cn_index)));
    if (length > 0) {
      std::string cn(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
      const bool clean = std::none_of(cn.begin(), cn.end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
      });
      if (clean) {
        out.common_name = cn;
        out.names.push_back(cn);
      }
    }
    OPENSSL_free(utf8);
  }
  if (BIO* bio = BIO_new(BIO_s_mem())) {
    X509_NAME_print_ex(bio, subject, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio, &data);
    if (length > 0) out.distinguished_name.assign(data, static_cast<std::size_t>(length));
    BIO_free(bio);
  }
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* san = sk_GENERAL_NAME_value(sans, i);
    std::string name;
    if (san->type == GEN_DNS) {
      const ASN1_IA5STRING* dns = san->d.dNSName;
      name.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                  static_cast<std::size_t>(ASN1_STRING_length(dns)));
    } else if (san->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = san->d.iPAddress;
      char text[INET6_ADDRSTRLEN] = {};
      const int length = ASN1_STRING_length(ip);
      if (length == 4 || length == 16) {
        inet_ntop(length == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text, sizeof text);
        name = text;
      }
    }
    // Names with control characters or NULs are not names anyone could allow.
    const bool clean = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return static_cast<unsigned char>(c) > ' ' && c != 0x7f;
    });
    if (clean && std::find(out.names.begin(), out.names.end(), name) == out.names.end()) {
      out.names.push_back(name);
    }
  }
  GENERAL_NAMES_free(sans);
  X509_free(cert);
  return out;
}

std::string DescribeTlsFailure(SSL* ssl, const std::string& fallback) {
  std::string errors;
  unsigned long code = 0;
  while ((code = ERR_get_error()) != 0) {
    const char* reason = ERR_reason_error_string(code);
    if (reason == nullptr || errors.find(reason) != std::string::npos) continue;
    if (!errors.empty()) errors += "; ";
    errors += reason;
  }
  // Without tls-verify the chain is still looked at and its result kept: not the reason.
  if (ssl != nullptr && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) != 0) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      return std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
    }
  }
  std::string text = errors.empty() ? fallback : errors;
  // Asio's messages end in OpenSSL's library name: not news to the reader.
  const std::string library = " (SSL routines)";
  if (text.size() > library.size() && text.ends_with(library)) {
    text.resize(text.size() - library.size());
  }
  if (text.find("peer did not return a certificate") != std::string::npos) {
    // GnuTLS (QEMU) and OpenSSL pick the certificate they send by the CA names the
    // server lists: a client holding only one from another CA sends none.
    return "the client sent no certificate (a client whose certificate the CA in the "
           "server's ca-cert.pem did not sign sends none)";
  }
  return text;
}

}  // namespace rngmux
