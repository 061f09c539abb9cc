#include "common/accept_failure.h"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace rngmux {
namespace {

using std::chrono::milliseconds;

std::size_t CountOf(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

// Eight failures: all counted, the 1st, 2nd, 4th and 8th logged, and the listener is
// asked to accept again once, after the last (each wait replaces the one before).
TEST(AcceptRetryTest, CountsEveryFailureLogsFewAndRetriesOnceAfterTheLast) {
  asio::io_context io;
  std::atomic<std::uint64_t> total{5};  // the daemon's, shared by every listener
  AcceptRetry retry(io, total);
  int accepted = 0;
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 8; ++i) {
    retry.After("tcp:127.0.0.1:7", "Too many open files", [&] { ++accepted; });
  }
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(total.load(), 13u);
  EXPECT_EQ(retry.failures(), 8u);
  EXPECT_EQ(CountOf(log, "accept on tcp:127.0.0.1:7: Too many open files ("), 4u) << log;
  EXPECT_NE(log.find("(8 failures so far; the connection waits and is retried every 200 ms)"),
            std::string::npos)
      << log;
  io.poll();  // what is ready now: not the retry
  EXPECT_EQ(accepted, 0) << "retried before the delay";
  io.run_for(milliseconds(2000));
  EXPECT_EQ(accepted, 1);
}

TEST(AcceptRetryTest, CancelledWaitsNeverAcceptAgain) {
  asio::io_context io;
  std::atomic<std::uint64_t> total{0};
  AcceptRetry retry(io, total);
  int accepted = 0;
  ::testing::internal::CaptureStderr();
  retry.After("unix:/run/x.sock", "Cannot allocate memory", [&] { ++accepted; });
  ::testing::internal::GetCapturedStderr();
  retry.Cancel();
  io.run_for(milliseconds(500));
  EXPECT_EQ(accepted, 0);
  EXPECT_EQ(total.load(), 1u);
}

}  // namespace
}  // namespace rngmux
