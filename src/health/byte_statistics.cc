#include "health/byte_statistics.h"

#include <algorithm>
#include <cmath>

namespace rngmux {
namespace {

// Two-sided 99% for one proportion, and for the largest of 256 at once (Bonferroni).
constexpr double kZ99 = 2.576;
constexpr double kZ99Of256 = 4.0;

double MaxProportion(const std::array<std::uint64_t, 256>& histogram, std::uint64_t count) {
  return count == 0 ? 0
                    : static_cast<double>(*std::max_element(histogram.begin(), histogram.end())) /
                          static_cast<double>(count);
}

}  // namespace

void ByteStatistics::Add(std::span<const std::uint8_t> bytes) {
  for (const std::uint8_t b : bytes) {
    histogram_[b]++;
    const double x = b;
    if (!have_first_) {
      first_ = b;
      have_first_ = true;
    } else {
      sum_products_ += static_cast<double>(last_) * x;
    }
    last_ = b;
    sum_ += x;
    sum_squares_ += x * x;
  }
  count_ += bytes.size();
}

double ByteStatistics::mean() const { return count_ == 0 ? 0 : sum_ / static_cast<double>(count_); }

double ByteStatistics::shannon_bits() const {
  double h = 0;
  for (const std::uint64_t c : histogram_) {
    if (c == 0) continue;
    const double p = static_cast<double>(c) / static_cast<double>(count_);
    h -= p * std::log2(p);
  }
  return h;
}

double ByteStatistics::chi_square() const {
  if (count_ == 0) return 0;
  const double expected = static_cast<double>(count_) / 256.0;
  double chi = 0;
  for (const std::uint64_t c : histogram_) {
    const double d = static_cast<double>(c) - expected;
    chi += d * d / expected;
  }
  return chi;
}

double ByteStatistics::chi_square_p() const {
  // Wilson-Hilferty: (X/k)^(1/3) is close to normal; ample for k = 255.
  constexpr double k = 255;
  const double z = (std::cbrt(chi_square() / k) - (1 - 2 / (9 * k))) / std::sqrt(2 / (9 * k));
  return 0.5 * std::erfc(z / std::sqrt(2.0));
}

double ByteStatistics::serial_correlation() const {
  if (count_ < 2) return 0;
  const double n = static_cast<double>(count_);
  const double products = sum_products_ + static_cast<double>(last_) * first_;
  const double numerator = n * products - sum_ * sum_;
  const double denominator = n * sum_squares_ - sum_ * sum_;
  return denominator == 0 ? 1.0 : numerator / denominator;
}

double ByteStatistics::min_entropy_estimate() const {
  if (count_ < 2) return 0;
  const double p = MaxProportion(histogram_, count_);
  const double upper =
      std::min(1.0, p + kZ99 * std::sqrt(p * (1 - p) / static_cast<double>(count_ - 1)));
  return -std::log2(upper);
}

double ByteStatistics::min_entropy_upper_bound() const {
  if (count_ < 2) return 8;
  const double p = MaxProportion(histogram_, count_);
  const double lower =
      std::max(1.0 / 256, p - kZ99Of256 * std::sqrt(p * (1 - p) / static_cast<double>(count_ - 1)));
  return -std::log2(lower);
}

}  // namespace rngmux
