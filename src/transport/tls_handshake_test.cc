#include "transport/tls_handshake.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "support/testing_pki.h"

namespace rngmux {
namespace {

using Clock = std::chrono::steady_clock;
using GenericSocket = asio::generic::stream_protocol::socket;

// The longest any test lets the event loop run: a handshake that neither finishes
// nor fails by then is a hang, reported as a missing outcome.
constexpr std::chrono::seconds kLoopLimit{10};

class TlsHandshakeTest : public ::testing::Test {
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

  void SetUp() override {
    acceptor_.open(asio::ip::tcp::v4());
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
  }

  // A connected loopback TCP pair: {accepted, connecting}. Tests name them with
  // references, not a structured binding: clang 14 cannot capture those in lambdas.
  std::pair<asio::ip::tcp::socket, asio::ip::tcp::socket> Connect() {
    asio::ip::tcp::socket client(io_);
    client.connect(acceptor_.local_endpoint());
    asio::ip::tcp::socket server = acceptor_.accept();
    return {std::move(server), std::move(client)};
  }

  static std::shared_ptr<const TlsContext> ServerContext(std::chrono::seconds timeout) {
    TlsOptions options;
    options.enabled = true;
    options.dir = dir_;
    options.handshake_timeout = timeout;
    return MakeContext(options, true);
  }
  static std::shared_ptr<const TlsContext> ClientContext(const std::string& prefix,
                                                         std::chrono::seconds timeout) {
    TlsOptions options;
    options.enabled = true;
    options.ca = dir_ + "/ca-cert.pem";
    options.cert = dir_ + "/" + prefix + "-cert.pem";
    options.key = dir_ + "/" + prefix + "-key.pem";
    options.handshake_timeout = timeout;
    return MakeContext(options, false);
  }
  static std::shared_ptr<const TlsContext> MakeContext(const TlsOptions& options, bool server) {
    auto context = TlsContext::Make(options, server);
    EXPECT_TRUE(context.ok()) << context.status().message();
    return context.ok() ? *context : nullptr;
  }

  // Starts a handshake whose outcome lands in `*out`.
  static std::weak_ptr<TlsHandshake> Start(std::shared_ptr<const TlsContext> context,
                                           asio::ip::tcp::socket socket,
                                           const std::string& server_name,
                                           std::optional<TlsHandshakeOutcome>* out) {
    return StartTlsHandshake(std::move(context), GenericSocket(std::move(socket)), server_name,
                             [out](TlsHandshakeOutcome outcome) {
                               EXPECT_FALSE(out->has_value()) << "done ran twice";
                               *out = std::move(outcome);
                             });
  }

  // Runs the loop until no work is left (or kLoopLimit); returns how long it took.
  Clock::duration Run() {
    const Clock::time_point start = Clock::now();
    io_.run_for(kLoopLimit);
    return Clock::now() - start;
  }

  // True once the peer has closed `socket` (reads return EOF).
  static bool SeesEof(asio::ip::tcp::socket& socket) {
    std::array<unsigned char, 64> buffer{};
    asio::error_code ec;
    for (int i = 0; i < 100 && !ec; ++i) socket.read_some(asio::buffer(buffer), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

  static TemporaryTestPki* pki_;
  static std::string dir_;
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_{io_};
};

TemporaryTestPki* TlsHandshakeTest::pki_ = nullptr;
std::string TlsHandshakeTest::dir_;

TEST_F(TlsHandshakeTest, SuccessGivesStreamsAndCertificates) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server, client;
  Start(ServerContext(std::chrono::seconds(10)), std::move(accepted), "", &server);
  Start(ClientContext("client", std::chrono::seconds(10)), std::move(connecting), "127.0.0.1",
        &client);
  Run();
  ASSERT_TRUE(server.has_value());
  ASSERT_TRUE(client.has_value());
  ASSERT_NE(server->stream, nullptr) << server->error;
  ASSERT_NE(client->stream, nullptr) << client->error;
  EXPECT_EQ(server->error, "");
  EXPECT_FALSE(server->timed_out);
  ASSERT_TRUE(server->certificate.has_value());
  EXPECT_EQ(server->certificate->common_name, "vm1");
  ASSERT_TRUE(client->certificate.has_value());
  EXPECT_EQ(client->certificate->common_name, "rngmux test server");
  EXPECT_NE(
      std::find(client->certificate->names.begin(), client->certificate->names.end(), "127.0.0.1"),
      client->certificate->names.end());

  // The streams carry bytes both ways.
  const std::string lead = "\x02\x10";
  asio::write(*client->stream, asio::buffer(lead));
  std::string got(lead.size(), '\0');
  asio::read(*server->stream, asio::buffer(got));
  EXPECT_EQ(got, lead);
  const std::string reply(16, 'r');
  asio::write(*server->stream, asio::buffer(reply));
  std::string echoed(reply.size(), '\0');
  asio::read(*client->stream, asio::buffer(echoed));
  EXPECT_EQ(echoed, reply);
}

TEST_F(TlsHandshakeTest, HandleExpiresWhenTheHandshakeIsOver) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server, client;
  auto handle = Start(ServerContext(std::chrono::seconds(10)), std::move(accepted), "", &server);
  Start(ClientContext("client", std::chrono::seconds(10)), std::move(connecting), "127.0.0.1",
        &client);
  EXPECT_FALSE(handle.expired());
  Run();
  ASSERT_TRUE(server.has_value());
  EXPECT_NE(server->stream, nullptr) << server->error;
  EXPECT_TRUE(handle.expired());
}

TEST_F(TlsHandshakeTest, CancelEndsAHandshakeAtOnce) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server;
  auto handle = Start(ServerContext(std::chrono::seconds(30)), std::move(accepted), "", &server);
  asio::post(io_, [handle] {
    if (auto handshake = handle.lock()) handshake->Cancel("the endpoint stopped");
  });
  const Clock::duration took = Run();
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->stream, nullptr);
  EXPECT_EQ(server->error, "the endpoint stopped");
  EXPECT_FALSE(server->timed_out);
  EXPECT_LT(took, std::chrono::seconds(5));  // not the 30 s timeout
  EXPECT_TRUE(handle.expired());
  EXPECT_TRUE(SeesEof(connecting));
}

