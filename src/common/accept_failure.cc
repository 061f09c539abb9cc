#include "common/accept_failure.h"

#include "common/log.h"

namespace rngmux {

void AcceptRetry::After(std::string_view address, std::string_view error,
                        std::function<void()> accept_again) {
  ++total_;
  const std::uint64_t count = ++mine_;
  // While it lasts, a listener fails five times a second: enough to notice, no flood.
  if ((count & (count - 1)) == 0) {
    LOG_WARNING(
        "accept on ", address, ": ", error, " (", count, count == 1 ? " failure" : " failures",
        " so far; the connection waits and is retried every ", kAcceptRetryDelay.count(), " ms)");
  }
  timer_.expires_after(kAcceptRetryDelay);
  timer_.async_wait([again = std::move(accept_again)](const asio::error_code& ec) {
    if (!ec) again();
  });
}

}  // namespace rngmux
