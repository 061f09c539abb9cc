#include "tls/tls_context.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/testing_pki.h"

namespace rngmux {
namespace {

// How one side's handshake ended.
struct SideOutcome {
  bool done = false;
  bool ok = false;
  std::string error;  // DescribeTlsFailure's words when !ok
};

// A server and a client SSL over a nonblocking socketpair, driven in this thread.
class SslPair {
 public:
  SslPair(const TlsContext& server, const TlsContext& client, const std::string& host) {
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds_), 0);
    server_ = server.NewConnection("");
    client_ = client.NewConnection(host);
    EXPECT_NE(server_, nullptr);
    EXPECT_NE(client_, nullptr);
    SSL_set_fd(server_, fds_[0]);
    SSL_set_fd(client_, fds_[1]);
    SSL_set_accept_state(server_);
    SSL_set_connect_state(client_);
  }
  ~SslPair() {
    SSL_free(server_);
    SSL_free(client_);
    close(fds_[0]);
    close(fds_[1]);
  }
  SslPair(const SslPair&) = delete;
  SslPair& operator=(const SslPair&) = delete;

  SSL* server() const { return server_; }
  SSL* client() const { return client_; }
  int server_fd() const { return fds_[0]; }
  int client_fd() const { return fds_[1]; }

  // Runs both handshakes until each has succeeded or failed (at most ~10 s). A side
  // that fails shuts its socket for writing, so the other cannot wait forever.
  void Handshake() {
    for (int round = 0; round < 200 && !(server_outcome.done && client_outcome.done); ++round) {
      Step(server_, fds_[0], &server_outcome);
      Step(client_, fds_[1], &client_outcome);
      pollfd polls[2] = {{fds_[0], POLLIN, 0}, {fds_[1], POLLIN, 0}};
      poll(polls, 2, 50);
    }
  }

  SideOutcome server_outcome;
  SideOutcome client_outcome;

 private:
  static void Step(SSL* ssl, int fd, SideOutcome* outcome) {
    if (outcome->done) return;
    ERR_clear_error();
    const int result = SSL_do_handshake(ssl);
    if (result == 1) {
      outcome->done = outcome->ok = true;
      return;
    }
    const int error = SSL_get_error(ssl, result);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return;
    outcome->done = true;
    outcome->error = DescribeTlsFailure(ssl, "SSL error " + std::to_string(error));
    shutdown(fd, SHUT_WR);
  }

  int fds_[2] = {-1, -1};
  SSL* server_ = nullptr;
  SSL* client_ = nullptr;
};

constexpr const char* kNoClientCertificate =
    "the client sent no certificate (a client whose certificate the CA in the server's "
    "ca-cert.pem did not sign sends none)";

class TlsContextTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TemporaryTestPki();
    ASSERT_TRUE(pki_->status().ok()) << pki_->status().message();
    dir_ = pki_->dir();
  }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }

  static std::string Path(const std::string& name) { return dir_ + "/" + name; }

  // A listen side from the whole directory: client certificates required, CRL checked.
  static TlsOptions ServerOptions() {
    TlsOptions options;
    options.enabled = true;
    options.dir = dir_;
    return options;
  }
  // A connecting side trusting the test CA, presenting `prefix`-cert.pem if given.
  static TlsOptions ClientOptions(const std::string& prefix) {
    TlsOptions options;
    options.enabled = true;
    options.ca = Path("ca-cert.pem");
    options.crl = Path("ca-crl.pem");
    if (!prefix.empty()) {
      options.cert = Path(prefix + "-cert.pem");
      options.key = Path(prefix + "-key.pem");
    }
    return options;
  }

  static std::shared_ptr<TlsContext> Make(const TlsOptions& options, bool server) {
    auto context = TlsContext::Make(options, server);
    EXPECT_TRUE(context.ok()) << context.status().message();
    return context.ok() ? *context : nullptr;
  }

  static std::string MakeError(const TlsOptions& options, bool server) {
    auto context = TlsContext::Make(options, server);
    return context.ok() ? "OK" : context.status().message();
  }

  static TemporaryTestPki* pki_;
  static std::string dir_;
};

TemporaryTestPki* TlsContextTest::pki_ = nullptr;
std::string TlsContextTest::dir_;

