#include "health/byte_statistics.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace rngmux {
namespace {

std::vector<std::uint8_t> Uniform(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

TEST(ByteStatisticsTest, UniformBytesLookUniform) {
  ByteStatistics s;
  s.Add(Uniform(1 << 20, 1));
  EXPECT_EQ(s.count(), 1u << 20);
  EXPECT_NEAR(s.mean(), 127.5, 0.5);
  EXPECT_GT(s.shannon_bits(), 7.999);
  EXPECT_NEAR(s.serial_correlation(), 0, 0.005);
  EXPECT_GT(s.chi_square_p(), 0.001);
  EXPECT_LT(s.chi_square_p(), 0.999);
  EXPECT_GT(s.min_entropy_estimate(), 7.8);
  EXPECT_LE(s.min_entropy_estimate(), 8);
  EXPECT_DOUBLE_EQ(s.min_entropy_upper_bound(), 8);  // consistent with a claim of 8
}

TEST(ByteStatisticsTest, ChiSquareMatchesTheDefinition) {
  ByteStatistics s;
  std::vector<std::uint8_t> v(256 * 4);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint8_t>(i);
  s.Add(v);
  EXPECT_DOUBLE_EQ(s.chi_square(), 0);  // perfectly flat
  EXPECT_NEAR(s.chi_square_p(), 1, 1e-9);
  ByteStatistics t;
  t.Add(std::vector<std::uint8_t>(1024, 7));  // every byte the same
  EXPECT_DOUBLE_EQ(t.chi_square(), 255.0 * 1024);
  EXPECT_LT(t.chi_square_p(), 1e-12);
  EXPECT_DOUBLE_EQ(t.shannon_bits(), 0);
  EXPECT_DOUBLE_EQ(t.min_entropy_estimate(), 0);
}

TEST(ByteStatisticsTest, BiasedBytesAreCaughtByTheMinEntropyBound) {
  // Bits that are 1 with probability 0.55: 0xff has probability 0.55^8 = 0.0084.
  std::mt19937_64 rng(3);
  std::bernoulli_distribution bit(0.55);
  std::vector<std::uint8_t> v(1 << 18);
  for (auto& b : v) {
    unsigned x = 0;
    for (int i = 0; i < 8; ++i) x = (x << 1) | (bit(rng) ? 1u : 0u);
    b = static_cast<std::uint8_t>(x);
  }
  ByteStatistics s;
  s.Add(v);
  EXPECT_LT(s.min_entropy_upper_bound(), 7.2);  // a claim of 8 is implausible
  EXPECT_GT(s.min_entropy_upper_bound(), 6.5);
  EXPECT_LT(s.chi_square_p(), 1e-6);
}

TEST(ByteStatisticsTest, SerialCorrelationSeesRepeatedBytes) {
  std::vector<std::uint8_t> v = Uniform(1 << 16, 5);
  for (std::size_t i = 1; i < v.size(); i += 2) v[i] = v[i - 1];  // pairs
  ByteStatistics s;
  s.Add(v);
  EXPECT_GT(s.serial_correlation(), 0.4);
}

}  // namespace
}  // namespace rngmux
