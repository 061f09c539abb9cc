#include "health/conditioner.h"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <numeric>
#include <stdexcept>
#include <vector>

namespace rngmux {
namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes Counting(std::size_t n) {
  Bytes b(n);
  std::iota(b.begin(), b.end(), std::uint8_t{0});
  return b;
}

TEST(ConditionerTest, InputPerOutputFollowsTheClaimWithA64BitMargin) {
  EXPECT_EQ(Conditioner(4).input_bytes_per_output(), 80u);   // 320 / 4
  EXPECT_EQ(Conditioner(1).input_bytes_per_output(), 320u);  // 320 / 1
  EXPECT_EQ(Conditioner(7).input_bytes_per_output(), 46u);   // ceil(320 / 7)
  EXPECT_EQ(Conditioner(0.5).input_bytes_per_output(), 640u);
  EXPECT_THROW(Conditioner(8), std::invalid_argument);
  EXPECT_THROW(Conditioner(0), std::invalid_argument);
}

TEST(ConditionerTest, OutputLengthMatchesTheClaim) {
  Conditioner c(2);  // 160 input bytes per 32 output bytes
  const Bytes in = Counting(4096);
  Bytes out(c.MaxOutput(in.size()));
  EXPECT_EQ(out.size(), 4096 / 160 * 32u);
  EXPECT_EQ(c.Condition(in, out), 25 * 32u);
  // 4096 - 25 * 160 = 96 bytes are pending: 64 more complete the next output.
  Bytes more(c.MaxOutput(64));
  EXPECT_EQ(more.size(), 32u);
  EXPECT_EQ(c.Condition(Counting(64), more), 32u);
}

TEST(ConditionerTest, EachOutputIsTheSha256OfItsOwnInputs) {
  Conditioner c(4);
  const Bytes in = Counting(200);  // two outputs (160 bytes) + 40 pending
  Bytes out(c.MaxOutput(in.size()));
  ASSERT_EQ(c.Condition(in, out), 64u);
  std::uint8_t want[32];
  SHA256(in.data(), 80, want);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + 32), Bytes(want, want + 32));
  SHA256(in.data() + 80, 80, want);
  EXPECT_EQ(Bytes(out.begin() + 32, out.end()), Bytes(want, want + 32));
}

TEST(ConditionerTest, SplitInputGivesTheSameOutputAsWhole) {
  const Bytes in = Counting(1000);
  Conditioner whole(3), split(3);
  Bytes a(whole.MaxOutput(in.size())), b(a.size());
  ASSERT_EQ(whole.Condition(in, a), a.size());
  std::size_t written = 0;
  for (std::size_t i = 0; i < in.size(); i += 7) {
    const std::size_t n = std::min<std::size_t>(7, in.size() - i);
    written += split.Condition(std::span(in).subspan(i, n), std::span(b).subspan(written));
  }
  EXPECT_EQ(written, a.size());
  EXPECT_EQ(a, b);
}

TEST(ConditionerTest, ResetDropsPartialInput) {
  Conditioner c(4);
  Bytes out(32);
  EXPECT_EQ(c.Condition(Counting(50), out), 0u);
  c.Reset();
  const Bytes in = Counting(80);
  ASSERT_EQ(c.Condition(in, out), 32u);
  std::uint8_t want[32];
  SHA256(in.data(), in.size(), want);
  EXPECT_EQ(out, Bytes(want, want + 32));
}

}  // namespace
}  // namespace rngmux
