#include "sources/block_gate.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

namespace rngmux {
namespace {

using Verdict = BlockGate::Verdict;

std::vector<std::uint8_t> Uniform(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> out(n);
  for (auto& b : out) b = static_cast<std::uint8_t>(rng() >> 24);
  return out;
}

TEST(BlockGateTest, StartUpFirstThenFullEntropyBlocksPassAsTheyAre) {
  BlockGate gate(8, {});
  const auto first = Uniform(HealthMonitor::kStartupSamples, 1);
  EXPECT_EQ(gate.Check(first).verdict, Verdict::kStartupInProgress);
  EXPECT_TRUE(gate.startup_complete());
  const auto block = Uniform(512, 2);
  const BlockGate::Outcome o = gate.Check(block);
  ASSERT_EQ(o.verdict, Verdict::kPass);
  EXPECT_EQ(o.output.data(), block.data()) << "no copy, no conditioning at 8 bits/byte";
  EXPECT_EQ(o.output.size(), block.size());
}

TEST(BlockGateTest, AStuckBlockFailsAndResetRequiresStartUpAgain) {
  BlockGate gate(8, {});
  gate.Check(Uniform(1024, 1));
  const std::vector<std::uint8_t> stuck(512, 0xAA);
  const BlockGate::Outcome o = gate.Check(stuck);
  EXPECT_EQ(o.verdict, Verdict::kFail);
  EXPECT_EQ(o.failure, "RCT");
  EXPECT_FALSE(o.fips_failed);
  gate.Reset();
  EXPECT_FALSE(gate.startup_complete());
  EXPECT_EQ(gate.Check(Uniform(512, 3)).verdict, Verdict::kStartupInProgress);
}

TEST(BlockGateTest, FipsGateFailsABiasedBlockThatRctAndAptPass) {
  BlockGate::Options options;
  options.fips = BlockGate::Fips::kGate;
  const std::size_t size = BlockGate::BlockBytesFor(4096, options.fips);
  EXPECT_EQ(size, 5000u);
  BlockGate gate(8, options);
  gate.Check(Uniform(1024, 1));
  EXPECT_EQ(gate.Check(Uniform(size, 2)).verdict, Verdict::kPass);
  auto biased = Uniform(size, 3);
  for (auto& b : biased) b &= 0x7F;  // 7 of 16 bits set on average: monobit fails
  const BlockGate::Outcome o = gate.Check(biased);
  EXPECT_EQ(o.verdict, Verdict::kFail);
  EXPECT_TRUE(o.fips_failed);
  EXPECT_EQ(o.failure.rfind("FIPS 140-2 monobit", 0), 0u) << o.failure;
  EXPECT_GE(gate.fips_counters().failed_blocks, 1u);
}

TEST(BlockGateTest, FipsCountTestsEveryByteAcrossUnevenBlocksWithoutGating) {
  BlockGate::Options options;
  options.fips = BlockGate::Fips::kCount;
  options.condition = false;
  BlockGate gate(4, options);  // raw bytes of a 4-bit source: not conditioned
  auto biased = Uniform(7000, 4);
  for (auto& b : biased) b &= 0x7F;
  // 1000 + 3000 + 3000 bytes: two whole FIPS blocks, 2000 bytes waiting.
  EXPECT_EQ(gate.Check(std::span(biased).first(1000)).verdict, Verdict::kStartupInProgress);
  EXPECT_EQ(gate.Check(std::span(biased).subspan(1000, 3000)).verdict,
            Verdict::kStartupInProgress);  // start-up completes in it: consumed whole
  const BlockGate::Outcome o = gate.Check(std::span(biased).subspan(4000, 3000));
  EXPECT_EQ(o.verdict, Verdict::kPass) << "FIPS results are counted, not gating";
  EXPECT_EQ(o.output.size(), 3000u);
  EXPECT_EQ(gate.fips_counters().blocks, 2u);
  EXPECT_EQ(gate.fips_counters().monobit, 2u);
}

TEST(BlockGateTest, BelowFullEntropyTheOutputIsConditioned) {
  BlockGate gate(4, {});
  EXPECT_TRUE(gate.conditioning());
  EXPECT_EQ(gate.conditioner_input_bytes(), 80u);  // (256 + 64) / 4
  EXPECT_EQ(gate.Describe(), "SHA-256 conditioned, 80 bytes in per 32 out");
  gate.Check(Uniform(1024, 1));
  const auto block = Uniform(800, 2);
  const BlockGate::Outcome o = gate.Check(block);
  ASSERT_EQ(o.verdict, Verdict::kPass);
  EXPECT_EQ(o.output.size(), 320u);
  EXPECT_NE(o.output.data(), block.data());
  // 40 more bytes are not enough for an output; 40 after them are.
  EXPECT_EQ(gate.Check(Uniform(40, 3)).output.size(), 0u);
  EXPECT_EQ(gate.Check(Uniform(40, 4)).output.size(), 32u);
}

}  // namespace
}  // namespace rngmux
