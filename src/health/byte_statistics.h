#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace rngmux {

// Whole-stream statistics of bytes, as `rngmux check` reports them (the same
// measures as `ent`, plus SP 800-90B's most-common-value min-entropy estimate).
class ByteStatistics {
 public:
  void Add(std::span<const std::uint8_t> bytes);

  std::uint64_t count() const { return count_; }
  double mean() const;                // 127.5 for uniform bytes
  double shannon_bits() const;        // per byte, <= 8
  double chi_square() const;          // 255 degrees of freedom
  double chi_square_p() const;        // P[X >= chi_square] for uniform bytes
  double serial_correlation() const;  // between successive bytes, ~0 for random data
  // SP 800-90B 6.3.1: -log2 of the 99% upper bound of the most common value's
  // probability; a conservative per-byte min-entropy estimate.
  double min_entropy_estimate() const;
  // -log2 of the most common value's probability at the LOWER end of a 99%
  // interval that covers all 256 values at once: the most a source can be credited
  // with given this sample. Below a source's claim means the claim is implausible.
  double min_entropy_upper_bound() const;

 private:
  std::array<std::uint64_t, 256> histogram_{};
  std::uint64_t count_ = 0;
  // serial correlation sums (ent's formulation, wrapping last byte to first)
  double sum_ = 0, sum_squares_ = 0, sum_products_ = 0;
  bool have_first_ = false;
  std::uint8_t first_ = 0, last_ = 0;
};

}  // namespace rngmux
