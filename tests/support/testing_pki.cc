#include "support/testing_pki.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

namespace rngmux {
namespace {

constexpr long kDaySeconds = 24 * 60 * 60;

struct Freer {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
  void operator()(X509* cert) const { X509_free(cert); }
  void operator()(X509_CRL* crl) const { X509_CRL_free(crl); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Freer>;
using CertPtr = std::unique_ptr<X509, Freer>;
using CrlPtr = std::unique_ptr<X509_CRL, Freer>;

struct Identity {
  KeyPtr key;
  CertPtr cert;
};

struct CertSpec {
  std::vector<std::pair<const char*, std::string>> subject;  // {"O", ...}, {"CN", ...}
  long serial = 1;
  long not_before = -kDaySeconds;  // seconds from now
  long not_after = 30 * kDaySeconds;
  bool ca = false;
  std::string san;  // "IP:127.0.0.1,DNS:localhost"
};

bool AddExtension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// Signs with `issuer` (self-signed when null).
Result<Identity> MakeIdentity(const CertSpec& spec, const Identity* issuer) {
  Identity out;
  out.key.reset(EVP_EC_gen("P-256"));
  out.cert.reset(X509_new());
  if (!out.key || !out.cert) return Status::Error("key or certificate allocation");
  X509* cert = out.cert.get();
  X509_set_version(cert, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), spec.serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), spec.not_before);
  X509_gmtime_adj(X509_getm_notAfter(cert), spec.not_after);
  X509_NAME* name = X509_get_subject_name(cert);
  for (const auto& [field, value] : spec.subject) {
    if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.data()),
                                   static_cast<int>(value.size()), -1, 0) != 1) {
      return Status::Error(std::string("subject field ") + field);
    }
  }
  X509* issuer_cert = issuer != nullptr ? issuer->cert.get() : cert;
  EVP_PKEY* issuer_key = issuer != nullptr ? issuer->key.get() : out.key.get();
  X509_set_issuer_name(cert, X509_get_subject_name(issuer_cert));
  X509_set_pubkey(cert, out.key.get());

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer_cert, cert, nullptr, nullptr, 0);
  bool ok = AddExtension(cert, &ctx, NID_subject_key_identifier, "hash") &&
            AddExtension(cert, &ctx, NID_authority_key_identifier, "keyid:always");
  if (spec.ca) {
    ok = ok && AddExtension(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE") &&
         AddExtension(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    ok = ok && AddExtension(cert, &ctx, NID_basic_constraints, "critical,CA:FALSE") &&
         AddExtension(cert, &ctx, NID_key_usage, "critical,digitalSignature,keyAgreement") &&
         AddExtension(cert, &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  if (!spec.san.empty()) ok = ok && AddExtension(cert, &ctx, NID_subject_alt_name, spec.san);
  if (!ok) return Status::Error("certificate extensions");
  if (X509_sign(cert, issuer_key, EVP_sha256()) == 0) return Status::Error("signing");
  return out;
}

Result<CrlPtr> MakeCrl(const Identity& ca, long revoked_serial) {
  CrlPtr crl(X509_CRL_new());
  if (!crl) return Status::Error("CRL allocation");
  X509_CRL_set_version(crl.get(), 1);  // v2
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.cert.get()));
  ASN1_TIME* last = X509_gmtime_adj(nullptr, -kDaySeconds);
  ASN1_TIME* next = X509_gmtime_adj(nullptr, 30 * kDaySeconds);
  X509_CRL_set1_lastUpdate(crl.get(), last);
  X509_CRL_set1_nextUpdate(crl.get(), next);
  X509_REVOKED* revoked = X509_REVOKED_new();
  ASN1_INTEGER* serial = ASN1_INTEGER_new();
  ASN1_INTEGER_set(serial, revoked_serial);
  X509_REVOKED_set_serialNumber(revoked, serial);
  X509_REVOKED_set_revocationDate(revoked, last);
  X509_CRL_add0_revoked(crl.get(), revoked);
  ASN1_INTEGER_free(serial);
  ASN1_TIME_free(last);
  ASN1_TIME_free(next);
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), ca.key.get(), EVP_sha256()) == 0) {
    return Status::Error("CRL signing");
  }
  return crl;
}

