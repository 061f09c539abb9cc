#include "server/server.h"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <new>

namespace rngmux {
namespace {

// Review finding: an allocation failure in one handler ended the daemon.
TEST(ServerLoopTest, AHandlerThatRunsOutOfMemoryDoesNotEndTheLoop) {
  asio::io_context io;
  ServerCounters counters;
  bool later_handler_ran = false;
  asio::post(io, [] { throw std::bad_alloc(); });
  asio::post(io, [&] { later_handler_ran = true; });
  RunSurvivingHandlerFailures(io, counters);
  EXPECT_TRUE(later_handler_ran);
  EXPECT_EQ(counters.handler_failures, 1u);
}

}  // namespace
}  // namespace rngmux
