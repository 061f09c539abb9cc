#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "sources/selection_policy.h"

namespace rngmux {

enum class SourceMode { kFailover, kMix };

// The failover or mix policy for `sources` sources. min_mix_sources: see MixPolicy
// (0 = every source).
std::unique_ptr<SelectionPolicy> MakeSelectionPolicy(SourceMode mode, std::size_t sources,
                                                     std::size_t min_mix_sources = 0);

// Decides which sources read and whose bytes reach the pool. Its inputs are events:
// health changes, block arrivals, a source parking or waiting for room, each with
// `now`; what time alone changes (silence, the start-up grace) it reports as
// NextDeadline() so the caller can wake then instead of polling. Every change of who
// serves is logged and counted. Single-threaded and clock-free: SourceSet calls it
// under its lock with the real clock, tests with a fake one.
class SourceSelector {
 public:
  using TimePoint = Clock::TimePoint;
  using Offer = SelectionPolicy::Offer;

  SourceSelector(std::vector<std::string> names, std::unique_ptr<SelectionPolicy> policy,
                 SelectorTiming timing, TimePoint now);

  // Restarts the clocks of the start-up grace and of silence (when the sources start).
  void Begin(TimePoint now);

  std::size_t size() const { return state_.sources.size(); }
  const SourceStatus& status(std::size_t i) const { return state_.sources[i]; }
  const SelectionPolicy& policy() const { return *policy_; }

  // Source i passed its start-up test (true) or failed a test or a read (false).
  void OnHealth(std::size_t i, bool healthy, TimePoint now);
  // Whether source i should read now.
  bool Wanted(std::size_t i, TimePoint now) const;
  // Source i parks until wanted (true), or reads again (false). Its health was proven
  // for a stream it stops reading: parking makes it unhealthy.
  void OnStandby(std::size_t i, bool standby, TimePoint now);
  // Source i hands over a passed block (at most kMaxOfferBytes).
  static constexpr std::size_t kMaxOfferBytes = 64 * 1024;
  Offer OnBlock(std::size_t i, std::span<const std::uint8_t> bytes, TimePoint now);
  // Source i is blocked handing bytes over (the pool is full, or the mix waits for
  // the others), which is not silence; or no longer.
  void OnWaitingForRoom(std::size_t i, bool waiting, TimePoint now);
  // Bytes ready for the pool (mixed), written to `out`.
  std::size_t TakeOutput(std::span<std::uint8_t> out, TimePoint now);

  // When a decision may change with no event; TimePoint::max() if never.
  TimePoint NextDeadline(TimePoint now) const;
  // Logs and counts a change of who serves since the last call. The On* calls do it;
  // call it too when waking at a deadline.
  void NoteServing(TimePoint now);

  // Names of the sources serving now, joined by '+', or "none".
  std::string Serving(TimePoint now) const;
  bool IsServing(std::size_t i, TimePoint now) const;
  bool Degraded(TimePoint now) const { return policy_->Degraded(state_, now); }
  std::uint64_t switches() const { return switches_; }

 private:
  SelectorState state_;
  std::unique_ptr<SelectionPolicy> policy_;
  std::string serving_;  // last logged serving set ("" before the first)
  bool degraded_ = false;
  std::uint64_t switches_ = 0;
};

}  // namespace rngmux
