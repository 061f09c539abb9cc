#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "common/clock.h"

namespace rngmux {

// A token bucket over bytes: `rate` tokens per second accrue up to `burst`, and a
// request for n bytes is granted only if n tokens are there (all or nothing). Over
// any interval of length T it grants at most rate * T + burst tokens. It starts full.
// Time comes from the caller, so tests drive it with a FakeClock. Not thread-safe.
class TokenBucket {
 public:
  // rate >= 1, burst >= 1, both at most kMaxTokens.
  TokenBucket(std::uint64_t rate_per_second, std::uint64_t burst, Clock::TimePoint now);

  static constexpr std::uint64_t kMaxTokens = std::uint64_t{1} << 30;

  // Takes n tokens if there are that many; false (and nothing taken) otherwise.
  bool TryTake(std::uint64_t n, Clock::TimePoint now);
  // Whole tokens there now.
  std::uint64_t Available(Clock::TimePoint now);
  // True when the bucket holds `burst` tokens again (it grants as a new one would).
  bool Full(Clock::TimePoint now);
  // How long until n tokens are there (zero if they are now), rounded up so that
  // TryTake(n) succeeds once it has passed; n <= burst.
  Clock::Duration TimeUntil(std::uint64_t n, Clock::TimePoint now);

 private:
  void Refill(Clock::TimePoint now);

  // Kept in token-nanoseconds (tokens * 1e9) so that refills never round away the
  // fraction of a token earned between two calls.
  std::uint64_t rate_;
  std::uint64_t burst_scaled_;
  std::uint64_t tokens_scaled_;
  Clock::TimePoint last_;
};

// Keeps a repeating event (a flood of refused datagrams) to one log line per
// interval: the first occurrence may be logged at once, later ones only once the
// interval has passed since the last logged one, reporting how many were not.
// Not thread-safe.
class LogLimiter {
 public:
  explicit LogLimiter(Clock::Duration interval) : interval_(interval) {}

  // True if this occurrence should be logged; then *suppressed is the number of
  // occurrences that were not logged since the previous logged one.
  bool Allow(Clock::TimePoint now, std::uint64_t* suppressed);
  // True when the next occurrence would be logged at once, as by a new limiter
  // (so it may be dropped; only the count of suppressed ones would be lost).
  bool Idle(Clock::TimePoint now) const { return !logged_once_ || now - last_logged_ >= interval_; }

 private:
  Clock::Duration interval_;
  bool logged_once_ = false;
  Clock::TimePoint last_logged_{};
  std::uint64_t suppressed_ = 0;
};

// A LogLimiter per key (a client identity), so that one noisy client cannot hide
// another's lines and a flood of connections logs a line per identity per interval.
// Remembers at most `max_keys` keys; beyond that the oldest-logged are forgotten
// (a forgotten key may log again at once). Not thread-safe.
class KeyedLogLimiter {
 public:
  KeyedLogLimiter(Clock::Duration interval, std::size_t max_keys = 4096)
      : interval_(interval), max_keys_(max_keys) {}

  bool Allow(const std::string& key, Clock::TimePoint now, std::uint64_t* suppressed);

 private:
  Clock::Duration interval_;
  std::size_t max_keys_;
  std::unordered_map<std::string, LogLimiter> limiters_;
};

}  // namespace rngmux