TEST_F(TlsContextTest, MissingFilesAreNamed) {
  TlsOptions cert = ServerOptions();
  cert.cert = Path("nope-cert.pem");
  EXPECT_EQ(MakeError(cert, true),
            "tls-cert " + Path("nope-cert.pem") + ": No such file or directory");

  TlsOptions key = ServerOptions();
  key.key = Path("nope-key.pem");
  EXPECT_EQ(MakeError(key, true),
            "tls-key " + Path("nope-key.pem") + ": No such file or directory");

  TlsOptions ca = ClientOptions("client");
  ca.ca = Path("nope-ca.pem");
  EXPECT_EQ(MakeError(ca, false), "tls-ca " + Path("nope-ca.pem") + ": No such file or directory");

  TlsOptions crl = ClientOptions("client");
  crl.crl = Path("nope-crl.pem");
  EXPECT_EQ(MakeError(crl, false),
            "tls-crl " + Path("nope-crl.pem") + ": No such file or directory");

  // A tls-dir without the server's files: the first one missing is named.
  TlsOptions empty_dir;
  empty_dir.enabled = true;
  empty_dir.dir = Path("no-such-dir");
  EXPECT_EQ(MakeError(empty_dir, true),
            "tls-cert " + Path("no-such-dir") + "/server-cert.pem: No such file or directory");
  // The client side needs no certificate of its own, but the CA.
  EXPECT_EQ(MakeError(empty_dir, false),
            "tls-ca " + Path("no-such-dir") + "/ca-cert.pem: No such file or directory");
}

TEST_F(TlsContextTest, UnreadableFilesGiveOneLine) {
  const std::string garbage = Path("garbage.pem");
  std::ofstream(garbage) << "not a certificate\n";
  const std::string directory = Path("a-directory.pem");
  std::filesystem::create_directory(directory);

  TlsOptions as_dir = ServerOptions();
  as_dir.cert = directory;
  EXPECT_EQ(MakeError(as_dir, true), "tls-cert " + directory + ": not a file");

  for (std::string TlsOptions::*field :
       {&TlsOptions::cert, &TlsOptions::key, &TlsOptions::ca, &TlsOptions::crl}) {
    TlsOptions options = ServerOptions();
    options.*field = garbage;
    const std::string error = MakeError(options, true);
    const std::string what = field == &TlsOptions::cert  ? "tls-cert"
                             : field == &TlsOptions::key ? "tls-key"
                             : field == &TlsOptions::ca  ? "tls-ca"
                                                         : "tls-crl";
    EXPECT_EQ(error.rfind(what + " " + garbage + ": ", 0), 0u) << error;
    EXPECT_GT(error.size(), what.size() + garbage.size() + 3) << error;  // a reason follows
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
  EXPECT_EQ(ERR_peek_error(), 0u);  // nothing left behind for the next handshake
}

TEST_F(TlsContextTest, KeyNotMatchingTheCertificateIsRefused) {
  TlsOptions options = ServerOptions();
  options.key = Path("client-key.pem");
  EXPECT_EQ(MakeError(options, true), "tls-key " + Path("client-key.pem") +
                                          ": does not match the certificate " +
                                          Path("server-cert.pem"));
}

TEST_F(TlsContextTest, GoodDirectoryMakesBothSides) {
  auto server = Make(ServerOptions(), true);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->server());
  EXPECT_TRUE(server->verify());

  TlsOptions client_options;
  client_options.enabled = true;
  client_options.dir = dir_;
  auto client = Make(client_options, false);
  ASSERT_NE(client, nullptr);
  EXPECT_FALSE(client->server());
  EXPECT_TRUE(client->verify());

  // A client directory with only the CA (QEMU's minimal client layout): no client
  // certificate and no CRL needed.
  const std::string ca_only = Path("ca-only");
  std::filesystem::create_directory(ca_only);
  std::filesystem::copy_file(Path("ca-cert.pem"), ca_only + "/ca-cert.pem",
                             std::filesystem::copy_options::overwrite_existing);
  client_options.dir = ca_only;
  EXPECT_EQ(MakeError(client_options, false), "OK");
}

TEST_F(TlsContextTest, MutualTlsSucceedsAndNamesThePeers) {
  auto server = Make(ServerOptions(), true);
  auto client = Make(ClientOptions("client"), false);
  ASSERT_TRUE(server && client);
  SslPair pair(*server, *client, "127.0.0.1");
  pair.Handshake();
  ASSERT_TRUE(pair.server_outcome.ok) << pair.server_outcome.error;
  ASSERT_TRUE(pair.client_outcome.ok) << pair.client_outcome.error;
  EXPECT_EQ(SSL_version(pair.client()), TLS1_3_VERSION);

  auto vm = ReadPeerCertificate(pair.server());
  ASSERT_TRUE(vm.has_value());
  EXPECT_EQ(vm->common_name, "vm1");
  EXPECT_EQ(vm->distinguished_name, "CN=vm1,O=rngmux test");
  EXPECT_EQ(vm->names, std::vector<std::string>{"vm1"});

  auto host = ReadPeerCertificate(pair.client());
  ASSERT_TRUE(host.has_value());
  EXPECT_EQ(host->common_name, "rngmux test server");
  EXPECT_EQ(host->names,
            (std::vector<std::string>{"rngmux test server", "127.0.0.1", "localhost"}));
}