TEST_F(TlsHandshakeTest, FailedVerificationSaysWhy) {
  {
    auto sockets = Connect();
    auto& accepted = sockets.first;
    auto& connecting = sockets.second;
    std::optional<TlsHandshakeOutcome> server, client;
    Start(ServerContext(std::chrono::seconds(10)), std::move(accepted), "", &server);
    Start(ClientContext("expired", std::chrono::seconds(10)), std::move(connecting), "127.0.0.1",
          &client);
    Run();
    ASSERT_TRUE(server.has_value());
    EXPECT_EQ(server->stream, nullptr);
    EXPECT_EQ(server->error, "certificate verify failed: certificate has expired");
    EXPECT_FALSE(server->timed_out);
    ASSERT_TRUE(client.has_value());  // told by the alert (or EOF), not by a timeout
    EXPECT_FALSE(client->timed_out);
  }
  io_.restart();
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server, client;
  Start(ServerContext(std::chrono::seconds(10)), std::move(accepted), "", &server);
  Start(ClientContext("client", std::chrono::seconds(10)), std::move(connecting), "10.9.9.9",
        &client);
  Run();
  ASSERT_TRUE(client.has_value());
  EXPECT_EQ(client->stream, nullptr);
  EXPECT_EQ(client->error, "certificate verify failed: IP address mismatch");
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->stream, nullptr);
}

TEST_F(TlsHandshakeTest, ClientWithoutCertificateIsToldApart) {
  TlsOptions anonymous;
  anonymous.enabled = true;
  anonymous.ca = dir_ + "/ca-cert.pem";
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server, client;
  Start(ServerContext(std::chrono::seconds(10)), std::move(accepted), "", &server);
  Start(MakeContext(anonymous, false), std::move(connecting), "127.0.0.1", &client);
  Run();
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->stream, nullptr);
  EXPECT_EQ(server->error,
            "the client sent no certificate (a client whose certificate the CA in the server's "
            "ca-cert.pem did not sign sends none)");
}

TEST_F(TlsHandshakeTest, PlainEgdClientIsToldApartAtOnce) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server;
  Start(ServerContext(std::chrono::seconds(30)), std::move(accepted), "", &server);
  const unsigned char request[] = {0x02, 0x10};  // EGD: read 16 bytes, blocking
  asio::write(connecting, asio::buffer(request));
  const Clock::duration took = Run();
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->stream, nullptr);
  EXPECT_EQ(server->error,
            "sent plain data (first byte 0x02, an EGD request), not a TLS handshake: is the "
            "client set up for TLS?");
  EXPECT_FALSE(server->timed_out);
  EXPECT_LT(took, std::chrono::seconds(5));  // not the 30 s timeout
  EXPECT_TRUE(SeesEof(connecting));          // and the connection is closed
}

TEST_F(TlsHandshakeTest, OtherPlainBytesAreNotCalledEgd) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server;
  Start(ServerContext(std::chrono::seconds(30)), std::move(accepted), "", &server);
  asio::write(connecting, asio::buffer(std::string("GET / HTTP/1.0\r\n\r\n")));
  Run();
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->error,
            "sent plain data (first byte 0x47), not a TLS handshake: is the client set up for "
            "TLS?");
}

