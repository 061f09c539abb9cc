#pragma once

#include "sources/selection_policy.h"

namespace rngmux {

// Only the most preferred healthy source that is not silent fills the pool (index 0
// is preferred). Sources preferred over it that are unhealthy keep being retried (with
// back-off) to prove themselves again; less preferred ones wait on standby and are
// tested afresh when they are needed. Until one serves, a source waits for more
// preferred ones to have their first try, at most the start-up grace.
class FailoverPolicy final : public SelectionPolicy {
 public:
  bool Wanted(const SelectorState& state, std::size_t i, Clock::TimePoint now) const override;
  std::vector<std::size_t> Serving(const SelectorState& state, Clock::TimePoint now) const override;
  Offer OfferBlock(const SelectorState& state, std::size_t i, std::span<const std::uint8_t> bytes,
                   Clock::TimePoint now) override;
  std::string Describe() const override { return "failover"; }

 private:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  static std::size_t Active(const SelectorState& state, Clock::TimePoint now);
};

}  // namespace rngmux
