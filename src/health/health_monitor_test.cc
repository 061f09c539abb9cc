#include "health/health_monitor.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

namespace rngmux {
namespace {

using Verdict = HealthMonitor::Verdict;

// Uniform bytes from a fixed seed: at H = 8 and alpha = 2^-30 the chance that any
// of these trips a test is negligible, and the seed makes the run reproducible.
std::vector<std::uint8_t> GoodBytes(std::size_t size, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> bytes(size);
  for (auto& byte : bytes) byte = static_cast<std::uint8_t>(rng() >> 24);
  return bytes;
}

TEST(HealthMonitorTest, ConsumesTheFirst1024SamplesAsStartUp) {
  HealthMonitor monitor(8);
  EXPECT_FALSE(monitor.startup_complete());
  EXPECT_EQ(monitor.Check(GoodBytes(512, 1)), Verdict::kStartupInProgress);
  EXPECT_FALSE(monitor.startup_complete());
  EXPECT_EQ(monitor.Check(GoodBytes(512, 2)), Verdict::kStartupInProgress);
  EXPECT_TRUE(monitor.startup_complete());
  EXPECT_EQ(monitor.Check(GoodBytes(512, 3)), Verdict::kPass);
  EXPECT_EQ(monitor.Check(GoodBytes(512, 4)), Verdict::kPass);
}

TEST(HealthMonitorTest, ABlockThatCompletesStartUpIsStillConsumedWhole) {
  HealthMonitor monitor(8);
  EXPECT_EQ(monitor.Check(GoodBytes(1000, 1)), Verdict::kStartupInProgress);
  // 24 start-up samples remain; the other 4072 of this block are dropped with them.
  EXPECT_EQ(monitor.Check(GoodBytes(4096, 2)), Verdict::kStartupInProgress);
  EXPECT_TRUE(monitor.startup_complete());
  EXPECT_EQ(monitor.Check(GoodBytes(4096, 3)), Verdict::kPass);
}

TEST(HealthMonitorTest, UsesTheCutoffsForItsClaim) {
  EXPECT_EQ(HealthMonitor(8).cutoffs().rct_cutoff, 5u);
  EXPECT_EQ(HealthMonitor(4, 20).cutoffs().apt_cutoff, 62u);
}

TEST(HealthMonitorTest, StuckBlockFailsRctAndRequiresStartUpAgain) {
  HealthMonitor monitor(8);
  ASSERT_EQ(monitor.Check(GoodBytes(1024, 1)), Verdict::kStartupInProgress);
  ASSERT_EQ(monitor.Check(GoodBytes(512, 2)), Verdict::kPass);

  std::vector<std::uint8_t> stuck(512, 0xAA);
  EXPECT_EQ(monitor.Check(stuck), Verdict::kFail);
  EXPECT_EQ(monitor.last_failure(), "RCT");
  EXPECT_FALSE(monitor.startup_complete());

  // Good bytes again: start-up first, only then blocks pass.
  EXPECT_EQ(monitor.Check(GoodBytes(1024, 3)), Verdict::kStartupInProgress);
  EXPECT_EQ(monitor.Check(GoodBytes(512, 4)), Verdict::kPass);
}

TEST(HealthMonitorTest, FailureDuringStartUpRestartsStartUp) {
  HealthMonitor monitor(8);
  EXPECT_EQ(monitor.Check(GoodBytes(1000, 1)), Verdict::kStartupInProgress);
  EXPECT_EQ(monitor.Check(std::vector<std::uint8_t>(16, 0)), Verdict::kFail);
  // The 1000 good samples before the failure no longer count.
  EXPECT_EQ(monitor.Check(GoodBytes(1000, 2)), Verdict::kStartupInProgress);
  EXPECT_FALSE(monitor.startup_complete());
  EXPECT_EQ(monitor.Check(GoodBytes(24, 3)), Verdict::kStartupInProgress);
  EXPECT_TRUE(monitor.startup_complete());
}

TEST(HealthMonitorTest, RunsStraddlingBlocksAreCaughtExactlyAtTheCutoff) {
  HealthMonitor monitor(8);  // RCT cutoff 5
  ASSERT_EQ(monitor.Check(GoodBytes(1024, 1)), Verdict::kStartupInProgress);
  std::vector<std::uint8_t> block = GoodBytes(512, 2);
  block[510] = block[511] = 0x5A;
  block[509] = 0x00;  // so that the run is exactly two long
  ASSERT_EQ(monitor.Check(block), Verdict::kPass);
  std::vector<std::uint8_t> next = GoodBytes(512, 3);
  next[0] = next[1] = 0x5A;  // run of four across the boundary: still passes
  next[2] = 0x01;
  ASSERT_EQ(monitor.Check(next), Verdict::kPass);

  std::vector<std::uint8_t> last = GoodBytes(512, 4);
  last[99] = 0x11;
  for (std::size_t i = 100; i < 105; ++i) last[i] = 0x22;  // a run of exactly five
  last[105] = 0x33;
  EXPECT_EQ(monitor.Check(last), Verdict::kFail);
  EXPECT_EQ(monitor.last_failure(), "RCT");
}

TEST(HealthMonitorTest, BiasedButNeverRepeatingInputFailsApt) {
  HealthMonitor monitor(8);  // APT cutoff 16 in 512
  // Every other sample is the window's first value: no runs, heavy bias.
  std::vector<std::uint8_t> biased(512);
  for (std::size_t i = 0; i < biased.size(); ++i) {
    biased[i] = i % 2 == 0 ? 0x00 : static_cast<std::uint8_t>(1 + i % 250);
  }
  EXPECT_EQ(monitor.Check(biased), Verdict::kFail);
  EXPECT_EQ(monitor.last_failure(), "APT");
}

TEST(HealthMonitorTest, AptFailsOnTheSixteenthOccurrenceNotTheFifteenth) {
  HealthMonitor monitor(8);
  ASSERT_EQ(monitor.Check(GoodBytes(1024, 9)), Verdict::kStartupInProgress);
  // The APT windows are aligned to the stream: 1024 samples = two whole windows,
  // so the next block starts a window.
  std::vector<std::uint8_t> window(512);
  for (std::size_t i = 0; i < window.size(); ++i) {
    window[i] = static_cast<std::uint8_t>(1 + i % 255);  // value 0 never appears
  }
  for (std::size_t i = 0; i < 15; ++i) window[i * 2] = 0x00;  // 15 zeros, first is 0
  ASSERT_EQ(monitor.Check(window), Verdict::kPass);
  window[40] = 0x00;  // the 16th
  EXPECT_EQ(monitor.Check(window), Verdict::kFail);
  EXPECT_EQ(monitor.last_failure(), "APT");
}

}  // namespace
}  // namespace rngmux
