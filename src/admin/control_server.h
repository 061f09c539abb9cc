#pragma once

#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "admin/control_request.h"
#include "admin/one_request_connection.h"
#include "common/accept_failure.h"
#include "common/rate_limit.h"
#include "common/status.h"
#include "server/stats.h"

namespace rngmux {

// The control socket behind `rngmux status`, `stats` and `reload`: a unix stream
// socket, mode 0600, served on the event loop. A connection carries one request line
// (ControlRequestParser) and gets one JSON line back, then is closed.
//
// Only root and the daemon's own effective user may use it: the socket's mode keeps
// others out of the file, and each peer's SO_PEERCRED is checked as well (a socket
// made reachable by a chmod, or a directory with loose permissions, changes
// nothing); others are closed at once, logged and counted (control_refused_peers).
// A bad or oversized request is answered {"ok":false,"error":...}, logged, counted
// (control_bad_requests) and closed; so is a request not complete within
// kRequestTimeout. At most kMaxConnections are served at once; more are closed.
//
// Event-loop thread only.
class ControlServer {
 public:
  static constexpr std::chrono::seconds kRequestTimeout{5};
  static constexpr std::size_t kMaxConnections = 16;
  // Answers one request with its reply (one JSON object, no newline). Runs on the loop.
  using Handler = std::function<std::string(ControlCommand)>;

  // Creates the socket at `path`: the parent directory is made (0755) if missing, a
  // stale socket (no one accepting) is replaced; a socket someone accepts on, or a
  // file that is not a socket, is an error naming the path.
  static Result<std::unique_ptr<ControlServer>> Open(asio::io_context& io, const std::string& path,
                                                     Handler handler, ServerCounters& counters);
  ~ControlServer();  // Stop()s.

  void Start();
  // Closes the socket and its connections and removes the file. Idempotent.
  void Stop();
  const std::string& path() const { return path_; }

 private:
  // What OneRequestConnection asks of its host.
  friend class OneRequestConnection<ControlServer>;
  friend class OneRequestConnections<ControlServer>;
  using Socket = asio::local::stream_protocol::socket;
  using Parser = ControlRequestParser;
  static constexpr std::size_t kReadBytes = 256;
  static constexpr bool kSilenceIsBad = true;
  std::string Answer(const Parser& parser);
  std::string Refuse(const Parser& parser);
  void Bad(const std::string& why, const Socket& socket);

  ControlServer(asio::io_context& io, std::string path, Handler handler, ServerCounters& counters);
  void Accept();
  // Out of descriptors: counted, logged sparingly, accepted again after a while.
  void RetryLater(const std::string& error);
  // Whether a peer with this uid may use the socket.
  bool Admits(unsigned uid) const;

  asio::io_context& io_;
  std::string path_;
  Handler handler_;
  ServerCounters& counters_;
  asio::local::stream_protocol::acceptor acceptor_;
  AcceptRetry retry_;
  OneRequestConnections<ControlServer> connections_;
  LogLimiter refused_log_{std::chrono::seconds(1)};
  LogLimiter bad_log_{std::chrono::seconds(1)};
  LogLimiter busy_log_{std::chrono::seconds(10)};
  bool stopped_ = false;
};

}  // namespace rngmux
