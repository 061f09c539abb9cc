#include "sources/source_selector.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "sources/mix_policy.h"
#include "support/fake_clock.h"

namespace rngmux {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Offer = SourceSelector::Offer;

std::vector<std::uint8_t> Bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> out(n);
  for (auto& b : out) b = static_cast<std::uint8_t>(rng() >> 24);
  return out;
}

// The selector alone, driven by events and a fake clock: no threads, no sleeping.
class SelectorTest : public ::testing::Test {
 protected:
  void Make(SourceMode mode, std::size_t n, std::size_t min_mix = 0) {
    std::vector<std::string> names;
    for (std::size_t i = 0; i < n; ++i) names.push_back(std::string(1, char('A' + i)));
    selector_.emplace(names, MakeSelectionPolicy(mode, n, min_mix), SelectorTiming{}, now());
  }
  Clock::TimePoint now() const { return clock_.Now(); }
  SourceSelector& s() { return *selector_; }
  // Everything the selector has ready for the pool.
  std::vector<std::uint8_t> Output() {
    std::vector<std::uint8_t> out, buffer(4096);
    for (int i = 0; i < 1000; ++i) {
      const std::size_t n = s().TakeOutput(buffer, now());
      if (n == 0) break;
      out.insert(out.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
    }
    return out;
  }

  FakeClock clock_;
  std::optional<SourceSelector> selector_;
};

TEST_F(SelectorTest, FailoverServesThePreferredSourceAndParksTheRest) {
  Make(SourceMode::kFailover, 2);
  // Within the start-up grace, B waits for A's first try.
  EXPECT_TRUE(s().Wanted(0, now()));
  EXPECT_FALSE(s().Wanted(1, now()));
  s().OnHealth(0, true, now());
  EXPECT_EQ(s().Serving(now()), "A");
  EXPECT_FALSE(s().Wanted(1, now()));
  const auto block = Bytes(512, 1);
  EXPECT_EQ(s().OnBlock(0, block, now()), Offer::kPassThrough);
  EXPECT_EQ(s().OnBlock(1, block, now()), Offer::kRefused);
  EXPECT_EQ(s().switches(), 0u);

  s().OnHealth(0, false, now());  // A fails: B is wanted and serves once healthy
  EXPECT_EQ(s().Serving(now()), "none");
  EXPECT_TRUE(s().Wanted(1, now()));
  s().OnHealth(1, true, now());
  EXPECT_EQ(s().Serving(now()), "B");
  EXPECT_TRUE(s().Wanted(0, now())) << "a preferred source keeps proving itself";
  EXPECT_EQ(s().OnBlock(1, block, now()), Offer::kPassThrough);

  s().OnHealth(0, true, now());  // A is back: B is parked
  EXPECT_EQ(s().Serving(now()), "A");
  EXPECT_FALSE(s().Wanted(1, now()));
  EXPECT_EQ(s().OnBlock(1, block, now()), Offer::kRefused);
  EXPECT_EQ(s().switches(), 3u);  // A -> none -> B -> A
}

TEST_F(SelectorTest, FailoverStopsWaitingForAPreferredSourceAfterTheGrace) {
  Make(SourceMode::kFailover, 2);
  EXPECT_FALSE(s().Wanted(1, now()));
  EXPECT_EQ(s().NextDeadline(now()), now() + milliseconds(3000));
  clock_.Advance(milliseconds(2999));
  EXPECT_FALSE(s().Wanted(1, now()));
  clock_.Advance(milliseconds(1));
  EXPECT_TRUE(s().Wanted(1, now()));
}

TEST_F(SelectorTest, FailoverPassesOverASilentSourceAndTakesItBack) {
  Make(SourceMode::kFailover, 2);
  s().OnHealth(0, true, now());
  clock_.Advance(seconds(5));
  EXPECT_EQ(s().Serving(now()), "A") << "5 s is the limit, not past it";
  EXPECT_EQ(s().NextDeadline(now()), now() + Clock::Duration(1));
  clock_.Advance(Clock::Duration(1));
  s().NoteServing(now());
  EXPECT_EQ(s().Serving(now()), "none");
  EXPECT_TRUE(s().Wanted(1, now()));
  s().OnHealth(1, true, now());
  EXPECT_EQ(s().Serving(now()), "B");
  // A delivers again: it is preferred, so it serves.
  EXPECT_EQ(s().OnBlock(0, Bytes(512, 2), now()), Offer::kPassThrough);
  EXPECT_EQ(s().Serving(now()), "A");
}

TEST_F(SelectorTest, AFullPoolIsNotSilence) {
  Make(SourceMode::kFailover, 2);
  s().OnHealth(0, true, now());
  EXPECT_EQ(s().OnBlock(0, Bytes(512, 3), now()), Offer::kPassThrough);
  s().OnWaitingForRoom(0, true, now());
  clock_.Advance(seconds(600));
  EXPECT_EQ(s().Serving(now()), "A");
  EXPECT_FALSE(s().Wanted(1, now()));
  EXPECT_EQ(s().NextDeadline(now()), Clock::TimePoint::max()) << "nothing to wake for";
  s().OnWaitingForRoom(0, false, now());
  EXPECT_EQ(s().Serving(now()), "A");
  EXPECT_EQ(s().switches(), 0u);
  // Reading again, it may turn silent again: 5 s from now.
  EXPECT_EQ(s().NextDeadline(now()), now() + seconds(5) + Clock::Duration(1));
}

TEST_F(SelectorTest, ASourceReadOnTwoThreadsWaitsWhileEitherDoes) {
  Make(SourceMode::kFailover, 2);
  s().OnHealth(0, true, now());
  EXPECT_EQ(s().OnBlock(0, Bytes(512, 3), now()), Offer::kPassThrough);
  s().OnWaitingForRoom(0, true, now());   // thread 1 blocks on a full pool
  s().OnWaitingForRoom(0, true, now());   // thread 2 too
  s().OnWaitingForRoom(0, false, now());  // thread 1 got its bytes in
  clock_.Advance(seconds(600));
  EXPECT_EQ(s().Serving(now()), "A") << "thread 2 still waits for room: not silent";
  s().OnWaitingForRoom(0, false, now());
  EXPECT_EQ(s().Serving(now()), "A");
  clock_.Advance(seconds(6));
  s().NoteServing(now());
  EXPECT_EQ(s().Serving(now()), "none") << "neither waits nor delivers: silent";
}

TEST_F(SelectorTest, FailoverParkingMakesASourceProveItselfAgain) {
  Make(SourceMode::kFailover, 2);
  clock_.Advance(seconds(3));
  s().OnHealth(1, true, now());  // B first, after the grace
  EXPECT_EQ(s().Serving(now()), "B");
  s().OnHealth(0, true, now());
  s().OnStandby(1, true, now());
  EXPECT_FALSE(s().status(1).healthy);
  EXPECT_TRUE(s().status(1).standby);
}

// The case: a fast source and a slow one (test:2,rate=50,block=512 delivers a
// block every ~10 s). Nothing is served until both have delivered, and then exactly
// the XOR of equal runs of both.
TEST_F(SelectorTest, MixWaitsForASlowSourceInsteadOfServingTheFastOneAlone) {
  Make(SourceMode::kMix, 2);
  EXPECT_TRUE(s().Wanted(0, now()));
  EXPECT_TRUE(s().Wanted(1, now()));
  s().OnHealth(0, true, now());
  const auto a = Bytes(MixPolicy::kStageBytes, 10);
  for (std::size_t at = 0; at < a.size(); at += 4096) {
    EXPECT_EQ(s().OnBlock(0, std::span(a).subspan(at, 4096), now()), Offer::kStaged);
  }
  EXPECT_EQ(s().OnBlock(0, Bytes(4096, 11), now()), Offer::kNoRoom);
  EXPECT_TRUE(Output().empty()) << "one source's bytes served unmixed";
  EXPECT_EQ(s().Serving(now()), "none");

  s().OnHealth(1, true, now());
  EXPECT_TRUE(Output().empty());
  const auto b = Bytes(1024, 20);
  for (int k = 0; k < 2; ++k) {
    clock_.Advance(seconds(10));  // slow, but never left out
    EXPECT_EQ(s().OnBlock(1, std::span(b).subspan(512 * k, 512), now()), Offer::kStaged);
    EXPECT_EQ(s().Serving(now()), "A+B");
    const auto out = Output();
    ASSERT_EQ(out.size(), 512u);
    for (std::size_t i = 0; i < 512; ++i) {
      ASSERT_EQ(out[i], a[512 * k + i] ^ b[512 * k + i]) << k << " " << i;
    }
  }
  EXPECT_FALSE(s().Degraded(now()));
  EXPECT_EQ(s().OnBlock(0, Bytes(1024, 12), now()), Offer::kStaged) << "room again";
}

TEST_F(SelectorTest, MixServesNothingWhileAnySourceIsUnhealthy) {
  Make(SourceMode::kMix, 2);
  s().OnHealth(0, true, now());
  s().OnHealth(1, true, now());
  EXPECT_EQ(s().OnBlock(0, Bytes(512, 1), now()), Offer::kStaged);
  EXPECT_EQ(s().OnBlock(1, Bytes(512, 2), now()), Offer::kStaged);
  EXPECT_EQ(Output().size(), 512u);
  EXPECT_EQ(s().OnBlock(0, Bytes(512, 3), now()), Offer::kStaged);
  s().OnHealth(1, false, now());
  EXPECT_EQ(s().Serving(now()), "none");
  clock_.Advance(seconds(3600));
  EXPECT_TRUE(Output().empty());
  EXPECT_EQ(s().switches(), 1u);
}

TEST_F(SelectorTest, MixNeverUsesBytesStagedBeforeAFailure) {
  Make(SourceMode::kMix, 2);
  s().OnHealth(0, true, now());
  s().OnHealth(1, true, now());
  EXPECT_EQ(s().OnBlock(1, Bytes(512, 99), now()), Offer::kStaged);  // from a stream that fails
  s().OnHealth(1, false, now());
  s().OnHealth(1, true, now());
  const auto a = Bytes(512, 1), b = Bytes(512, 2);
  EXPECT_EQ(s().OnBlock(0, a, now()), Offer::kStaged);
  EXPECT_EQ(s().OnBlock(1, b, now()), Offer::kStaged);
  const auto out = Output();
  ASSERT_EQ(out.size(), 512u);
  for (std::size_t i = 0; i < 512; ++i) ASSERT_EQ(out[i], a[i] ^ b[i]);
}

TEST_F(SelectorTest, DegradableMixWaitsForEverySourceAtStartThenGoesOnWithFewer) {
  Make(SourceMode::kMix, 3, /*min_mix=*/2);
  EXPECT_EQ(s().policy().Describe(), "mix (at least 2 of 3)");
  s().OnHealth(0, true, now());
  s().OnHealth(1, true, now());
  const auto a = Bytes(512, 1), b = Bytes(512, 2);
  EXPECT_EQ(s().OnBlock(0, a, now()), Offer::kStaged);
  EXPECT_EQ(s().OnBlock(1, b, now()), Offer::kStaged);
  EXPECT_TRUE(Output().empty()) << "C has not had its start-up chance yet";
  clock_.Advance(seconds(3));
  EXPECT_EQ(s().Serving(now()), "A+B");
  EXPECT_TRUE(s().Degraded(now()));
  const auto out = Output();
  ASSERT_EQ(out.size(), 512u);
  for (std::size_t i = 0; i < 512; ++i) ASSERT_EQ(out[i], a[i] ^ b[i]);
  // Below the minimum: nothing.
  s().OnHealth(1, false, now());
  EXPECT_EQ(s().Serving(now()), "none");
  EXPECT_FALSE(s().Degraded(now()));
}

TEST_F(SelectorTest, DegradableMixLeavesOutASilentSourceUntilItDeliversAgain) {
  Make(SourceMode::kMix, 2, /*min_mix=*/1);
  s().OnHealth(0, true, now());
  s().OnHealth(1, true, now());
  EXPECT_EQ(s().Serving(now()), "A+B");
  clock_.Advance(seconds(4));
  EXPECT_EQ(s().OnBlock(0, Bytes(512, 1), now()), Offer::kStaged);
  clock_.Advance(seconds(2));  // B: 6 s without a block
  EXPECT_EQ(s().Serving(now()), "A");
  EXPECT_TRUE(s().Degraded(now()));
  EXPECT_EQ(Output().size(), 512u);
  EXPECT_EQ(s().OnBlock(1, Bytes(512, 2), now()), Offer::kStaged);
  EXPECT_EQ(s().Serving(now()), "A+B");
  EXPECT_FALSE(s().Degraded(now()));
}

TEST_F(SelectorTest, ChangesOfWhoServesAreLogged) {
  Make(SourceMode::kMix, 2, /*min_mix=*/1);
  testing::internal::CaptureStderr();
  s().OnHealth(0, true, now());
  s().OnHealth(1, true, now());
  s().OnHealth(1, false, now());
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("sources: serving from A+B"), std::string::npos) << log;
  EXPECT_NE(log.find("sources: mix (at least 1 of 2) DEGRADED: mixing only A of 2 configured"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("sources: now serving from A (was A+B)"), std::string::npos) << log;
}

}  // namespace
}  // namespace rngmux
