#pragma once

#include <memory>
#include <vector>

#include "common/secure_memory.h"
#include "sources/selection_policy.h"

namespace rngmux {

// What enters the pool is the XOR of equal runs of bytes from every member of the
// mix, each byte used once: at least as unpredictable as the best member if they are
// independent, so one silently bad source cannot weaken it.
//
// Who is a member: by default every configured source, always. While any of them is
// unhealthy or slow, nothing is served (clients wait) and the pool fills at the pace
// of the slowest source: mixing never quietly becomes one source's bytes verbatim.
// Only with `min_sources` below the number of sources (`--mix-min-sources`), after the
// start-up grace (or once every source has had its first try), may the mix go on with
// the healthy, non-silent sources when there are at least min_sources of them; the
// selector logs that as a warning and stats show mix_degraded=1.
class MixPolicy final : public SelectionPolicy {
 public:
  // How much each source may hand over ahead of the others.
  static constexpr std::size_t kStageBytes = 256 * 1024;

  // min_sources in [1, sources]; `sources` means no degrading.
  MixPolicy(std::size_t sources, std::size_t min_sources);

  bool Wanted(const SelectorState&, std::size_t, Clock::TimePoint) const override { return true; }
  std::vector<std::size_t> Serving(const SelectorState& state, Clock::TimePoint now) const override;
  bool Degraded(const SelectorState& state, Clock::TimePoint now) const override;
  Offer OfferBlock(const SelectorState& state, std::size_t i, std::span<const std::uint8_t> bytes,
                   Clock::TimePoint now) override;
  std::size_t TakeOutput(const SelectorState& state, std::span<std::uint8_t> out,
                         Clock::TimePoint now) override;
  void Dropped(std::size_t i) override;
  std::string Describe() const override;

  std::size_t staged(std::size_t i) const { return staged_size_[i]; }

 private:
  const std::size_t min_sources_;
  std::vector<std::unique_ptr<SecureBuffer>> staged_;  // bytes handed over, not yet mixed
  std::vector<std::size_t> staged_size_;
};

}  // namespace rngmux
