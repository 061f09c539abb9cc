#include "transport/connector.h"

#include <asio/local/stream_protocol.hpp>
#include <vector>

#include "common/log.h"
#include "common/signal_mask.h"
#include "transport/socket_util.h"
#include "vhost/peer_identity.h"

namespace rngmux {
namespace {

constexpr Backoff::Duration kInitialDelay{100};
constexpr Backoff::Duration kMaxDelay{10000};
// Without a limit a connect whose SYNs go unanswered (a peer behind a filter that drops,
// a listener whose accept queue is full) hangs for the kernel's two minutes of retries.
constexpr std::chrono::seconds kConnectTimeout{10};
// A TLS connection closed sooner than this counts as a failed attempt (back-off grows).
constexpr std::chrono::seconds kStableConnection{2};

}  // namespace

Connector::Connector(asio::io_context& io, const EndpointSpec& spec, SessionHost& host)
    : io_(io),
      spec_(spec),
      host_(host),
      resolver_(io),
      socket_(io),
      timer_(io),
      backoff_(kInitialDelay, kMaxDelay) {}

void Connector::Start() {
  stopped_ = false;
  LOG_INFO("connecting to ", spec_.Describe());
  Attempt();
}

void Connector::Stop() {
  if (stopped_) return;
  stopped_ = true;
  timer_.cancel();
  resolver_.cancel();
  asio::error_code ignored;
  socket_.close(ignored);
  if (auto handshake = handshake_.lock()) handshake->Cancel("the endpoint stopped");
  if (auto session = session_.lock()) session->Close("shutting down");
  if (auto device = vhost_device_.lock()) device->Close("shutting down");
}

void Connector::Attempt() {
  if (stopped_) return;
  if (IsUnixSocketEndpoint(spec_)) {
    endpoints_ = {asio::local::stream_protocol::endpoint(spec_.path)};
    next_endpoint_ = 0;
    return ConnectNext();
  }
  const unsigned attempt = ArmTimeout();
  // Asio starts its resolver thread at the first lookup: made under this block, it
  // leaves the daemon's signals to the event loop, as the source threads do.
  const ScopedAsyncSignalBlock signals_to_the_loop;
  resolver_.async_resolve(
      spec_.host, std::to_string(spec_.port),
      [this, attempt](const asio::error_code& ec, asio::ip::tcp::resolver::results_type results) {
        if (stopped_ || attempt != attempt_) return;
        timer_.cancel();
        // getaddrinfo runs on asio's resolver thread and cannot be interrupted: a lookup
        // that outlived the timeout is a failure even if it succeeded in the end.
        if (timed_out_) return OnFailure("resolve " + spec_.host + ": " + TimeoutText());
        if (ec) return OnFailure("resolve " + spec_.host + ": " + ec.message());
        endpoints_.clear();
        for (const auto& entry : results) endpoints_.emplace_back(entry.endpoint());
        next_endpoint_ = 0;
        last_error_ = "no address";
        ConnectNext();
      });
}

void Connector::ConnectNext() {
  if (next_endpoint_ >= endpoints_.size()) return OnFailure(last_error_);
  asio::error_code ignored;
  socket_.close(ignored);
  if (const auto ec = OpenCloseOnExec(socket_, endpoints_[next_endpoint_].protocol()); ec) {
    last_error_ = "socket: " + ec.message();
    ++next_endpoint_;
    return ConnectNext();
  }
  const unsigned attempt = ArmTimeout();
  socket_.async_connect(endpoints_[next_endpoint_++], [this, attempt](const asio::error_code& ec) {
    if (stopped_ || attempt != attempt_) return;
    timer_.cancel();
    // The timeout closed the socket: whatever ec says, it failed.
    if (timed_out_ || ec) {
      last_error_ = timed_out_ ? TimeoutText() : ec.message();
      return ConnectNext();  // each address gets its own 10 s
    }
    OnConnected(std::move(socket_));
  });
}

unsigned Connector::ArmTimeout() {
  timed_out_ = false;
  const unsigned attempt = ++attempt_;
  timer_.expires_after(kConnectTimeout);
  timer_.async_wait([this, attempt](const asio::error_code& ec) {
    // A handler already queued when its step finished carries no error: the attempt
    // number tells it that it is stale.
    if (ec || stopped_ || attempt != attempt_) return;
    timed_out_ = true;
    resolver_.cancel();
    asio::error_code ignored;
    socket_.close(ignored);  // the pending connect completes, and sees timed_out_
  });
  return attempt;
}

std::string Connector::TimeoutText() {
  return "no answer within " + std::to_string(kConnectTimeout.count()) + " s";
}

void Connector::OnConnected(Session::Socket socket) {
  ++attempt_;  // whatever timeout handler is still queued for this attempt is now stale
  socket_ = Session::Socket(io_);
  const bool unix_socket =
      spec_.transport == TransportKind::kUnix || spec_.transport == TransportKind::kVhostUser;
  ClientIdentity identity = IdentifyStreamPeer(socket.native_handle(), unix_socket);
  if (!tls_ || spec_.transport != TransportKind::kTcp) {
    return OnEstablished(std::move(socket), std::move(identity));
  }
  ConfigureStreamSocket(socket);
  const unsigned attempt = attempt_;
  handshake_ = StartTlsHandshake(
      tls_, std::move(socket), spec_.host,
      [this, alive = std::weak_ptr<char>(alive_), attempt,
       identity = std::move(identity)](TlsHandshakeOutcome outcome) mutable {
        if (alive.expired() || stopped_ || attempt != attempt_) return;
        host_.TlsHandshakeFinished(spec_, identity, spec_.Address(), outcome);
        if (!outcome.stream) return OnFailure("TLS handshake: " + outcome.error, true);
        AddCertificate(identity, outcome.certificate);
        OnEstablished(Session::Transport(std::move(outcome.stream)), std::move(identity));
      });
}

void Connector::OnEstablished(Session::Transport transport, ClientIdentity identity) {
  if (failures_ > 0) {
    LOG_INFO("connected to ", spec_.Describe(), " after ", failures_, " failed attempts");
  } else {
    LOG_INFO("connected to ", spec_.Describe());
  }
  const auto established = std::chrono::steady_clock::now();
  auto on_closed = [this, alive = std::weak_ptr<char>(alive_), established] {
    if (alive.expired() || stopped_) return;
    if (spec_.tls.enabled && std::chrono::steady_clock::now() - established < kStableConnection) {
      // A TLS connection closed at once: QEMU's tls-authz refusing this certificate
      // does just that, after the handshake and silently. It backs off like a refused
      // connect, so neither the log nor leads drawn from the pool come in a loop.
      ++failures_;
      const auto delay = backoff_.NextDelay();
      if (failures_ == 1) {
        LOG_WARNING("connection to ", spec_.Address(),
                    " closed by the peer at once (did the server refuse this certificate, e.g. "
                    "QEMU's tls-authz?)",
                    "; retrying with back-off up to ", kMaxDelay.count() / 1000, " s");
      } else {
        LOG_DEBUG("connection to ", spec_.Address(), " closed at once (", failures_,
                  " times); next attempt in ", delay.count(), " ms");
      }
      ScheduleAttempt(delay);
      return;
    }
    // A connection that lasted: the next attempt comes at the initial delay (a restarted
    // VM should not wait out the delays its downtime built up).
    failures_ = 0;
    backoff_.Reset();
    const auto delay = backoff_.NextDelay();
    LOG_INFO("connection to ", spec_.Address(), " ended; reconnecting in ", delay.count(), " ms");
    ScheduleAttempt(delay);
  };
  if (spec_.transport == TransportKind::kVhostUser) {
    std::string peer = DescribeUnixPeer(transport.socket.native_handle(), spec_.Address());
    vhost_device_ = host_.AdoptVhostUser(std::move(transport.socket), spec_, std::move(peer),
                                         std::move(identity), on_closed);
    return;
  }
  if (!transport.tls) ConfigureStreamSocket(transport.socket);
  session_ =
      host_.Adopt(std::move(transport), spec_, spec_.Address(), std::move(identity), on_closed);
}

void Connector::OnFailure(const std::string& reason, bool logged) {
  asio::error_code ignored;
  socket_.close(ignored);
  ++failures_;
  const auto delay = backoff_.NextDelay();
  if (failures_ == 1 && !logged) {
    LOG_WARNING("cannot connect to ", spec_.Address(), ": ", reason,
                " (retrying with back-off up to ", kMaxDelay.count() / 1000,
                " s; logging again on success)");
  } else {
    LOG_DEBUG("cannot connect to ", spec_.Address(), ": ", reason, " (attempt ", failures_,
              ", next in ", delay.count(), " ms)");
  }
  ScheduleAttempt(delay);
}

void Connector::ScheduleAttempt(std::chrono::milliseconds delay) {
  timer_.expires_after(delay);
  timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec) Attempt();
  });
}

}  // namespace rngmux
