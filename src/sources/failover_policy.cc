#include "sources/failover_policy.h"

namespace rngmux {

std::size_t FailoverPolicy::Active(const SelectorState& state, Clock::TimePoint now) {
  for (std::size_t i = 0; i < state.sources.size(); ++i) {
    if (state.sources[i].healthy && !state.Silent(i, now)) return i;
  }
  return kNone;
}

bool FailoverPolicy::Wanted(const SelectorState& state, std::size_t i, Clock::TimePoint now) const {
  const std::size_t active = Active(state, now);
  if (active != kNone) return i <= active;
  // Nobody serves: read, unless a more preferred source is still on its first try
  // within the start-up grace.
  if (state.StartupGraceOver(now)) return true;
  for (std::size_t j = 0; j < i; ++j) {
    if (!state.sources[j].tried) return false;
  }
  return true;
}

std::vector<std::size_t> FailoverPolicy::Serving(const SelectorState& state,
                                                 Clock::TimePoint now) const {
  const std::size_t active = Active(state, now);
  if (active == kNone) return {};
  return {active};
}

SelectionPolicy::Offer FailoverPolicy::OfferBlock(const SelectorState& state, std::size_t i,
                                                  std::span<const std::uint8_t>,
                                                  Clock::TimePoint now) {
  return i == Active(state, now) ? Offer::kPassThrough : Offer::kRefused;
}

}  // namespace rngmux
