#include "common/backoff.h"

#include <algorithm>
#include <random>

namespace rngmux {

Backoff::Backoff(Duration initial, Duration max, std::uint64_t seed)
    : initial_(initial), max_(max), rng_state_(seed ? seed : std::random_device{}()) {}

Backoff::Duration Backoff::NextDelay() {
  // Jitter only needs to spread reconnect storms apart; splitmix64 is plenty.
  rng_state_ += 0x9e3779b97f4a7c15ULL;
  std::uint64_t z = rng_state_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;

  const unsigned shift = std::min(attempts_, 30u);
  ++attempts_;
  const auto full = std::min<std::int64_t>(initial_.count() << shift, max_.count());
  const std::int64_t half = full / 2;
  const std::int64_t span = full - half;
  const std::int64_t jitter =
      span > 0 ? static_cast<std::int64_t>(z % static_cast<std::uint64_t>(span + 1)) : 0;
  return Duration(half + jitter);
}

}  // namespace rngmux