TEST_F(TlsContextTest, PeerNamesWithoutCommonName) {
  auto server = Make(ServerOptions(), true);
  auto client = Make(ClientOptions("unnamed"), false);
  ASSERT_TRUE(server && client);
  SslPair pair(*server, *client, "127.0.0.1");
  pair.Handshake();
  ASSERT_TRUE(pair.server_outcome.ok) << pair.server_outcome.error;
  auto peer = ReadPeerCertificate(pair.server());
  ASSERT_TRUE(peer.has_value());
  EXPECT_EQ(peer->common_name, "");
  EXPECT_EQ(peer->distinguished_name, "O=rngmux test");
  EXPECT_EQ(peer->names, (std::vector<std::string>{"vm2.example", "::1"}));  // no repeats
}

TEST_F(TlsContextTest, CommonNameWithNulIsNoName) {
  auto server = Make(ServerOptions(), true);
  auto client = Make(ClientOptions("nul-cn"), false);
  ASSERT_TRUE(server && client);
  SslPair pair(*server, *client, "127.0.0.1");
  pair.Handshake();
  ASSERT_TRUE(pair.server_outcome.ok) << pair.server_outcome.error;
  auto peer = ReadPeerCertificate(pair.server());
  ASSERT_TRUE(peer.has_value());
  EXPECT_EQ(peer->common_name, "");  // not "vm1", which allow-subject=vm1 would admit
  EXPECT_TRUE(peer->names.empty());
}

TEST_F(TlsContextTest, DnsNameAndTlsNameAreChecked) {
  auto server = Make(ServerOptions(), true);
  auto client = Make(ClientOptions("client"), false);
  {
    SslPair pair(*server, *client, "localhost");
    pair.Handshake();
    EXPECT_TRUE(pair.client_outcome.ok) << pair.client_outcome.error;
    EXPECT_TRUE(pair.server_outcome.ok) << pair.server_outcome.error;
  }
  {
    SslPair pair(*server, *client, "wrong.example");
    pair.Handshake();
    EXPECT_FALSE(pair.client_outcome.ok);
    EXPECT_EQ(pair.client_outcome.error, "certificate verify failed: hostname mismatch");
  }
  // tls-name= wins over the host of the address.
  TlsOptions named = ClientOptions("client");
  named.server_name = "localhost";
  auto named_client = Make(named, false);
  SslPair pair(*server, *named_client, "10.9.9.9");
  pair.Handshake();
  EXPECT_TRUE(pair.client_outcome.ok) << pair.client_outcome.error;
}

TEST_F(TlsContextTest, ClientSendsServerNameForDnsNamesOnly) {
  auto client = Make(ClientOptions("client"), false);
  ASSERT_NE(client, nullptr);
  SSL* by_name = client->NewConnection("localhost");
  SSL* by_address = client->NewConnection("127.0.0.1");
  ASSERT_TRUE(by_name && by_address);
  const char* sni = SSL_get_servername(by_name, TLSEXT_NAMETYPE_host_name);
  EXPECT_STREQ(sni != nullptr ? sni : "(none)", "localhost");
  EXPECT_EQ(SSL_get_servername(by_address, TLSEXT_NAMETYPE_host_name), nullptr);  // RFC 6066
  SSL_free(by_name);
  SSL_free(by_address);
}

TEST_F(TlsContextTest, VerifyOffTrustsAnyServer) {
  // A server of another CA that asks for no client certificate.
  TlsOptions server_options;
  server_options.enabled = true;
  server_options.cert = Path("other-cert.pem");
  server_options.key = Path("other-key.pem");
  auto server = Make(server_options, true);
  ASSERT_NE(server, nullptr);
  EXPECT_FALSE(server->verify());
  TlsOptions unverified;
  unverified.enabled = true;
  unverified.verify = false;
  auto client = Make(unverified, false);
  ASSERT_NE(client, nullptr);
  SslPair pair(*server, *client, "10.9.9.9");
  pair.Handshake();
  EXPECT_TRUE(pair.client_outcome.ok) << pair.client_outcome.error;
  EXPECT_TRUE(pair.server_outcome.ok) << pair.server_outcome.error;
  EXPECT_FALSE(ReadPeerCertificate(pair.server()).has_value());  // none was asked for
}

