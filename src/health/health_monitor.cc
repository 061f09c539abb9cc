#include "health/health_monitor.h"

#include <algorithm>

namespace rngmux {

HealthMonitor::HealthMonitor(double entropy_bits_per_byte, double alpha_log2)
    : cutoffs_(ComputeCutoffs(entropy_bits_per_byte, alpha_log2)),
      rct_(cutoffs_.rct_cutoff),
      apt_(cutoffs_.apt_window, cutoffs_.apt_cutoff) {}

HealthMonitor::Verdict HealthMonitor::Check(std::span<const std::uint8_t> block) {
  // Every sample goes through both tests, start-up or not: the start-up test is the
  // continuous tests run on the first kStartupSamples samples (SP 800-90B 4.3).
  // A block passes or fails as a whole, so each test runs over all of it at once.
  const bool rct_ok = rct_.FeedBlock(block);
  const bool apt_ok = rct_ok && apt_.FeedBlock(block);
  if (!rct_ok || !apt_ok) {
    last_failure_ = !rct_ok ? "RCT" : "APT";
    Restart();
    return Verdict::kFail;
  }
  if (startup_remaining_ == 0) return Verdict::kPass;
  // A block in which start-up completes is still consumed whole: blocks are
  // released or dropped as a unit, and the start-up samples must not be used.
  startup_remaining_ -= std::min(startup_remaining_, block.size());
  return Verdict::kStartupInProgress;
}

void HealthMonitor::Restart() {
  rct_.Reset();
  apt_.Reset();
  startup_remaining_ = kStartupSamples;
}

}  // namespace rngmux
