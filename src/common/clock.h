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

// Tests use FakeClock (tests/support/fake_clock.h).

}  // namespace rngmux
