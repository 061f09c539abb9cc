#include "common/backoff.h"

#include <gtest/gtest.h>

namespace rngmux {
namespace {
using std::chrono::milliseconds;

TEST(BackoffTest, GrowsExponentiallyWithinJitterBounds) {
  Backoff backoff(milliseconds(100), milliseconds(10000), 42);
  std::int64_t expected_full = 100;
  for (int i = 0; i < 7; ++i) {
    const auto delay = backoff.NextDelay().count();
    EXPECT_GE(delay, expected_full / 2) << "attempt " << i;
    EXPECT_LE(delay, expected_full) << "attempt " << i;
    expected_full *= 2;
  }
}

TEST(BackoffTest, IsCappedAtMaximum) {
  Backoff backoff(milliseconds(100), milliseconds(1000), 7);
  for (int i = 0; i < 100; ++i) {
    EXPECT_LE(backoff.NextDelay().count(), 1000);
  }
  EXPECT_GE(backoff.NextDelay().count(), 500);
}

TEST(BackoffTest, ResetStartsOver) {
  Backoff backoff(milliseconds(100), milliseconds(100000), 3);
  for (int i = 0; i < 10; ++i) backoff.NextDelay();
  backoff.Reset();
  EXPECT_LE(backoff.NextDelay().count(), 100);
}

TEST(BackoffTest, JitterSpreadsDelays) {
  Backoff a(milliseconds(1000), milliseconds(1000), 1);
  Backoff b(milliseconds(1000), milliseconds(1000), 2);
  bool differed = false;
  for (int i = 0; i < 10; ++i) differed |= a.NextDelay() != b.NextDelay();
  EXPECT_TRUE(differed);
}

}  // namespace
}  // namespace rngmux