TEST_F(TlsContextTest, WrongAddressIsRefused) {
  auto server = Make(ServerOptions(), true);
  auto client = Make(ClientOptions("client"), false);
  SslPair pair(*server, *client, "10.9.9.9");
  pair.Handshake();
  EXPECT_FALSE(pair.client_outcome.ok);
  EXPECT_EQ(pair.client_outcome.error, "certificate verify failed: IP address mismatch");
  EXPECT_FALSE(pair.server_outcome.ok);  // the client's alert ends the server's side too
}

TEST_F(TlsContextTest, ServerRefusesClientCertificates) {
  auto server = Make(ServerOptions(), true);
  const std::pair<const char*, const char*> cases[] = {
      {"other", "certificate verify failed: unable to get local issuer certificate"},
      {"expired", "certificate verify failed: certificate has expired"},
      {"revoked", "certificate verify failed: certificate revoked"},
      {"", kNoClientCertificate},
  };
  for (const auto& [prefix, reason] : cases) {
    auto client = Make(ClientOptions(prefix), false);
    ASSERT_NE(client, nullptr) << prefix;
    SslPair pair(*server, *client, "127.0.0.1");
    pair.Handshake();
    EXPECT_TRUE(pair.server_outcome.done) << prefix;
    EXPECT_FALSE(pair.server_outcome.ok) << prefix;
    EXPECT_EQ(pair.server_outcome.error, reason) << prefix;
  }
}

TEST_F(TlsContextTest, ClientRefusesServerCertificates) {
  const std::pair<const char*, const char*> cases[] = {
      {"other", "certificate verify failed: unable to get local issuer certificate"},
      {"expired", "certificate verify failed: certificate has expired"},
      {"revoked", "certificate verify failed: certificate revoked"},
  };
  for (const auto& [prefix, reason] : cases) {
    TlsOptions server_options = ServerOptions();
    server_options.cert = Path(std::string(prefix) + "-cert.pem");
    server_options.key = Path(std::string(prefix) + "-key.pem");
    auto server = Make(server_options, true);
    auto client = Make(ClientOptions("client"), false);
    ASSERT_TRUE(server && client) << prefix;
    // Names are not what fails here: tls-name matches where the certificate has no SAN.
    SslPair pair(*server, *client, prefix == std::string("other") ? "127.0.0.1" : "");
    pair.Handshake();
    EXPECT_FALSE(pair.client_outcome.ok) << prefix;
    EXPECT_EQ(pair.client_outcome.error, reason) << prefix;
    EXPECT_FALSE(pair.server_outcome.ok) << prefix;
  }
}

TEST_F(TlsContextTest, MinimumTls13RefusesTls12Peers) {
  TlsOptions strict = ServerOptions();
  strict.min_tls13 = true;
  auto server = Make(strict, true);
  auto client = Make(ClientOptions("client"), false);
  ASSERT_TRUE(server && client);
  {
    SslPair pair(*server, *client, "127.0.0.1");
    SSL_set_max_proto_version(pair.client(), TLS1_2_VERSION);
    pair.Handshake();
    EXPECT_FALSE(pair.server_outcome.ok);
    EXPECT_NE(pair.server_outcome.error.find("unsupported protocol"), std::string::npos)
        << pair.server_outcome.error;
    EXPECT_FALSE(pair.client_outcome.ok);
    EXPECT_NE(pair.client_outcome.error.find("protocol version"), std::string::npos)
        << pair.client_outcome.error;
  }
  // The same server takes TLS 1.3; and without tls-min, TLS 1.2 is still accepted.
  {
    SslPair pair(*server, *client, "127.0.0.1");
    pair.Handshake();
    EXPECT_TRUE(pair.server_outcome.ok) << pair.server_outcome.error;
  }
  auto lenient = Make(ServerOptions(), true);
  SslPair pair(*lenient, *client, "127.0.0.1");
  SSL_set_max_proto_version(pair.client(), TLS1_2_VERSION);
  pair.Handshake();
  EXPECT_TRUE(pair.server_outcome.ok) << pair.server_outcome.error;
  EXPECT_TRUE(pair.client_outcome.ok) << pair.client_outcome.error;
  EXPECT_EQ(SSL_version(pair.server()), TLS1_2_VERSION);
}

