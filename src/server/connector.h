#pragma once

#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <string>

#include "common/backoff.h"
#include "server/session_host.h"
#include "transport/endpoint_spec.h"

namespace rngmux {

// Keeps one connection open to a --connect endpoint (typically a QEMU chardev
// with server=on): connects, hands the socket to the SessionHost, and after a
// failure or a closed connection tries again forever, with capped exponential
// back-off and jitter. An attempt (resolve and connect) that gets no answer within
// 10 s counts as a failure. Logs state changes, not every attempt. Event-loop thread only.
class Connector {
 public:
  Connector(asio::io_context& io, const EndpointSpec& spec, SessionHost& host);
  void Start();
  void Stop();  // Idempotent; closes the live session, if any.

 private:
  void Attempt();
  void ArmConnectTimeout();
  void OnAttemptDone(const asio::error_code& ec);
  static std::string TimeoutText();
  void OnConnected(Session::Socket socket);
  void OnFailure(const std::string& reason);
  void ScheduleAttempt(std::chrono::milliseconds delay);

  asio::io_context& io_;
  EndpointSpec spec_;
  SessionHost& host_;
  asio::ip::tcp::resolver resolver_;
  Session::Socket socket_;
  asio::steady_timer timer_;
  Backoff backoff_;
  std::weak_ptr<Session> session_;
  bool timed_out_ = false;  // the current attempt was cut off by the connect timeout
  unsigned failures_ = 0;   // consecutive failed attempts since the last connection
  bool stopped_ = true;
};

}  // namespace rngmux
