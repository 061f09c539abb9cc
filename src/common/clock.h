#pragma once

#include <chrono>

namespace rngmux {

// Monotonic time, injected wherever a decision depends on it (back-off, pacing,
// fairness) so that tests can drive it. Implementations must be thread-safe.
class Clock {
 public:
  using Duration = std::chrono::nanoseconds;
  using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

class SteadyClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  static SteadyClock& Instance() {
    static SteadyClock clock;
    return clock;
  }
};

// A clock that moves only when told to. For tests.
class FakeClock final : public Clock {
 public:
  TimePoint Now() const override { return now_; }
  void Advance(Duration by) { now_ += by; }

 private:
  TimePoint now_{};
};

}  // namespace rngmux
