#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace rngmux {

// The FIPS 140-2 (change notice 1, section 4.9.1) statistical tests on blocks of
// 20,000 bits, plus the continuous test of section 4.9.2 on 32-bit words, as
// rngtest runs them. The errata dropped them as power-up tests for non-deterministic
// generators; here they are an optional extra screen on top of SP 800-90B RCT/APT,
// and `rngmux check` reports them.
//
// Bit order: the most significant bit of each byte comes first (as rngtest reads).
struct Fips140_2Result {
  bool monobit = true;     // 9725 < ones < 10275
  bool poker = true;       // 2.16 < X < 46.17 over 5000 4-bit nibbles
  bool runs = true;        // run counts of each length (1..5, 6+) in both bit values in range
  bool long_run = true;    // no run of 26 or more equal bits
  bool continuous = true;  // no 32-bit word equal to the one before it
  unsigned ones = 0;
  double poker_statistic = 0;
  unsigned longest_run = 0;

  bool passed() const { return monobit && poker && runs && long_run && continuous; }
};

// Feeds blocks of exactly kBlockBytes; keeps the last 32-bit word across blocks for
// the continuous test. Not thread-safe.
class Fips140_2Tester {
 public:
  static constexpr std::size_t kBlockBytes = 2500;  // 20,000 bits

  Fips140_2Result Test(std::span<const std::uint8_t, kBlockBytes> block);
  void Reset() { have_previous_ = false; }

 private:
  bool have_previous_ = false;
  std::uint32_t previous_ = 0;
};

// Counts of blocks that failed each test: what `check` and the stats report.
struct Fips140_2Counters {
  std::uint64_t blocks = 0;
  std::uint64_t monobit = 0;
  std::uint64_t poker = 0;
  std::uint64_t runs = 0;
  std::uint64_t long_run = 0;
  std::uint64_t continuous = 0;
  std::uint64_t failed_blocks = 0;  // blocks that failed any test

  void Add(const Fips140_2Result& r);
};

}  // namespace rngmux
