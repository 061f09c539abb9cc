#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "admin/http_request.h"
#include "admin/one_request_connection.h"
#include "common/accept_failure.h"
#include "common/rate_limit.h"
#include "common/status.h"
#include "server/stats.h"

namespace rngmux {

// Where the metrics endpoint listens: "tcp:HOST:PORT" with a numeric IPv4 address or
// a bracketed IPv6 one ("tcp:127.0.0.1:9797", "tcp:[::1]:9797"). Parsed with no I/O.
// Errors, for the text "x":
//   metrics address "x": expected tcp:HOST:PORT
//   metrics address "x": HOST must be a numeric IP address
//   metrics address "x": PORT must be 0 to 65535 (0: any free port, logged)
struct MetricsAddress {
  std::string host;  // without brackets
  std::uint16_t port = 0;
};
Result<MetricsAddress> ParseMetricsAddress(const std::string& text);

// The Prometheus endpoint: HTTP/1.x on TCP, served on the event loop. GET (or HEAD)
// /metrics answers the text exposition format; other paths 404, other methods 405;
// a malformed request 400 (logged, counted as metrics_bad_requests). Every answer
// closes its connection. A request head is at most HttpRequestParser::kMaxHeadBytes
// and must be complete within kRequestTimeout; at most kMaxConnections are served at
// once, more are closed at once. Event-loop thread only.
class MetricsServer {
 public:
  static constexpr std::chrono::seconds kRequestTimeout{10};
  static constexpr std::size_t kMaxConnections = 64;
  // The body of a /metrics answer. Runs on the loop.
  using Render = std::function<std::string()>;

  static Result<std::unique_ptr<MetricsServer>> Open(asio::io_context& io,
                                                     const MetricsAddress& address, Render render,
                                                     ServerCounters& counters);
  ~MetricsServer();

  void Start();
  void Stop();  // Idempotent.
  // "tcp:127.0.0.1:9797", with the port as bound.
  std::string bound_address() const;

 private:
  // What OneRequestConnection asks of its host.
  friend class OneRequestConnection<MetricsServer>;
  friend class OneRequestConnections<MetricsServer>;
  using Socket = asio::ip::tcp::socket;
  using Parser = HttpRequestParser;
  static constexpr std::size_t kReadBytes = 2048;
  static constexpr bool kSilenceIsBad = false;  // idle scrapers and port checks
  std::string Answer(const Parser& parser);
  std::string Refuse(const Parser& parser);
  void Bad(const std::string& why, const Socket& socket);

  MetricsServer(asio::io_context& io, Render render, ServerCounters& counters);
  void Accept();
  // Out of descriptors: counted, logged sparingly, accepted again after a while.
  void RetryLater(const std::string& error);

  asio::io_context& io_;
  Render render_;
  ServerCounters& counters_;
  asio::ip::tcp::acceptor acceptor_;
  AcceptRetry retry_;
  OneRequestConnections<MetricsServer> connections_;
  LogLimiter bad_log_{std::chrono::seconds(1)};
  LogLimiter full_log_{std::chrono::seconds(10)};
  bool stopped_ = false;
};

}  // namespace rngmux
