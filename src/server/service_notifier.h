#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <string>

namespace rngmux {

// Tells the service manager what the daemon is doing, over systemd's notify protocol
// (Type=notify; common/systemd_protocol.h): READY=1 once every endpoint listens, STATUS= lines,
// RELOADING=1 and READY=1 around a reload, STOPPING=1 at shutdown, and WATCHDOG=1.
//
// The watchdog is fed by a timer on the event loop, at half the interval the manager
// asked for (WATCHDOG_USEC): a loop that is wedged stops feeding it, and the manager
// restarts the daemon. Without NOTIFY_SOCKET (not run by systemd) every call does
// nothing. Event-loop thread only.
class ServiceNotifier {
 public:
  // `status` is called for the STATUS= text (once a second while running; a line is
  // sent only when it changed).
  ServiceNotifier(asio::io_context& io, std::function<std::string()> status);

  // READY=1 with the current status; starts the watchdog and status timers.
  void Ready();
  void Reloading();
  // READY=1 again after a reload (whatever its outcome: the daemon serves).
  void Reloaded();
  // STOPPING=1; stops the timers.
  void Stopping();

  bool watchdog_enabled() const { return watchdog_interval_.count() > 0; }

 private:
  void Send(const std::string& message);
  void FeedWatchdog();
  void UpdateStatus();

  asio::steady_timer watchdog_timer_;
  asio::steady_timer status_timer_;
  std::function<std::string()> status_;
  std::string last_status_;
  std::chrono::microseconds watchdog_interval_{0};  // 0: no watchdog asked for
  bool enabled_ = false;                            // NOTIFY_SOCKET is set
  bool stopping_ = false;
};

}  // namespace rngmux
