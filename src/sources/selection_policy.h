#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"

namespace rngmux {

struct SelectorTiming {
  // A serving source that delivers nothing for this long is passed over (a device
  // that stalls without an error) until it delivers again. Failover only, and mix
  // when it may degrade (MixPolicy's min_sources below the number of sources).
  std::chrono::milliseconds silence_timeout{5000};
  // At start, a source waits this long for more preferred ones to pass their
  // start-up test (or fail) before it reads, so the best source serves first; a
  // degradable mix waits this long for every source before it serves fewer.
  std::chrono::milliseconds startup_grace{3000};
};

// What the selector knows about one source: the facts a policy decides on.
struct SourceStatus {
  std::string name;
  bool healthy = false;           // start-up test passed, no failure since
  bool tried = false;             // has passed or failed at least once
  bool standby = false;           // parked until wanted
  bool waiting_for_room = false;  // blocked handing bytes over: not silent
  // Threads of this source blocked handing bytes over (a source read on several
  // threads); waiting_for_room while there is one.
  std::size_t producers_waiting = 0;
  Clock::TimePoint last_activity{};
};

struct SelectorState {
  std::vector<SourceStatus> sources;
  Clock::TimePoint started{};
  SelectorTiming timing;

  // Healthy, yet nothing for silence_timeout while nobody kept it waiting.
  bool Silent(std::size_t i, Clock::TimePoint now) const {
    const SourceStatus& s = sources[i];
    return !s.waiting_for_room && now - s.last_activity > timing.silence_timeout;
  }
  bool StartupGraceOver(Clock::TimePoint now) const {
    return now - started >= timing.startup_grace;
  }
  bool AllTried() const {
    for (const SourceStatus& s : sources) {
      if (!s.tried) return false;
    }
    return true;
  }
};

// How several sources share the pool: one small policy per mode, chosen by
// MakeSelectionPolicy. A policy holds no clock and no lock; SourceSelector calls it
// with the state and `now`. Not thread-safe.
class SelectionPolicy {
 public:
  enum class Offer {
    kPassThrough,  // put the block into the pool as it is (failover's serving source)
    kStaged,       // taken in; TakeOutput may now have bytes for the pool
    kNoRoom,       // not taken: wait for a change (TakeOutput, another source) and retry
    kRefused,      // not wanted now (a standby source): drop it
  };

  virtual ~SelectionPolicy() = default;
  // Should source i read now? A source that is not wanted is parked (standby).
  virtual bool Wanted(const SelectorState& state, std::size_t i, Clock::TimePoint now) const = 0;
  // The sources whose bytes reach the pool now, most preferred first.
  virtual std::vector<std::size_t> Serving(const SelectorState& state,
                                           Clock::TimePoint now) const = 0;
  // Fewer sources serve than were configured, by the operator's leave.
  virtual bool Degraded(const SelectorState&, Clock::TimePoint) const { return false; }
  // A passed block of full-entropy bytes from source i.
  virtual Offer OfferBlock(const SelectorState& state, std::size_t i,
                           std::span<const std::uint8_t> bytes, Clock::TimePoint now) = 0;
  // Writes bytes ready for the pool to `out`; returns how many.
  virtual std::size_t TakeOutput(const SelectorState&, std::span<std::uint8_t>, Clock::TimePoint) {
    return 0;
  }
  // Source i failed: forget anything it handed over and was not used yet.
  virtual void Dropped(std::size_t) {}
  // "failover", "mix" or "mix (at least 2 of 3)", for logs.
  virtual std::string Describe() const = 0;
};

}  // namespace rngmux