TEST_F(TlsHandshakeTest, GarbageAfterTheRecordTypeIsNotTls) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server;
  Start(ServerContext(std::chrono::seconds(30)), std::move(accepted), "", &server);
  // 0x16 as the EGD server of another program might send it, then text.
  asio::write(connecting, asio::buffer(std::string("\x16GET / HTTP/1.0\r\n\r\n")));
  Run();
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->stream, nullptr);
  EXPECT_NE(server->error.find("(the peer does not seem to speak TLS)"), std::string::npos)
      << server->error;
  EXPECT_EQ(server->error.find("(SSL routines)"), std::string::npos) << server->error;
  EXPECT_FALSE(server->timed_out);
}

TEST_F(TlsHandshakeTest, SilentClientTimesOut) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server;
  Start(ServerContext(std::chrono::seconds(1)), std::move(accepted), "", &server);
  const Clock::duration took = Run();
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->stream, nullptr);
  EXPECT_TRUE(server->timed_out);
  EXPECT_EQ(server->error, "TLS handshake timed out after 1 s");
  EXPECT_GE(took, std::chrono::milliseconds(900));
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_TRUE(SeesEof(connecting));
}

TEST_F(TlsHandshakeTest, ClientStalledMidHandshakeTimesOut) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server;
  Start(ServerContext(std::chrono::seconds(1)), std::move(accepted), "", &server);
  const unsigned char partial_hello[] = {0x16, 0x03, 0x01, 0x00, 0x80, 0x01};
  asio::write(connecting, asio::buffer(partial_hello));
  Run();
  ASSERT_TRUE(server.has_value());
  EXPECT_TRUE(server->timed_out);
  EXPECT_EQ(server->error, "TLS handshake timed out after 1 s");
}

TEST_F(TlsHandshakeTest, SilentServerTimesOut) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> client;
  Start(ClientContext("client", std::chrono::seconds(1)), std::move(connecting), "127.0.0.1",
        &client);
  const Clock::duration took = Run();
  ASSERT_TRUE(client.has_value());
  EXPECT_EQ(client->stream, nullptr);
  EXPECT_TRUE(client->timed_out);
  EXPECT_EQ(client->error, "TLS handshake timed out after 1 s");
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_TRUE(SeesEof(accepted));
}

TEST_F(TlsHandshakeTest, ClientClosingBeforeAnyByteIsAnError) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server;
  Start(ServerContext(std::chrono::seconds(30)), std::move(accepted), "", &server);
  connecting.close();
  const Clock::duration took = Run();
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->error, "closed the connection before the TLS handshake");
  EXPECT_FALSE(server->timed_out);
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST_F(TlsHandshakeTest, ClientClosingMidHandshakeIsAnError) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> server;
  Start(ServerContext(std::chrono::seconds(30)), std::move(accepted), "", &server);
  const unsigned char partial_hello[] = {0x16, 0x03, 0x01, 0x00, 0x80, 0x01};
  asio::write(connecting, asio::buffer(partial_hello));
  connecting.close();
  const Clock::duration took = Run();
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->stream, nullptr);
  EXPECT_EQ(server->error, "the peer closed the connection during the handshake");
  EXPECT_FALSE(server->timed_out);
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST_F(TlsHandshakeTest, ServerClosingMidHandshakeIsAnError) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> client;
  Start(ClientContext("client", std::chrono::seconds(30)), std::move(connecting), "127.0.0.1",
        &client);
  // A server that reads the ClientHello and hangs up.
  std::array<unsigned char, 4096> hello{};
  accepted.async_read_some(asio::buffer(hello),
                           [&accepted](const asio::error_code&, std::size_t) { accepted.close(); });
  const Clock::duration took = Run();
  ASSERT_TRUE(client.has_value());
  EXPECT_EQ(client->stream, nullptr);
  EXPECT_EQ(client->error,
            "the peer closed the connection during the handshake (does the server speak TLS?)");
  EXPECT_FALSE(client->timed_out);
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST_F(TlsHandshakeTest, PlainServerIsNotTls) {
  auto sockets = Connect();
  auto& accepted = sockets.first;
  auto& connecting = sockets.second;
  std::optional<TlsHandshakeOutcome> client;
  Start(ClientContext("client", std::chrono::seconds(30)), std::move(connecting), "127.0.0.1",
        &client);
  // An EGD server answers the ClientHello's bytes with entropy-looking bytes.
  std::array<unsigned char, 4096> hello{};
  const std::string answer(64, '\x7f');
  accepted.async_read_some(asio::buffer(hello), [&](const asio::error_code&, std::size_t) {
    asio::write(accepted, asio::buffer(answer));
  });
  Run();
  ASSERT_TRUE(client.has_value());
  EXPECT_EQ(client->stream, nullptr);
  EXPECT_EQ(client->error, "wrong version number (the peer does not seem to speak TLS)");
  EXPECT_FALSE(client->timed_out);
}

}  // namespace
}  // namespace rngmux
