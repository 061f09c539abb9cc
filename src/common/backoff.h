#pragma once

#include <chrono>
#include <cstdint>

namespace rngmux {

// Capped exponential back-off with jitter, as a pure calculation: it hands out
// delays and never sleeps, so the caller decides how to wait (a timer on the
// event loop, an interruptible sleep on a source thread) and tests need no clock.
// Delay n (counting from 0) is uniform in [base*2^n / 2, base*2^n], capped at max.
// Not thread-safe; owned by one caller.
class Backoff {
 public:
  using Duration = std::chrono::milliseconds;
  Backoff(Duration initial, Duration max, std::uint64_t seed = 0);

  // The delay before the next attempt; each call doubles the next one.
  Duration NextDelay();
  // Call after a success: the next failure starts again from the initial delay.
  void Reset() { attempts_ = 0; }
  unsigned attempts() const { return attempts_; }

 private:
  Duration initial_;
  Duration max_;
  unsigned attempts_ = 0;
  std::uint64_t rng_state_;
};

}  // namespace rngmux
