#include "server/connector.h"

#include <asio/connect.hpp>
#include <asio/local/stream_protocol.hpp>
#include <vector>

#include "common/log.h"
#include "server/socket_util.h"

namespace rngmux {
namespace {

constexpr Backoff::Duration kInitialDelay{100};
constexpr Backoff::Duration kMaxDelay{10000};
// Without a limit a connect whose SYNs go unanswered (a peer behind a filter that drops,
// a listener whose accept queue is full) hangs for the kernel's two minutes of retries.
constexpr std::chrono::seconds kConnectTimeout{10};

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
  if (auto session = session_.lock()) session->Close("shutting down");
}

void Connector::Attempt() {
  if (stopped_) return;
  ArmConnectTimeout();
  if (spec_.transport == TransportKind::kUnix) {
    asio::error_code ec;
    socket_.close(ec);
    const asio::generic::stream_protocol::endpoint endpoint =
        asio::local::stream_protocol::endpoint(spec_.path);
    socket_.async_connect(
        endpoint, [this](const asio::error_code& connect_ec) { OnAttemptDone(connect_ec); });
    return;
  }
  resolver_.async_resolve(
      spec_.host, std::to_string(spec_.port),
      [this](const asio::error_code& ec, asio::ip::tcp::resolver::results_type results) {
        if (stopped_) return;
        if (ec == asio::error::operation_aborted && !timed_out_) return;
        if (ec) {
          timer_.cancel();
          return OnFailure("resolve " + spec_.host + ": " +
                           (timed_out_ ? TimeoutText() : ec.message()));
        }
        std::vector<asio::generic::stream_protocol::endpoint> endpoints;
        for (const auto& entry : results) endpoints.emplace_back(entry.endpoint());
        asio::async_connect(
            socket_, endpoints,
            [this](const asio::error_code& connect_ec,
                   const asio::generic::stream_protocol::endpoint&) { OnAttemptDone(connect_ec); });
      });
}

void Connector::ArmConnectTimeout() {
  timed_out_ = false;
  timer_.expires_after(kConnectTimeout);
  timer_.async_wait([this](const asio::error_code& ec) {
    if (ec || stopped_) return;
    // The pending resolve or connect completes with operation_aborted, and
    // OnAttemptDone takes it for the failure it is.
    timed_out_ = true;
    resolver_.cancel();
    asio::error_code ignored;
    socket_.close(ignored);
  });
}

std::string Connector::TimeoutText() {
  return "no answer within " + std::to_string(kConnectTimeout.count()) + " s";
}

void Connector::OnAttemptDone(const asio::error_code& ec) {
  if (stopped_) return;
  if (ec == asio::error::operation_aborted && !timed_out_) return;
  timer_.cancel();
  if (ec) return OnFailure(timed_out_ ? TimeoutText() : ec.message());
  OnConnected(std::move(socket_));
}

void Connector::OnConnected(Session::Socket socket) {
  socket_ = Session::Socket(io_);
  if (failures_ > 0) {
    LOG_INFO("connected to ", spec_.Describe(), " after ", failures_, " failed attempts");
  } else {
    LOG_INFO("connected to ", spec_.Describe());
  }
  failures_ = 0;
  // A restarted VM should not wait out the delays its downtime built up.
  backoff_.Reset();
  ConfigureStreamSocket(socket);
  session_ = host_.Adopt(std::move(socket), spec_.session, spec_.Address(), [this] {
    if (stopped_) return;
    // Reset at connect, so a peer that keeps accepting and dropping at once is
    // retried at the initial delay, never in a tight loop.
    const auto delay = backoff_.NextDelay();
    LOG_INFO("connection to ", spec_.Address(), " ended; reconnecting in ", delay.count(), " ms");
    ScheduleAttempt(delay);
  });
}

void Connector::OnFailure(const std::string& reason) {
  asio::error_code ignored;
  socket_.close(ignored);
  ++failures_;
  const auto delay = backoff_.NextDelay();
  if (failures_ == 1) {
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
