#include "health/fips140_2.h"

#include <gtest/gtest.h>

#include <array>
#include <random>

namespace rngmux {
namespace {

using Block = std::array<std::uint8_t, Fips140_2Tester::kBlockBytes>;

Block RandomBlock(std::mt19937_64& rng) {
  Block b;
  for (auto& x : b) x = static_cast<std::uint8_t>(rng());
  return b;
}

// Sets the first `ones` bits of the block (MSB first) to 1 and the rest to 0.
Block BlockWithOnes(unsigned ones) {
  Block b{};
  for (unsigned i = 0; i < ones; ++i) b[i / 8] |= static_cast<std::uint8_t>(0x80 >> (i % 8));
  return b;
}

TEST(Fips140_2Test, GoodGeneratorPassesEveryTest) {
  std::mt19937_64 rng(42);
  Fips140_2Tester tester;
  Fips140_2Counters counters;
  for (int i = 0; i < 200; ++i) counters.Add(tester.Test(RandomBlock(rng)));
  EXPECT_EQ(counters.blocks, 200u);
  // About 0.1% of good blocks fail one test; with this seed none do.
  EXPECT_EQ(counters.failed_blocks, 0u);
}

TEST(Fips140_2Test, ZeroBlockFailsEverything) {
  Fips140_2Tester tester;
  const Fips140_2Result r = tester.Test(Block{});
  EXPECT_FALSE(r.monobit);
  EXPECT_FALSE(r.poker);
  EXPECT_FALSE(r.runs);
  EXPECT_FALSE(r.long_run);
  EXPECT_FALSE(r.continuous);
  EXPECT_EQ(r.ones, 0u);
  EXPECT_EQ(r.longest_run, 20000u);
  EXPECT_FALSE(r.passed());
}

TEST(Fips140_2Test, AlternatingBitsPassMonobitButNotPokerOrRuns) {
  Block b;
  b.fill(0x55);
  Fips140_2Tester tester;
  const Fips140_2Result r = tester.Test(b);
  EXPECT_TRUE(r.monobit);
  EXPECT_EQ(r.ones, 10000u);
  EXPECT_FALSE(r.poker);
  EXPECT_DOUBLE_EQ(r.poker_statistic, 16.0 / 5000 * 5000.0 * 5000.0 - 5000);
  EXPECT_FALSE(r.runs);  // 20,000 runs of length 1
  EXPECT_TRUE(r.long_run);
  EXPECT_EQ(r.longest_run, 1u);
}

TEST(Fips140_2Test, MonobitBoundsAreExclusive) {
  // Only the count of ones matters to monobit; the other tests fail on these blocks.
  Fips140_2Tester tester;
  EXPECT_FALSE(tester.Test(BlockWithOnes(9725)).monobit);
  EXPECT_TRUE(tester.Test(BlockWithOnes(9726)).monobit);
  EXPECT_TRUE(tester.Test(BlockWithOnes(10274)).monobit);
  EXPECT_FALSE(tester.Test(BlockWithOnes(10275)).monobit);
}

TEST(Fips140_2Test, LongRunIsTwentySixBits) {
  std::mt19937_64 rng(7);
  Block b = RandomBlock(rng);
  // 25 zero bits framed by ones: passes; 26: fails.
  for (unsigned run : {25u, 26u}) {
    Block c = b;
    const unsigned start = 8000;  // bit offset
    for (unsigned i = 0; i < run + 2; ++i) {
      const unsigned bit = start + i;
      const bool one = i == 0 || i == run + 1;
      const auto mask = static_cast<std::uint8_t>(0x80 >> (bit % 8));
      c[bit / 8] = one ? static_cast<std::uint8_t>(c[bit / 8] | mask)
                       : static_cast<std::uint8_t>(c[bit / 8] & ~mask);
    }
    Fips140_2Tester tester;
    const Fips140_2Result r = tester.Test(c);
    EXPECT_GE(r.longest_run, run);
    EXPECT_EQ(r.long_run, run < 26) << "run of " << run;
  }
}

TEST(Fips140_2Test, ContinuousTestComparesWordsAcrossBlocks) {
  std::mt19937_64 rng(9);
  Fips140_2Tester tester;
  Block first = RandomBlock(rng);
  ASSERT_TRUE(tester.Test(first).continuous);
  Block second = RandomBlock(rng);
  // The second block starts with the word the first ended with.
  std::copy(first.end() - 4, first.end(), second.begin());
  EXPECT_FALSE(tester.Test(second).continuous);
  // Within a block, too.
  Block third = RandomBlock(rng);
  std::copy(third.begin() + 100, third.begin() + 104, third.begin() + 104);
  EXPECT_FALSE(tester.Test(third).continuous);
  // After Reset() the previous word is forgotten.
  tester.Reset();
  Block fourth = RandomBlock(rng);
  std::copy(third.end() - 4, third.end(), fourth.begin());
  EXPECT_TRUE(tester.Test(fourth).continuous);
}

TEST(Fips140_2Test, CountersCountEachTestAndFailedBlocksOnce) {
  Fips140_2Tester tester;
  Fips140_2Counters counters;
  counters.Add(tester.Test(Block{}));
  Block alt;
  alt.fill(0x55);
  counters.Add(tester.Test(alt));
  EXPECT_EQ(counters.blocks, 2u);
  EXPECT_EQ(counters.failed_blocks, 2u);
  EXPECT_EQ(counters.monobit, 1u);
  EXPECT_EQ(counters.poker, 2u);
  EXPECT_EQ(counters.runs, 2u);
  EXPECT_EQ(counters.long_run, 1u);
  EXPECT_EQ(counters.continuous, 2u);
}

}  // namespace
}  // namespace rngmux
