#include "common/accept_failure.h"

#include "common/log.h"

namespace rngmux {

void NoteAcceptFailure(std::atomic<std::uint64_t>& total, std::uint64_t& mine,
                       std::string_view address, std::string_view error) {
  ++total;
  const std::uint64_t count = ++mine;
  // While it lasts, a listener fails five times a second: enough to notice, no flood.
  if ((count & (count - 1)) != 0) return;
  LOG_WARNING(
      "accept on ", address, ": ", error, " (", count, count == 1 ? " failure" : " failures",
      " so far; the connection waits and is retried every ", kAcceptRetryDelay.count(), " ms)");
}

}  // namespace rngmux
