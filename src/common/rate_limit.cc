#include "common/rate_limit.h"

#include <algorithm>

namespace rngmux {
namespace {

constexpr std::uint64_t kNanosPerSecond = 1'000'000'000;

}  // namespace

TokenBucket::TokenBucket(std::uint64_t rate_per_second, std::uint64_t burst, Clock::TimePoint now)
    : rate_(std::clamp<std::uint64_t>(rate_per_second, 1, kMaxTokens)),
      burst_scaled_(std::clamp<std::uint64_t>(burst, 1, kMaxTokens) * kNanosPerSecond),
      tokens_scaled_(burst_scaled_),
      last_(now) {}

void TokenBucket::Refill(Clock::TimePoint now) {
  if (now <= last_) return;  // A clock that stands still (or a caller's stale `now`).
  const auto elapsed = static_cast<std::uint64_t>((now - last_).count());
  last_ = now;
  const std::uint64_t missing = burst_scaled_ - tokens_scaled_;
  // elapsed * rate_ could overflow for long gaps; anything past the time to fill
  // the bucket only fills it.
  if (elapsed >= missing / rate_ + 1) {
    tokens_scaled_ = burst_scaled_;
    return;
  }
  tokens_scaled_ += std::min(missing, elapsed * rate_);
}

bool TokenBucket::TryTake(std::uint64_t n, Clock::TimePoint now) {
  Refill(now);
  if (n > kMaxTokens || n * kNanosPerSecond > tokens_scaled_) return false;
  tokens_scaled_ -= n * kNanosPerSecond;
  return true;
}

std::uint64_t TokenBucket::Available(Clock::TimePoint now) {
  Refill(now);
  return tokens_scaled_ / kNanosPerSecond;
}

bool TokenBucket::Full(Clock::TimePoint now) {
  Refill(now);
  return tokens_scaled_ == burst_scaled_;
}

Clock::Duration TokenBucket::TimeUntil(std::uint64_t n, Clock::TimePoint now) {
  Refill(now);
  const std::uint64_t wanted = std::min(n, burst_scaled_ / kNanosPerSecond) * kNanosPerSecond;
  if (tokens_scaled_ >= wanted) return Clock::Duration::zero();
  // Tokens accrue at rate_ token-nanoseconds per nanosecond.
  const std::uint64_t nanos = (wanted - tokens_scaled_ + rate_ - 1) / rate_;
  return std::chrono::duration_cast<Clock::Duration>(std::chrono::nanoseconds(nanos));
}

bool LogLimiter::Allow(Clock::TimePoint now, std::uint64_t* suppressed) {
  if (logged_once_ && now - last_logged_ < interval_) {
    ++suppressed_;
    return false;
  }
  logged_once_ = true;
  last_logged_ = now;
  *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

bool KeyedLogLimiter::Allow(const std::string& key, Clock::TimePoint now,
                            std::uint64_t* suppressed) {
  auto found = limiters_.find(key);
  if (found == limiters_.end()) {
    if (limiters_.size() >= max_keys_) {
      // Forget every key past its interval; if all are recent, start afresh.
      for (auto it = limiters_.begin(); it != limiters_.end();) {
        it = it->second.Idle(now) ? limiters_.erase(it) : std::next(it);
      }
      if (limiters_.size() >= max_keys_) limiters_.clear();
    }
    found = limiters_.emplace(key, LogLimiter(interval_)).first;
  }
  return found->second.Allow(now, suppressed);
}

}  // namespace rngmux
