#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string_view>

namespace rngmux {

// After a failed accept (out of descriptors, out of memory) the connection stays in
// the listen backlog and the socket stays readable: accepting again at once would spin
// the event loop. Every listener (client endpoints, the control socket, the metrics
// endpoint) tries again after this delay instead.
inline constexpr std::chrono::milliseconds kAcceptRetryDelay{200};

// One listener's wait after a failed accept. After() counts the failure on `address`
// in the daemon's `total` (thread-safe) and the listener's own count, logs the
// listener's 1st, 2nd, 4th, 8th... as "accept on ADDRESS: ERROR (N failures so far;
// the connection waits and is retried every 200 ms)", and calls `accept_again` on the
// loop kAcceptRetryDelay later, unless cancelled meanwhile. One wait at a time: a new
// one replaces the last.
class AcceptRetry {
 public:
  AcceptRetry(asio::io_context& io, std::atomic<std::uint64_t>& total)
      : timer_(io), total_(total) {}
  void After(std::string_view address, std::string_view error, std::function<void()> accept_again);
  void Cancel() { timer_.cancel(); }
  std::uint64_t failures() const { return mine_; }

 private:
  asio::steady_timer timer_;
  std::atomic<std::uint64_t>& total_;
  std::uint64_t mine_ = 0;  // this listener's, for its log lines
};

}  // namespace rngmux
