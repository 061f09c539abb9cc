#pragma once

#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "endpoint/endpoint_spec.h"
#include "tls/tls_context.h"
#include "transport/session_host.h"

namespace rngmux {

// Keeps one connection open to a --connect endpoint (typically a QEMU chardev
// with server=on): connects, hands the socket to the SessionHost, and after a
// failure or a closed connection tries again forever, with capped exponential
// back-off and jitter. A name lookup, and a connect to each resolved address in
// turn, that gets no answer within 10 s counts as failed. Logs state changes, not every attempt.
// Event-loop thread only.
class Connector {
 public:
  Connector(asio::io_context& io, const EndpointSpec& spec, SessionHost& host);
  void Start();
  void Stop();  // Idempotent; closes the live session, if any.
  const EndpointSpec& spec() const { return spec_; }
  // A reload changed this endpoint's options (same address): the next connection
  // gets them; the live one keeps those it was opened with.
  void UpdateSpec(const EndpointSpec& spec) { spec_ = spec; }
  // TLS endpoints: the context the next connection is made with (see Listener).
  void SetTlsContext(std::shared_ptr<const TlsContext> context) { tls_ = std::move(context); }

 private:
  void Attempt();
  void ConnectNext();     // the next resolved address, or OnFailure after the last
  unsigned ArmTimeout();  // starts a new step (resolve or connect); returns its number
  static std::string TimeoutText();
  void OnConnected(Session::Socket socket);
  // Connected (and, over TLS, the handshake done): hands the stream to the host.
  void OnEstablished(Session::Transport transport, ClientIdentity identity);
  // `logged`: the reason was logged already (a TLS failure the host reported).
  void OnFailure(const std::string& reason, bool logged = false);
  void ScheduleAttempt(std::chrono::milliseconds delay);

  asio::io_context& io_;
  EndpointSpec spec_;
  SessionHost& host_;
  asio::ip::tcp::resolver resolver_;
  Session::Socket socket_;
  asio::steady_timer timer_;
  Backoff backoff_;
  std::weak_ptr<Session> session_;
  // A session may end after this connector was stopped and retired by a reload;
  // its on_closed callback checks this token before touching the connector.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
  std::weak_ptr<VhostUserConnection> vhost_device_;                  // vhost-user endpoints
  std::vector<asio::generic::stream_protocol::endpoint> endpoints_;  // of this attempt
  std::size_t next_endpoint_ = 0;
  std::string last_error_;
  unsigned attempt_ = 0;    // numbers each step, so stale handlers know they are
  bool timed_out_ = false;  // the current step was cut off by the timeout
  unsigned failures_ = 0;   // consecutive failed attempts since the last connection
  bool stopped_ = true;
  std::shared_ptr<const TlsContext> tls_;
  std::weak_ptr<TlsHandshake> handshake_;  // the one under way, cancelled by Stop()
};

}  // namespace rngmux
