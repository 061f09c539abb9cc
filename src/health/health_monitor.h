#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "health/sp800_90b.h"

namespace rngmux {

// Gates one source's blocks: a block is released only if every sample in it passes
// RCT and APT, and only after the start-up test (the first kStartupSamples samples
// through both tests, discarded either way per SP 800-90B 4.3) has passed.
// A failure resets the monitor to "start-up required": after a failure the source
// must prove itself again before its bytes are used. Not thread-safe.
class HealthMonitor {
 public:
  static constexpr std::size_t kStartupSamples = 1024;

  enum class Verdict {
    kStartupInProgress,  // block consumed by the start-up test; hand out nothing
    kPass,               // block may enter the pool
    kFail,               // block must be wiped and dropped; source should back off
  };

  explicit HealthMonitor(double entropy_bits_per_byte, double alpha_log2 = kDefaultHealthAlphaLog2);

  // Tests a whole block. kPass only if start-up is complete and no sample failed.
  Verdict Check(std::span<const std::uint8_t> block);

  bool startup_complete() const { return startup_remaining_ == 0; }
  const HealthCutoffs& cutoffs() const { return cutoffs_; }
  // "RCT" or "APT": which test failed last, for logs.
  const std::string& last_failure() const { return last_failure_; }

 private:
  void Restart();

  HealthCutoffs cutoffs_;
  RepetitionCountTest rct_;
  AdaptiveProportionTest apt_;
  std::size_t startup_remaining_ = kStartupSamples;
  std::string last_failure_;
};

}  // namespace rngmux
