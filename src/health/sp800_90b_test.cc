#include "health/sp800_90b.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>
#include <vector>

namespace rngmux {
namespace {

struct TableRow {
  double bits;
  unsigned rct_20, rct_30, apt_20, apt_30;
};
// The table in docs/health-tests.md (W = 512).
constexpr TableRow kTable[] = {
    {1, 21, 31, 311, 325},
    {2, 11, 16, 177, 190},
    {4, 6, 9, 62, 71},
    {8, 4, 5, 13, 16},
};

TEST(ComputeCutoffsTest, MatchesPublishedTableAtAlpha2To30) {
  for (const TableRow& row : kTable) {
    const HealthCutoffs cutoffs = ComputeCutoffs(row.bits, 30.0);
    EXPECT_EQ(cutoffs.rct_cutoff, row.rct_30) << "H=" << row.bits;
    EXPECT_EQ(cutoffs.apt_cutoff, row.apt_30) << "H=" << row.bits;
    EXPECT_EQ(cutoffs.apt_window, 512u);
  }
}

TEST(ComputeCutoffsTest, MatchesPublishedTableAtAlpha2To20) {
  for (const TableRow& row : kTable) {
    const HealthCutoffs cutoffs = ComputeCutoffs(row.bits, 20.0);
    EXPECT_EQ(cutoffs.rct_cutoff, row.rct_20) << "H=" << row.bits;
    EXPECT_EQ(cutoffs.apt_cutoff, row.apt_20) << "H=" << row.bits;
  }
}

TEST(ComputeCutoffsTest, DefaultAlphaIs2To30) {
  EXPECT_EQ(ComputeCutoffs(8).rct_cutoff, 5u);
  EXPECT_EQ(ComputeCutoffs(8).apt_cutoff, 16u);
}

TEST(ComputeCutoffsTest, FractionalClaimsDoNotPickUpRoundingNoise) {
  // 30 / 0.1 is 300.00000000000006 in doubles; the cutoff must still be 1 + 300.
  EXPECT_EQ(ComputeCutoffs(0.1).rct_cutoff, 301u);
  EXPECT_EQ(ComputeCutoffs(6).rct_cutoff, 6u);  // 1 + ceil(5)
  EXPECT_EQ(ComputeCutoffs(7).rct_cutoff, 6u);  // 1 + ceil(4.29)
}

TEST(ComputeCutoffsTest, CutoffsShrinkAsTheClaimGrows) {
  HealthCutoffs previous = ComputeCutoffs(0.25);
  for (double bits = 0.5; bits <= 8.0; bits += 0.25) {
    const HealthCutoffs cutoffs = ComputeCutoffs(bits);
    EXPECT_LE(cutoffs.rct_cutoff, previous.rct_cutoff) << bits;
    EXPECT_LE(cutoffs.apt_cutoff, previous.apt_cutoff) << bits;
    EXPECT_LE(cutoffs.apt_cutoff, cutoffs.apt_window) << bits;
    previous = cutoffs;
  }
}

TEST(CritBinomTest, MatchesKnownValues) {
  // Median of Binomial(10, 0.5) and other exact small cases.
  EXPECT_EQ(CritBinom(10, 0.5, 0.5), 5u);
  EXPECT_EQ(CritBinom(1, 0.5, 0.5), 0u);  // P[X <= 0] = 0.5
  EXPECT_EQ(CritBinom(1, 0.5, 0.75), 1u);
  EXPECT_EQ(CritBinom(2, 0.5, 0.75), 1u);  // P[X <= 1] = 0.75 exactly
  // The APT formula from the doc, spelled out: H = 1, W = 512, alpha = 2^-30.
  EXPECT_EQ(1 + CritBinom(512, 0.5, 1.0 - 0x1p-30), 325u);
}

TEST(CritBinomTest, HandlesDegenerateInputs) {
  EXPECT_EQ(CritBinom(512, 0.0, 0.999), 0u);
  EXPECT_EQ(CritBinom(512, 1.0, 0.5), 512u);
  EXPECT_EQ(CritBinom(512, 0.5, 1.0), 512u);
  EXPECT_EQ(CritBinom(512, 0.5, 0.0), 0u);
  EXPECT_EQ(CritBinom(0, 0.5, 0.5), 0u);
}

TEST(ComputeCutoffsTest, StaysMeaningfulBeyondDoublePrecisionAlpha) {
  // 1 - 2^-60 rounds to 1 in a double; the cutoffs must still be finite and ordered.
  const HealthCutoffs strict = ComputeCutoffs(8, 60);
  EXPECT_EQ(strict.rct_cutoff, 9u);  // 1 + ceil(60 / 8)
  EXPECT_GT(strict.apt_cutoff, ComputeCutoffs(8, 40).apt_cutoff);
  EXPECT_GT(ComputeCutoffs(8, 40).apt_cutoff, ComputeCutoffs(8, 30).apt_cutoff);
  EXPECT_LT(strict.apt_cutoff, 512u);
}

TEST(RepetitionCountTest, FailsExactlyAtTheCutoff) {
  RepetitionCountTest rct(5);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(rct.Feed(0x42)) << "repeat " << i + 1;
  EXPECT_FALSE(rct.Feed(0x42));  // the 5th identical sample in a row
}

TEST(RepetitionCountTest, ADifferentValueRestartsTheRun) {
  RepetitionCountTest rct(5);
  for (int round = 0; round < 100; ++round) {
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(rct.Feed(static_cast<std::uint8_t>(round)));
  }
}

TEST(RepetitionCountTest, RunsCarryAcrossCallsAndResetClearsThem) {
  RepetitionCountTest rct(3);
  EXPECT_TRUE(rct.Feed(0));
  EXPECT_TRUE(rct.Feed(0));
  rct.Reset();
  EXPECT_TRUE(rct.Feed(0));  // a fresh run, even though the value is the same
  EXPECT_TRUE(rct.Feed(0));
  EXPECT_FALSE(rct.Feed(0));
}

TEST(RepetitionCountTest, ZeroAfterResetIsNotMistakenForAStoredZero) {
  RepetitionCountTest rct(2);
  EXPECT_TRUE(rct.Feed(0));
  EXPECT_FALSE(rct.Feed(0));
}

// Feeds a window whose first value recurs `repeats` times in all (including the
// first sample), spread out so that the RCT would never see a run.
std::vector<std::uint8_t> BiasedWindow(unsigned window, unsigned repeats) {
  std::vector<std::uint8_t> samples(window);
  std::uint8_t filler = 1;
  for (unsigned i = 0; i < window; ++i) {
    if (i % 2 == 0 && i / 2 < repeats) {
      samples[i] = 0;
    } else {
      samples[i] = filler;
      filler = static_cast<std::uint8_t>(filler == 255 ? 1 : filler + 1);
    }
  }
  return samples;
}

TEST(AdaptiveProportionTest, PassesOneBelowTheCutoff) {
  AdaptiveProportionTest apt(512, 16);
  for (int window = 0; window < 3; ++window) {
    for (const std::uint8_t sample : BiasedWindow(512, 15)) ASSERT_TRUE(apt.Feed(sample));
  }
}

TEST(AdaptiveProportionTest, FailsOnTheSampleThatReachesTheCutoff) {
  AdaptiveProportionTest apt(512, 16);
  const std::vector<std::uint8_t> samples = BiasedWindow(512, 16);
  // The 16th zero sits at index 30; everything before it passes.
  for (unsigned i = 0; i < 30; ++i) ASSERT_TRUE(apt.Feed(samples[i])) << i;
  EXPECT_FALSE(apt.Feed(samples[30]));
}

TEST(AdaptiveProportionTest, CountsOnlyWithinOneWindow) {
  AdaptiveProportionTest apt(8, 3);
  // Window 1: 0 appears twice (ok). Window 2 starts at sample 8 with value 5.
  const std::uint8_t first[] = {0, 1, 2, 0, 3, 4, 6, 7};
  for (const std::uint8_t s : first) ASSERT_TRUE(apt.Feed(s));
  // Two more zeros in the next window do not add to the previous window's count.
  const std::uint8_t second[] = {5, 0, 0, 1, 2, 3, 4, 6};
  for (const std::uint8_t s : second) ASSERT_TRUE(apt.Feed(s));
  // The window's first value is the reference: 5 at positions 0, 2 and 4 fails.
  EXPECT_TRUE(apt.Feed(5));
  EXPECT_TRUE(apt.Feed(1));
  EXPECT_TRUE(apt.Feed(5));
  EXPECT_TRUE(apt.Feed(2));
  EXPECT_FALSE(apt.Feed(5));
}

TEST(AdaptiveProportionTest, ResetStartsANewWindow) {
  AdaptiveProportionTest apt(512, 3);
  EXPECT_TRUE(apt.Feed(7));
  EXPECT_TRUE(apt.Feed(7 - 1));
  EXPECT_TRUE(apt.Feed(7));
  apt.Reset();
  EXPECT_TRUE(apt.Feed(9));  // new reference value
  EXPECT_TRUE(apt.Feed(7));
  EXPECT_TRUE(apt.Feed(7));
  EXPECT_TRUE(apt.Feed(9));
  EXPECT_FALSE(apt.Feed(9));
}

// A run of exactly the cutoff that starts right where a vector step of FeedBlock ended
// (every alignment is tried): the step must hand its last sample on, or the run is
// counted one short and passes.
TEST(RepetitionCountTest, FeedBlockCountsRunsAcrossItsVectorSteps) {
  for (std::size_t start = 1; start < 64; ++start) {
    std::vector<std::uint8_t> stream(128);
    for (std::size_t i = 0; i < stream.size(); ++i) {
      stream[i] = static_cast<std::uint8_t>(i * 7 % 251 + 1);  // no equal neighbours
    }
    for (std::size_t i = 1; i < 5; ++i) stream[start + i] = stream[start];
    RepetitionCountTest five(5), six(6);
    EXPECT_FALSE(five.FeedBlock(stream)) << "run of 5 from " << start;
    EXPECT_TRUE(six.FeedBlock(stream)) << "run of 5 from " << start << " against cutoff 6";
  }
}

// The block versions must judge exactly as sample-by-sample feeding does, after every
// block and across block boundaries, on streams with stuck runs and bias mixed in; with
// blocks of several sizes (the vector paths take 16 and 8 samples a step, the rest one
// at a time) and an APT window long enough to need its lane counters summed twice.
TEST(HealthTestBlocks, FeedBlockAgreesWithFeed) {
  std::mt19937 rng(77);
  int rct_failures = 0, apt_failures = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<std::uint8_t> stream(12000);
    for (auto& b : stream) b = static_cast<std::uint8_t>(rng() % (trial % 3 == 0 ? 16 : 256));
    if (trial % 5 == 0) {
      const std::size_t at = rng() % 11900;
      for (std::size_t i = 0; i < 1 + rng() % 8; ++i) stream[at + i] = 0x42;
    } else if ((trial / 4) % 2 == 1) {
      // A run of exactly the RCT cutoff (5) that continues the sample before it: it
      // fails only if the run is counted across whatever step the vector path took.
      const std::size_t at = 1 + rng() % 11900;
      for (std::size_t i = 0; i < 4; ++i) stream[at + i] = stream[at - 1];
    }
    if (trial % 8 == 2) {
      // The APT window's first sample repeated 4096 times: 256 matches in each of the
      // 16 lanes, which a lane counter that wrapped would lose.
      for (std::size_t i = 0; i <= 4096; ++i) stream[i] = 0x42;
    }
    const std::size_t piece_size = std::array<std::size_t, 4>{300, 17, 8192, 1}[trial % 4];
    const unsigned apt_window = trial % 2 ? 512 : 8192;
    const unsigned apt_cutoff = trial % 2 ? 45 : 560;
    RepetitionCountTest rct_one(5), rct_block(5);
    AdaptiveProportionTest apt_one(apt_window, apt_cutoff), apt_block(apt_window, apt_cutoff);
    bool rct_one_ok = true, apt_one_ok = true, rct_block_ok = true, apt_block_ok = true;
    for (std::size_t at = 0; at < stream.size(); at += piece_size) {
      const auto piece =
          std::span(stream).subspan(at, std::min<std::size_t>(piece_size, stream.size() - at));
      for (const std::uint8_t b : piece) {
        rct_one_ok = rct_one_ok && rct_one.Feed(b);
        apt_one_ok = apt_one_ok && apt_one.Feed(b);
      }
      rct_block_ok = rct_block_ok && rct_block.FeedBlock(piece);
      apt_block_ok = apt_block_ok && apt_block.FeedBlock(piece);
      ASSERT_EQ(rct_block_ok, rct_one_ok) << "trial " << trial << " at " << at;
      ASSERT_EQ(apt_block_ok, apt_one_ok) << "trial " << trial << " at " << at;
    }
    rct_failures += rct_one_ok ? 0 : 1;
    apt_failures += apt_one_ok ? 0 : 1;
  }
  // Both verdicts occur, so the comparison above is not between two constant answers.
  EXPECT_GT(rct_failures, 10);
  EXPECT_LT(rct_failures, 290);
  EXPECT_GT(apt_failures, 10);
  EXPECT_LT(apt_failures, 290);
}

// The RCT's block path judges a step with repeats from a bit mask; for every cutoff
// the daemon can derive (2 and up; the mask covers up to 33, beyond that the samples
// are stepped through), on streams with runs of every length up to past the cutoff,
// at every alignment, it must agree with feeding one sample at a time.
TEST(RepetitionCountTest, FeedBlockAgreesWithFeedForEveryCutoff) {
  std::mt19937 rng(1234);
  for (const unsigned cutoff : {2u, 3u, 4u, 5u, 8u, 9u, 16u, 17u, 31u, 32u, 33u, 34u, 40u}) {
    int failures = 0;
    for (int trial = 0; trial < 200; ++trial) {
      // Short streams too, so that even cutoff 2 (any repeat fails) sees passes.
      std::vector<std::uint8_t> stream(std::array<std::size_t, 3>{2000, 300, 60}[trial / 4 % 3]);
      // Few symbols make repeats common (pairs, triples, long runs) without a fixed run.
      const unsigned symbols = std::array<unsigned, 4>{256, 8, 3, 2}[trial % 4];
      for (auto& b : stream) b = static_cast<std::uint8_t>(rng() % symbols);
      if (trial % 3 == 0) {
        // A run of about the cutoff that continues the sample before it, anywhere.
        const std::size_t length = cutoff - 2 + rng() % 3;  // cutoff - 1 samples or more
        const std::size_t at = 1 + rng() % (stream.size() - 1);
        for (std::size_t i = 0; i < length && at + i < stream.size(); ++i) {
          stream[at + i] = stream[at - 1];
        }
      }
      const std::size_t piece_size = std::array<std::size_t, 5>{2000, 16, 33, 7, 100}[trial % 5];
      RepetitionCountTest one(cutoff), block(cutoff);
      bool one_ok = true, block_ok = true;
      for (std::size_t at = 0; at < stream.size() && one_ok; at += piece_size) {
        const auto piece =
            std::span(stream).subspan(at, std::min<std::size_t>(piece_size, stream.size() - at));
        for (const std::uint8_t b : piece) one_ok = one_ok && one.Feed(b);
        block_ok = block.FeedBlock(piece);
        ASSERT_EQ(block_ok, one_ok) << "cutoff " << cutoff << " trial " << trial << " at " << at;
      }
      failures += one_ok ? 0 : 1;
    }
    // Both verdicts occur for every cutoff.
    EXPECT_GT(failures, 5) << "cutoff " << cutoff;
    EXPECT_LT(failures, 195) << "cutoff " << cutoff;
  }
}

}  // namespace
}  // namespace rngmux
