#include "common/rate_limit.h"

#include <gtest/gtest.h>

#include <chrono>

#include "support/fake_clock.h"

namespace rngmux {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST(TokenBucketTest, StartsFullAndGrantsAllOrNothing) {
  FakeClock clock;
  TokenBucket bucket(1000, 4096, clock.Now());
  EXPECT_EQ(bucket.Available(clock.Now()), 4096u);
  EXPECT_TRUE(bucket.TryTake(4000, clock.Now()));
  EXPECT_FALSE(bucket.TryTake(97, clock.Now()));  // 96 left: nothing is taken
  EXPECT_EQ(bucket.Available(clock.Now()), 96u);
  EXPECT_TRUE(bucket.TryTake(96, clock.Now()));
  EXPECT_FALSE(bucket.TryTake(1, clock.Now()));
}

TEST(TokenBucketTest, RefillsAtTheRateUpToTheBurst) {
  FakeClock clock;
  TokenBucket bucket(1000, 4096, clock.Now());
  ASSERT_TRUE(bucket.TryTake(4096, clock.Now()));
  clock.Advance(milliseconds(250));
  EXPECT_EQ(bucket.Available(clock.Now()), 250u);
  clock.Advance(seconds(3600));
  EXPECT_EQ(bucket.Available(clock.Now()), 4096u);
}

TEST(TokenBucketTest, KeepsFractionsOfATokenAcrossCalls) {
  FakeClock clock;
  TokenBucket bucket(3, 10, clock.Now());
  ASSERT_TRUE(bucket.TryTake(10, clock.Now()));
  // 3 tokens per second in steps of 100 ms: each step earns 0.3 of a token.
  for (int i = 0; i < 10; ++i) {
    clock.Advance(milliseconds(100));
    bucket.Available(clock.Now());
  }
  EXPECT_EQ(bucket.Available(clock.Now()), 3u);
  clock.Advance(nanoseconds(333'333'333));
  EXPECT_EQ(bucket.Available(clock.Now()), 3u);
  clock.Advance(nanoseconds(1));
  EXPECT_EQ(bucket.Available(clock.Now()), 4u);
}

// The property the UDP transport relies on: over any window of length T, no more
// than rate * T + burst is granted, however the requests are spread.
TEST(TokenBucketTest, GrantsAtMostRateTimesWindowPlusBurst) {
  FakeClock clock;
  const std::uint64_t rate = 20000;
  const std::uint64_t burst = 8192;
  TokenBucket bucket(rate, burst, clock.Now());
  std::uint64_t granted = 0;
  const auto window = seconds(5);
  const auto start = clock.Now();
  std::uint64_t ask = 1;
  while (clock.Now() - start < window) {
    if (bucket.TryTake(ask, clock.Now())) granted += ask;
    ask = ask % 255 + 1;
    clock.Advance(std::chrono::microseconds(137));
  }
  EXPECT_LE(granted, rate * 5 + burst);
  EXPECT_GE(granted, rate * 5 - 255);
}

TEST(TokenBucketTest, HugeRequestsAndClockGoingBackAreHarmless) {
  FakeClock clock;
  clock.Advance(seconds(10));
  TokenBucket bucket(TokenBucket::kMaxTokens, TokenBucket::kMaxTokens, clock.Now());
  EXPECT_FALSE(bucket.TryTake(TokenBucket::kMaxTokens + 1, clock.Now()));
  EXPECT_FALSE(bucket.TryTake(~std::uint64_t{0}, clock.Now()));
  EXPECT_TRUE(bucket.TryTake(TokenBucket::kMaxTokens, clock.Now()));
  // A stale time stamp earns nothing.
  EXPECT_EQ(bucket.Available(clock.Now() - seconds(5)), 0u);
  clock.Advance(seconds(1000000));
  EXPECT_EQ(bucket.Available(clock.Now()), TokenBucket::kMaxTokens);
}

TEST(LogLimiterTest, OneLinePerIntervalCountingTheRest) {
  FakeClock clock;
  LogLimiter limiter(seconds(10));
  std::uint64_t suppressed = 99;
  EXPECT_TRUE(limiter.Allow(clock.Now(), &suppressed));
  EXPECT_EQ(suppressed, 0u);
  for (int i = 0; i < 1000; ++i) {
    clock.Advance(milliseconds(5));
    EXPECT_FALSE(limiter.Allow(clock.Now(), &suppressed));
  }
  clock.Advance(seconds(5));
  EXPECT_TRUE(limiter.Allow(clock.Now(), &suppressed));
  EXPECT_EQ(suppressed, 1000u);
  EXPECT_FALSE(limiter.Allow(clock.Now(), &suppressed));
  clock.Advance(seconds(10));
  EXPECT_TRUE(limiter.Allow(clock.Now(), &suppressed));
  EXPECT_EQ(suppressed, 1u);
}

TEST(TokenBucketTest, FullAndTimeUntil) {
  FakeClock clock;
  TokenBucket bucket(1000, 4096, clock.Now());
  EXPECT_TRUE(bucket.Full(clock.Now()));
  EXPECT_EQ(bucket.TimeUntil(4096, clock.Now()), nanoseconds(0));
  ASSERT_TRUE(bucket.TryTake(4000, clock.Now()));
  EXPECT_FALSE(bucket.Full(clock.Now()));
  EXPECT_EQ(bucket.TimeUntil(96, clock.Now()), nanoseconds(0));
  EXPECT_EQ(bucket.TimeUntil(100, clock.Now()), milliseconds(4));
  EXPECT_EQ(bucket.TimeUntil(1 << 20, clock.Now()), milliseconds(4000));  // capped at burst
  clock.Advance(milliseconds(4));
  EXPECT_TRUE(bucket.TryTake(100, clock.Now()));
  clock.Advance(seconds(5));
  EXPECT_TRUE(bucket.Full(clock.Now()));
}

TEST(LogLimiterTest, IdleOnceTheIntervalHasPassed) {
  FakeClock clock;
  LogLimiter limiter(seconds(10));
  EXPECT_TRUE(limiter.Idle(clock.Now()));
  std::uint64_t suppressed = 0;
  EXPECT_TRUE(limiter.Allow(clock.Now(), &suppressed));
  EXPECT_FALSE(limiter.Idle(clock.Now()));
  clock.Advance(seconds(9));
  EXPECT_FALSE(limiter.Idle(clock.Now()));
  clock.Advance(seconds(1));
  EXPECT_TRUE(limiter.Idle(clock.Now()));
}

}  // namespace
}  // namespace rngmux

namespace rngmux {
namespace {

TEST(KeyedLogLimiterTest, OneLinePerKeyPerInterval) {
  FakeClock clock;
  KeyedLogLimiter limiter(std::chrono::seconds(10), 4);
  std::uint64_t suppressed = 0;
  EXPECT_TRUE(limiter.Allow("uid:1", clock.Now(), &suppressed));
  EXPECT_TRUE(limiter.Allow("uid:2", clock.Now(), &suppressed)) << "another identity logs too";
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(limiter.Allow("uid:1", clock.Now(), &suppressed));
  clock.Advance(std::chrono::seconds(10));
  EXPECT_TRUE(limiter.Allow("uid:1", clock.Now(), &suppressed));
  EXPECT_EQ(suppressed, 100u);
  // Bounded: many keys do not grow it without end, and a new key still logs.
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(limiter.Allow("addr:" + std::to_string(i), clock.Now(), &suppressed));
  }
}

}  // namespace
}  // namespace rngmux
