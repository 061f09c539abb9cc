#include "transport/tls_handshake.h"

#include <sys/socket.h>

#include <asio/ssl/error.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "transport/socket_util.h"

namespace rngmux {
namespace {

// A TLS record starts with content type 22 (handshake) for a ClientHello.
constexpr unsigned char kTlsHandshakeRecord = 0x16;

std::string DescribeFirstByte(unsigned char byte) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02x", byte);
  std::string text = std::string("sent plain data (first byte ") + hex;
  if (byte <= 0x04) text += ", an EGD request";
  return text + "), not a TLS handshake: is the client set up for TLS?";
}

class Handshake final : public TlsHandshake, public std::enable_shared_from_this<Handshake> {
 public:
  Handshake(std::shared_ptr<const TlsContext> context,
            asio::generic::stream_protocol::socket socket, SSL* ssl, TlsHandshakeDone done)
      : context_(std::move(context)),
        stream_(std::make_unique<TlsStream>(std::move(socket), ssl)),
        timer_(stream_->get_executor()),
        done_(std::move(done)) {}

  void Start() {
    timer_.expires_after(context_->options().handshake_timeout);
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (ec || self->finished_) return;
      self->timed_out_ = true;
      asio::error_code ignored;
      self->stream_->lowest_layer().close(ignored);  // the pending operation completes
    });
    if (context_->server()) {
      PeekFirstByte();
    } else {
      Shake(asio::ssl::stream_base::client);
    }
  }

  void Cancel(const std::string& reason) override {
    if (finished_) return;
    cancel_reason_ = reason;
    asio::error_code ignored;
    stream_->lowest_layer().close(ignored);  // the pending operation completes
    timer_.cancel();
  }

 private:
  void PeekFirstByte() {
    stream_->lowest_layer().async_wait(
        asio::socket_base::wait_read, [self = shared_from_this()](const asio::error_code& ec) {
          if (ec) return self->Fail(self->timed_out_ ? "" : "wait: " + ec.message());
          unsigned char first = 0;
          const ssize_t n = recv(self->stream_->lowest_layer().native_handle(), &first, 1,
                                 MSG_PEEK | MSG_DONTWAIT);
          if (n == 0) return self->Fail("closed the connection before the TLS handshake");
          if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
              return self->PeekFirstByte();
            }
            return self->Fail(std::string("recv: ") + std::strerror(errno));
          }
          if (first != kTlsHandshakeRecord) return self->Fail(DescribeFirstByte(first));
          self->Shake(asio::ssl::stream_base::server);
        });
  }

  void Shake(asio::ssl::stream_base::handshake_type type) {
    stream_->async_handshake(type, [self = shared_from_this()](const asio::error_code& ec) {
      if (ec) {
        std::string reason = DescribeTlsFailure(self->stream_->native_handle(), ec.message());
        if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
          reason = "the peer closed the connection during the handshake";
          if (!self->context_->server()) reason += " (does the server speak TLS?)";
        }
        if (reason.find("wrong version number") != std::string::npos ||
            reason.find("packet length too long") != std::string::npos) {
          reason += " (the peer does not seem to speak TLS)";
        }
        return self->Fail(reason);
      }
      // The timer fired in the same turn: its closing of the socket stands.
      if (self->timed_out_) return self->Fail("");
      self->finished_ = true;
      self->timer_.cancel();
      TlsHandshakeOutcome outcome;
      if (self->context_->verify()) {
        outcome.certificate = ReadPeerCertificate(self->stream_->native_handle());
      }
      outcome.stream = std::move(self->stream_);
      self->done_(std::move(outcome));
    });
  }

  void Fail(const std::string& reason) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    ERR_clear_error();
    TlsHandshakeOutcome outcome;
    outcome.timed_out = timed_out_;
    if (!cancel_reason_.empty()) {
      outcome.error = cancel_reason_;
    } else if (timed_out_) {
      outcome.error = "TLS handshake timed out after " +
                      std::to_string(context_->options().handshake_timeout.count()) + " s";
    } else {
      outcome.error = reason;
    }
    asio::error_code ignored;
    stream_->lowest_layer().close(ignored);
    done_(std::move(outcome));
  }

  std::shared_ptr<const TlsContext> context_;
  std::unique_ptr<TlsStream> stream_;
  asio::steady_timer timer_;
  TlsHandshakeDone done_;
  bool timed_out_ = false;
  bool finished_ = false;
  std::string cancel_reason_;
};

}  // namespace

Result<std::shared_ptr<const TlsContext>> MakeEndpointTlsContext(const EndpointSpec& endpoint) {
  if (!endpoint.tls.enabled) return std::shared_ptr<const TlsContext>();
  const bool listen = endpoint.role == EndpointRole::kListen;
  auto context = TlsContext::Make(endpoint.tls, listen);
  if (!context.ok()) {
    return Status::Error((listen ? "listen \"" : "connect \"") + endpoint.text +
                         "\": " + context.status().message());
  }
  return std::shared_ptr<const TlsContext>(std::move(context).value());
}

std::weak_ptr<TlsHandshake> StartTlsHandshake(std::shared_ptr<const TlsContext> context,
                                              asio::generic::stream_protocol::socket socket,
                                              const std::string& server_name,
                                              TlsHandshakeDone done) {
  SSL* ssl = context->NewConnection(server_name);
  if (ssl == nullptr) {
    asio::error_code ignored;
    socket.close(ignored);
    TlsHandshakeOutcome outcome;
    outcome.error = "TLS: " + DescribeTlsFailure(nullptr, "cannot make a connection object");
    done(std::move(outcome));
    return {};
  }
  auto handshake =
      std::make_shared<Handshake>(std::move(context), std::move(socket), ssl, std::move(done));
  handshake->Start();
  return handshake;
}

}  // namespace rngmux