// Record sizes on the wire: type (1), version (2), length (2), then `length` bytes.
std::vector<std::size_t> RecordLengths(const std::vector<unsigned char>& wire) {
  std::vector<std::size_t> lengths;
  std::size_t at = 0;
  while (at + 5 <= wire.size()) {
    const std::size_t length = (std::size_t{wire[at + 3]} << 8) | wire[at + 4];
    lengths.push_back(length);
    at += 5 + length;
  }
  EXPECT_EQ(at, wire.size()) << "records do not tile the bytes read";
  return lengths;
}

// Bytes a record may add to its plaintext: RFC 8446 5.2 allows at most 256 (AES-GCM
// adds 17 in TLS 1.3, 24 in TLS 1.2).
constexpr std::size_t kMaxRecordExpansion = 256;

TEST_F(TlsContextTest, RecordsCarryAtMost2048Bytes) {
  auto server = Make(ServerOptions(), true);
  auto client = Make(ClientOptions("client"), false);
  ASSERT_TRUE(server && client);
  for (const bool tls12 : {false, true}) {
    SslPair pair(*server, *client, "127.0.0.1");
    if (tls12) SSL_set_max_proto_version(pair.client(), TLS1_2_VERSION);
    pair.Handshake();
    ASSERT_TRUE(pair.server_outcome.ok && pair.client_outcome.ok)
        << pair.server_outcome.error << pair.client_outcome.error;

    // 4096 bytes: the lead QEMU 7.2 stalls on when it comes in one record.
    const std::vector<unsigned char> sent(3 * 4096, 0x5a);
    std::size_t written = 0;
    for (int round = 0; round < 100 && written < sent.size(); ++round) {
      const int n =
          SSL_write(pair.server(), sent.data() + written, static_cast<int>(sent.size() - written));
      ASSERT_GT(n, 0);
      written += static_cast<std::size_t>(n);
    }
    ASSERT_EQ(written, sent.size());

    std::vector<unsigned char> wire(64 * 1024);
    const ssize_t peeked = recv(pair.client_fd(), wire.data(), wire.size(), MSG_PEEK);
    ASSERT_GT(peeked, 0);
    wire.resize(static_cast<std::size_t>(peeked));
    const std::vector<std::size_t> lengths = RecordLengths(wire);
    ASSERT_FALSE(lengths.empty());
    std::size_t full = 0;
    for (const std::size_t length : lengths) {
      EXPECT_LE(length, kTlsMaxRecordBytes + kMaxRecordExpansion) << (tls12 ? "1.2" : "1.3");
      if (length >= static_cast<std::size_t>(kTlsMaxRecordBytes)) ++full;
    }
    EXPECT_GE(full, sent.size() / kTlsMaxRecordBytes) << "records of about 2048 bytes expected";

    // The bytes themselves still arrive whole.
    std::vector<unsigned char> received(sent.size());
    std::size_t got = 0;
    for (int round = 0; round < 100 && got < received.size(); ++round) {
      const int n =
          SSL_read(pair.client(), received.data() + got, static_cast<int>(received.size() - got));
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    EXPECT_EQ(got, sent.size());
    EXPECT_EQ(received, sent);
  }
}

// A client with tls-verify=off that the server refuses (it wants a client certificate)
// must be told about the refusal, not about its own skipped verification.
TEST_F(TlsContextTest, UnverifiedClientIsToldWhyTheServerRefused) {
  auto server = Make(ServerOptions(), true);
  TlsOptions unverified;
  unverified.enabled = true;
  unverified.verify = false;
  auto client = Make(unverified, false);
  ASSERT_TRUE(server && client);
  SslPair pair(*server, *client, "127.0.0.1");
  SSL_set_max_proto_version(pair.client(), TLS1_2_VERSION);  // the refusal lands in the handshake
  pair.Handshake();
  EXPECT_EQ(pair.server_outcome.error, kNoClientCertificate);
  EXPECT_FALSE(pair.client_outcome.ok);
  EXPECT_EQ(pair.client_outcome.error.find("certificate verify failed"), std::string::npos)
      << pair.client_outcome.error;
  EXPECT_NE(pair.client_outcome.error.find("handshake failure"), std::string::npos)
      << pair.client_outcome.error;
}

TEST(DescribeTlsFailureTest, FallbackWhenNothingIsKnown) {
  ERR_clear_error();
  EXPECT_EQ(DescribeTlsFailure(nullptr, "handshake failed"), "handshake failed");
}

}  // namespace
}  // namespace rngmux
