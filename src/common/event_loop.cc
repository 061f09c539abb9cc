#include "common/event_loop.h"

#include <new>

#include "common/log.h"

namespace rngmux {

void RunSurvivingHandlerFailures(asio::io_context& io, std::atomic<std::uint64_t>& failures) {
  constexpr int kMaxFailures = 1000;
  for (int failed = 0;;) {
    try {
      io.run();
      return;
    } catch (const std::bad_alloc&) {
      // One handler ran out of memory: its work is lost (the session it served is
      // left to time out or be closed by its peer); every other client goes on.
      failures++;
      LOG_ERROR("out of memory in an event handler; continuing");
      if (++failed >= kMaxFailures) throw;
    }
  }
}

}  // namespace rngmux
