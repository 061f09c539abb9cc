#pragma once

#include <asio/io_context.hpp>
#include <atomic>
#include <cstdint>

namespace rngmux {

// Runs `io` until it stops. A handler that runs out of memory (std::bad_alloc) is
// counted in `failures` and logged, and the loop goes on: one client's failed
// allocation must not end the daemon for everyone. Bounded: after 1000 such failures
// the exception is rethrown (a loop that fails on every handler is a bug).
void RunSurvivingHandlerFailures(asio::io_context& io, std::atomic<std::uint64_t>& failures);

}  // namespace rngmux
