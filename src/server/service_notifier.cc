#include "server/service_notifier.h"

#include <time.h>

#include <cstdint>
#include <cstdlib>

#include "common/log.h"
#include "common/systemd_protocol.h"

namespace rngmux {
namespace {

constexpr std::chrono::seconds kStatusInterval{1};

std::uint64_t MonotonicMicroseconds() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1000000u +
         static_cast<std::uint64_t>(now.tv_nsec) / 1000u;
}

}  // namespace

ServiceNotifier::ServiceNotifier(asio::io_context& io, std::function<std::string()> status)
    : watchdog_timer_(io), status_timer_(io), status_(std::move(status)) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  // Set only when WATCHDOG_USEC is (and WATCHDOG_PID, if set, is this process).
  if (enabled_) {
    if (const auto interval = SystemdWatchdogInterval()) watchdog_interval_ = *interval;
  }
}

void ServiceNotifier::Send(const std::string& message) {
  if (!enabled_) return;
  const Result<bool> sent = SystemdNotify(message);
  if (!sent.ok()) {
    LOG_WARNING("systemd notification ", message.substr(0, message.find('\n')), ": ",
                sent.status().message());
  }
}

void ServiceNotifier::Ready() {
  if (!enabled_) return;
  last_status_ = status_();
  Send("READY=1\nSTATUS=" + last_status_);
  if (watchdog_enabled()) {
    LOG_INFO("systemd watchdog: feeding it every ",
             std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_interval_).count() / 2,
             " ms from the event loop");
    FeedWatchdog();
  }
  status_timer_.expires_after(kStatusInterval);
  status_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec) UpdateStatus();
  });
}

void ServiceNotifier::Reloading() {
  Send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(MonotonicMicroseconds()) +
       "\nSTATUS=reloading the configuration");
}

void ServiceNotifier::Reloaded() {
  if (!enabled_ || stopping_) return;
  last_status_ = status_();
  Send("READY=1\nSTATUS=" + last_status_);
}

void ServiceNotifier::Stopping() {
  if (stopping_) return;
  stopping_ = true;
  Send("STOPPING=1\nSTATUS=shutting down");
  watchdog_timer_.cancel();
  status_timer_.cancel();
}

void ServiceNotifier::FeedWatchdog() {
  if (stopping_) return;
  Send("WATCHDOG=1");
  watchdog_timer_.expires_after(watchdog_interval_ / 2);
  watchdog_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec) FeedWatchdog();
  });
}

void ServiceNotifier::UpdateStatus() {
  if (stopping_) return;
  std::string status = status_();
  if (status != last_status_) {
    last_status_ = std::move(status);
    Send("STATUS=" + last_status_);
  }
  status_timer_.expires_after(kStatusInterval);
  status_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec) UpdateStatus();
  });
}

}  // namespace rngmux
