#include "sources/mix_policy.h"

#include <algorithm>
#include <cstring>

namespace rngmux {

MixPolicy::MixPolicy(std::size_t sources, std::size_t min_sources)
    : min_sources_(std::clamp<std::size_t>(min_sources, 1, std::max<std::size_t>(sources, 1))),
      staged_size_(sources, 0) {
  for (std::size_t i = 0; i < sources; ++i) {
    staged_.push_back(std::make_unique<SecureBuffer>(kStageBytes));
  }
}

std::string MixPolicy::Describe() const {
  if (min_sources_ >= staged_.size()) return "mix";
  return "mix (at least " + std::to_string(min_sources_) + " of " + std::to_string(staged_.size()) +
         ")";
}

std::vector<std::size_t> MixPolicy::Serving(const SelectorState& state,
                                            Clock::TimePoint now) const {
  const std::size_t n = state.sources.size();
  std::vector<std::size_t> all, usable;
  for (std::size_t i = 0; i < n; ++i) {
    all.push_back(i);
    if (state.sources[i].healthy && !state.Silent(i, now)) usable.push_back(i);
  }
  bool all_healthy = true;
  for (const SourceStatus& s : state.sources) all_healthy = all_healthy && s.healthy;
  // Every source, however slow, unless the operator allowed fewer.
  if (min_sources_ >= n) return all_healthy ? all : std::vector<std::size_t>{};
  // At start, give every source its chance to join before serving fewer.
  if (!state.AllTried() && !state.StartupGraceOver(now)) {
    return all_healthy ? all : std::vector<std::size_t>{};
  }
  if (usable.size() < min_sources_) return {};
  return usable;
}

bool MixPolicy::Degraded(const SelectorState& state, Clock::TimePoint now) const {
  const std::size_t serving = Serving(state, now).size();
  return serving > 0 && serving < state.sources.size();
}

SelectionPolicy::Offer MixPolicy::OfferBlock(const SelectorState& state, std::size_t i,
                                             std::span<const std::uint8_t> bytes,
                                             Clock::TimePoint) {
  if (!state.sources[i].healthy) return Offer::kRefused;
  if (staged_size_[i] + bytes.size() > kStageBytes) return Offer::kNoRoom;
  std::memcpy(staged_[i]->data() + staged_size_[i], bytes.data(), bytes.size());
  staged_size_[i] += bytes.size();
  return Offer::kStaged;
}

std::size_t MixPolicy::TakeOutput(const SelectorState& state, std::span<std::uint8_t> out,
                                  Clock::TimePoint now) {
  const std::vector<std::size_t> members = Serving(state, now);
  if (members.empty()) return 0;
  std::size_t n = out.size();
  for (const std::size_t i : members) n = std::min(n, staged_size_[i]);
  if (n == 0) return 0;
  std::fill_n(out.begin(), n, std::uint8_t{0});
  for (const std::size_t i : members) {
    std::uint8_t* stage = staged_[i]->data();
    for (std::size_t k = 0; k < n; ++k) out[k] ^= stage[k];
    // Each staged byte is used once: shift the rest down and wipe the vacated tail.
    std::memmove(stage, stage + n, staged_size_[i] - n);
    SecureWipe(stage + staged_size_[i] - n, n);
    staged_size_[i] -= n;
  }
  return n;
}

void MixPolicy::Dropped(std::size_t i) {
  // What it staged came from a stream that has just failed: never mix it in.
  SecureWipe(staged_[i]->data(), staged_size_[i]);
  staged_size_[i] = 0;
}

}  // namespace rngmux