template <typename Write>
Status WriteFile(const std::string& dir, const std::string& name, Write write) {
  const std::string path = dir + "/" + name;
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) return Status::FromErrno(name + ": open", errno);
  const bool ok = write(file);
  const bool closed = std::fclose(file) == 0;
  if (!ok || !closed) return Status::Error(name + ": write");
  return Status::Ok();
}

Status WriteIdentity(const std::string& dir, const std::string& prefix, const Identity& id,
                     bool with_key = true) {
  Status cert = WriteFile(dir, prefix + "-cert.pem",
                          [&](std::FILE* f) { return PEM_write_X509(f, id.cert.get()) == 1; });
  if (!cert.ok() || !with_key) return cert;
  return WriteFile(dir, prefix + "-key.pem", [&](std::FILE* f) {
    return PEM_write_PrivateKey(f, id.key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  });
}

}  // namespace

Status WriteTestPki(const std::string& dir) {
  constexpr long kRevokedSerial = 66;
  auto spec = [](std::vector<std::pair<const char*, std::string>> subject, long serial) {
    CertSpec out;
    out.subject = std::move(subject);
    out.serial = serial;
    return out;
  };
  CertSpec ca_spec = spec({{"CN", "rngmux test CA"}}, 1);
  ca_spec.ca = true;
  CertSpec other_ca_spec = spec({{"CN", "rngmux other CA"}}, 1);
  other_ca_spec.ca = true;
  auto ca = MakeIdentity(ca_spec, nullptr);
  auto other_ca = MakeIdentity(other_ca_spec, nullptr);
  if (!ca.ok()) return ca.status();
  if (!other_ca.ok()) return other_ca.status();

  struct Made {
    const char* file_prefix;
    CertSpec spec;
    bool other_ca;
  };
  std::vector<Made> made;
  made.push_back({"server", spec({{"CN", "rngmux test server"}}, 2), false});
  made.back().spec.san = "IP:127.0.0.1,DNS:localhost";
  made.push_back({"client", spec({{"O", "rngmux test"}, {"CN", "vm1"}}, 3), false});
  made.push_back({"expired", spec({{"CN", "vm-expired"}}, 4), false});
  made.back().spec.not_before = -30 * kDaySeconds;
  made.back().spec.not_after = -kDaySeconds;
  made.push_back({"revoked", spec({{"CN", "vm-revoked"}}, kRevokedSerial), false});
  made.push_back({"other", spec({{"CN", "vm-other"}}, 2), true});
  made.back().spec.san = "IP:127.0.0.1";
  made.push_back({"nul-cn", spec({{"CN", std::string("vm1\0.evil", 9)}}, 6), false});
  made.push_back({"unnamed", spec({{"O", "rngmux test"}}, 5), false});
  made.back().spec.san = "DNS:vm2.example,IP:::1,DNS:vm2.example";
  Status status = WriteIdentity(dir, "ca", *ca, /*with_key=*/false);
  if (!status.ok()) return status;
  status = WriteIdentity(dir, "other-ca", *other_ca, /*with_key=*/false);
  if (!status.ok()) return status;
  for (const Made& m : made) {
    auto id = MakeIdentity(m.spec, m.other_ca ? &*other_ca : &*ca);
    if (!id.ok()) return Status::Error(std::string(m.file_prefix) + ": " + id.status().message());
    status = WriteIdentity(dir, m.file_prefix, *id);
    if (!status.ok()) return status;
  }
  auto crl = MakeCrl(*ca, kRevokedSerial);
  if (!crl.ok()) return crl.status();
  return WriteFile(dir, "ca-crl.pem",
                   [&](std::FILE* f) { return PEM_write_X509_CRL(f, crl->get()) == 1; });
}

TemporaryTestPki::TemporaryTestPki() {
  char dir_template[] = "/tmp/rngmux-test-pki-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    status_ = Status::FromErrno("mkdtemp", errno);
    return;
  }
  dir_ = dir_template;
  status_ = WriteTestPki(dir_);
}

TemporaryTestPki::~TemporaryTestPki() {
  if (dir_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

}  // namespace rngmux
