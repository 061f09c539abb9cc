#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace rngmux {

// The health tests' false-alarm rate alpha = 2^-N, N by default (--health-alpha).
inline constexpr double kDefaultHealthAlphaLog2 = 30.0;

// NIST SP 800-90B section 4.4 continuous health tests on 8-bit samples (bytes).
// The cutoffs follow from the claimed min-entropy H per sample and the false-
// positive probability alpha = 2^-alpha_log2:
//   RCT: C = 1 + ceil(alpha_log2 / H)
//   APT: window W = 512, C = 1 + CRITBINOM(W, 2^-H, 1 - alpha)
struct HealthCutoffs {
  unsigned rct_cutoff;
  unsigned apt_cutoff;
  unsigned apt_window;
};
HealthCutoffs ComputeCutoffs(double entropy_bits_per_sample,
                             double alpha_log2 = kDefaultHealthAlphaLog2);

// Smallest k such that P[X <= k] >= p for X ~ Binomial(n, q) (Excel's CRITBINOM).
unsigned CritBinom(unsigned n, double q, double p);

// Repetition Count Test: fails when one value repeats rct_cutoff times in a row.
class RepetitionCountTest {
 public:
  explicit RepetitionCountTest(unsigned cutoff) : cutoff_(cutoff) {}
  // Returns false on failure. State carries across calls (and blocks).
  bool Feed(std::uint8_t sample);
  // Feed() on every sample in a tight loop; false if any failed (the state is then
  // meaningless until Reset()).
  bool FeedBlock(std::span<const std::uint8_t> samples);
  void Reset() { count_ = 0; }

 private:
  unsigned cutoff_;
  std::uint8_t last_ = 0;
  unsigned count_ = 0;
};

// Adaptive Proportion Test: in each window of W samples, fails when the window's
// first value occurs apt_cutoff times.
class AdaptiveProportionTest {
 public:
  AdaptiveProportionTest(unsigned window, unsigned cutoff) : window_(window), cutoff_(cutoff) {}
  bool Feed(std::uint8_t sample);
  // Feed() on every sample, counting a window's matches in a vectorisable loop;
  // false if any window reached the cutoff (state meaningless until Reset()).
  bool FeedBlock(std::span<const std::uint8_t> samples);
  void Reset() { seen_ = 0; }

 private:
  unsigned window_;
  unsigned cutoff_;
  std::uint8_t first_ = 0;
  unsigned seen_ = 0;   // samples seen in the current window, 0 = none yet
  unsigned count_ = 0;  // occurrences of first_ in the current window
};

}  // namespace rngmux
