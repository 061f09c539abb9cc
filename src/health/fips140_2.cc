#include "health/fips140_2.h"

#include <algorithm>
#include <bit>

namespace rngmux {
namespace {

constexpr unsigned kMonobitLow = 9725;  // exclusive bounds
constexpr unsigned kMonobitHigh = 10275;
constexpr double kPokerLow = 2.16;
constexpr double kPokerHigh = 46.17;
constexpr unsigned kLongRun = 26;
// Allowed counts of runs of length 1, 2, 3, 4, 5 and 6+, for each bit value (inclusive).
constexpr std::array<std::array<unsigned, 2>, 6> kRunBounds = {{
    {2315, 2685},
    {1114, 1386},
    {527, 723},
    {240, 384},
    {103, 209},
    {103, 209},
}};

}  // namespace

Fips140_2Result Fips140_2Tester::Test(std::span<const std::uint8_t, kBlockBytes> block) {
  Fips140_2Result r;

  std::array<unsigned, 16> nibbles{};
  for (const std::uint8_t b : block) {
    r.ones += static_cast<unsigned>(std::popcount(b));
    nibbles[b >> 4]++;
    nibbles[b & 0xf]++;
  }
  r.monobit = r.ones > kMonobitLow && r.ones < kMonobitHigh;

  double sum_squares = 0;
  for (const unsigned f : nibbles) sum_squares += static_cast<double>(f) * f;
  r.poker_statistic = 16.0 / 5000.0 * sum_squares - 5000.0;
  r.poker = r.poker_statistic > kPokerLow && r.poker_statistic < kPokerHigh;

  // runs[bit][length-1], lengths of 6 and more counted together
  std::array<std::array<unsigned, 6>, 2> runs{};
  int current = -1;
  unsigned length = 0;
  auto close_run = [&] {
    if (current < 0) return;
    runs[static_cast<unsigned>(current)][std::min(length, 6u) - 1]++;
    if (length > r.longest_run) r.longest_run = length;
  };
  for (const std::uint8_t b : block) {
    for (int i = 7; i >= 0; --i) {
      const int bit = (b >> i) & 1;
      if (bit == current) {
        ++length;
      } else {
        close_run();
        current = bit;
        length = 1;
      }
    }
  }
  close_run();
  r.long_run = r.longest_run < kLongRun;
  for (const auto& by_length : runs) {
    for (std::size_t i = 0; i < kRunBounds.size(); ++i) {
      if (by_length[i] < kRunBounds[i][0] || by_length[i] > kRunBounds[i][1]) r.runs = false;
    }
  }

  for (std::size_t i = 0; i + 4 <= block.size(); i += 4) {
    const std::uint32_t word = (std::uint32_t{block[i]} << 24) |
                               (std::uint32_t{block[i + 1]} << 16) |
                               (std::uint32_t{block[i + 2]} << 8) | block[i + 3];
    if (have_previous_ && word == previous_) r.continuous = false;
    previous_ = word;
    have_previous_ = true;
  }
  return r;
}

void Fips140_2Counters::Add(const Fips140_2Result& r) {
  ++blocks;
  if (!r.monobit) ++monobit;
  if (!r.poker) ++poker;
  if (!r.runs) ++runs;
  if (!r.long_run) ++long_run;
  if (!r.continuous) ++continuous;
  if (!r.passed()) ++failed_blocks;
}

}  // namespace rngmux
