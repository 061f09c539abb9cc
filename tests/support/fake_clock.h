#pragma once

#include "common/clock.h"

namespace rngmux {

// A clock that moves only when told to. For tests; not thread-safe (advance it
// from the test's own thread while nothing else reads it).
class FakeClock final : public Clock {
 public:
  TimePoint Now() const override { return now_; }
  void Advance(Duration by) { now_ += by; }

 private:
  TimePoint now_{};
};

}  // namespace rngmux
