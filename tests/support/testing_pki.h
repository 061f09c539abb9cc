#pragma once

#include <string>

#include "common/status.h"

namespace rngmux {

// A small PKI made in-process with OpenSSL (P-256 keys, SHA-256 signatures), written
// to `dir` in QEMU's and libvirt's layout plus a few certificates tests need to fail
// with. Test-only: the keys are unprotected and made fresh on every call.
//
//   ca-cert.pem                  the CA ("CN=rngmux test CA")
//   ca-crl.pem                   its CRL, revoking revoked-cert.pem only
//   server-cert.pem, -key.pem    CN=rngmux test server, SAN IP:127.0.0.1, DNS:localhost
//   client-cert.pem, -key.pem    "CN=vm1,O=rngmux test"
//   expired-cert.pem, -key.pem   CN=vm-expired, valid until yesterday
//   revoked-cert.pem, -key.pem   CN=vm-revoked, listed in ca-crl.pem
//   unnamed-cert.pem, -key.pem   "O=rngmux test" (no CN), SAN DNS:vm2.example, IP:::1,
//                                DNS:vm2.example again
//   nul-cn-cert.pem, -key.pem    CN "vm1\0.evil" (a NUL inside)
//   other-ca-cert.pem            an unrelated CA
//   other-cert.pem, -key.pem     CN=vm-other, SAN IP:127.0.0.1, signed by the other CA
//
// Errors name the step that failed ("server-cert.pem: write: ...").
Status WriteTestPki(const std::string& dir);

// WriteTestPki into a fresh temporary directory, removed again by the destructor.
// For a test suite's SetUpTestSuite: check status() before using dir().
class TemporaryTestPki {
 public:
  TemporaryTestPki();
  ~TemporaryTestPki();
  TemporaryTestPki(const TemporaryTestPki&) = delete;
  TemporaryTestPki& operator=(const TemporaryTestPki&) = delete;

  const std::string& dir() const { return dir_; }
  const Status& status() const { return status_; }

 private:
  std::string dir_;
  Status status_;
};

}  // namespace rngmux
