#include "sources/source_set.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/switchable_source.h"

namespace rngmux {
namespace {

using std::chrono::milliseconds;
constexpr std::uint8_t kStuckValue = SwitchableSource::kStuckValue;

class SourceSetTest : public ::testing::Test {
 protected:
  // `paces`: per-source pause before each read (default 1 ms each); `drain`: whether
  // a consumer keeps taking from the pool.
  void Make(SourceSetOptions set_options, int n, std::vector<milliseconds> paces = {},
            bool drain = true) {
    std::vector<std::unique_ptr<Source>> sources;
    std::vector<SourceRunner::Options> options;
    for (int i = 0; i < n; ++i) {
      auto s = std::make_unique<SwitchableSource>(
          std::string(1, char('A' + i)), 100 + i,
          i < static_cast<int>(paces.size()) ? paces[i] : milliseconds(1));
      raw_.push_back(s.get());
      sources.push_back(std::move(s));
      SourceRunner::Options o;
      o.backoff_initial = milliseconds(10);
      o.backoff_max = milliseconds(50);
      options.push_back(o);
    }
    set_ = std::make_unique<SourceSet>(std::move(sources), std::move(options), pool_, set_options);
    set_->Start();
    if (!drain) return;
    drainer_ = std::thread([this] {
      std::vector<std::uint8_t> buffer(4096);
      while (!stop_draining_) {
        std::size_t got = 0;
        {
          // Taken and recorded under one lock: once the pool is empty, Drained()
          // holds every byte that left it.
          std::lock_guard<std::mutex> lock(mutex_);
          got = pool_.Take(buffer);
          drained_.insert(drained_.end(), buffer.begin(),
                          buffer.begin() + static_cast<std::ptrdiff_t>(got));
        }
        if (got == 0) std::this_thread::sleep_for(milliseconds(1));
      }
    });
  }

  void TearDown() override {
    if (set_) set_->Stop();
    stop_draining_ = true;
    if (drainer_.joinable()) drainer_.join();
  }

  // Waits (bounded) until pred() holds.
  bool WaitFor(const std::function<bool()>& pred, milliseconds limit = milliseconds(10000)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return true;
  }

  std::vector<std::uint8_t> Drained() {
    std::lock_guard<std::mutex> lock(mutex_);
    return drained_;
  }

  // Longest run of the stuck value in what clients would have received.
  std::size_t LongestStuckRun() {
    std::size_t longest = 0, run = 0;
    for (const std::uint8_t b : Drained()) {
      run = b == kStuckValue ? run + 1 : 0;
      longest = std::max(longest, run);
    }
    return longest;
  }

  EntropyPool pool_{16384};
  std::vector<SwitchableSource*> raw_;
  std::unique_ptr<SourceSet> set_;
  std::mutex mutex_;
  std::vector<std::uint8_t> drained_;
  std::atomic<bool> stop_draining_{false};
  std::thread drainer_;
};

// The threads around the selector, end to end with real runners. Timing decisions
// (silence, start-up grace, a full pool) are pinned with a fake clock in
// source_selector_test.cc; these tests only wait (bounded) for what they expect.

SourceSetOptions Failover() { return {}; }

SourceSetOptions Mix(std::size_t min_sources = 0) {
  SourceSetOptions options;
  options.mode = SourceMode::kMix;
  options.min_mix_sources = min_sources;
  options.timing.startup_grace = milliseconds(0);
  return options;
}

TEST_F(SourceSetTest, FailsOverToTheNextHealthySourceAndBack) {
  Make(Failover(), 2);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; })) << set_->Serving();
  EXPECT_EQ(set_->switches(), 0u) << "the preferred source must serve first";
  ASSERT_TRUE(WaitFor([&] { return set_->State(1) == "standby"; })) << set_->State(1);

  raw_[0]->set_mode(SwitchableSource::Mode::kStuck);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "B"; })) << set_->Serving();
  EXPECT_EQ(set_->State(0), "retrying");
  EXPECT_GE(set_->switches(), 1u);
  const std::uint64_t b_before = set_->runner(1).counters().bytes_accepted;
  ASSERT_TRUE(WaitFor([&] { return set_->runner(1).counters().bytes_accepted > b_before + 8192; }));

  raw_[0]->set_mode(SwitchableSource::Mode::kGood);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; })) << set_->Serving();
  EXPECT_GE(set_->switches(), 2u);
  ASSERT_TRUE(WaitFor([&] { return set_->State(1) == "standby"; })) << set_->State(1);
  // A block of stuck bytes never got through: at most RCT cutoff - 1 (4) in a row by chance.
  EXPECT_LT(LongestStuckRun(), 5u);
}

TEST_F(SourceSetTest, ReadErrorsFailOverToo) {
  Make(Failover(), 2);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; }));
  raw_[0]->set_mode(SwitchableSource::Mode::kError);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "B"; })) << set_->Serving();
  EXPECT_GT(set_->runner(0).counters().read_errors, 0u);
}

TEST_F(SourceSetTest, NoHealthySourceMeansNothingIsServed) {
  Make(Failover(), 2);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; }));
  raw_[0]->set_mode(SwitchableSource::Mode::kStuck);
  raw_[1]->set_mode(SwitchableSource::Mode::kStuck);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "none"; })) << set_->Serving();
  ASSERT_TRUE(WaitFor([&] { return set_->runner(0).counters().blocks_failed > 3; }));
  EXPECT_LT(LongestStuckRun(), 5u);
}

// Each source's first two 512-byte blocks go to its start-up test; every byte after
// that is mixed, in order: the output is exactly A[1024..] ^ B[1024..].
TEST_F(SourceSetTest, MixServesExactlyTheXorOfBothStreams) {
  Make(Mix(), 2, {milliseconds(0), milliseconds(2)});
  ASSERT_TRUE(WaitFor([&] { return Drained().size() > 100000; }));
  set_->Stop();
  stop_draining_ = true;
  drainer_.join();
  const std::vector<std::uint8_t> out = Drained();
  const std::vector<std::uint8_t> a = raw_[0]->good(), b = raw_[1]->good();
  const std::size_t skip = HealthMonitor::kStartupSamples;
  ASSERT_GE(a.size(), skip + out.size());
  ASSERT_GE(b.size(), skip + out.size());
  for (std::size_t k = 0; k < out.size(); ++k) {
    ASSERT_EQ(out[k], a[skip + k] ^ b[skip + k]) << "at byte " << k;
  }
  EXPECT_EQ(set_->switches(), 0u);
  EXPECT_FALSE(set_->Degraded());
}

TEST_F(SourceSetTest, DegradableMixGoesOnWithTheHealthySourceAndSaysSo) {
  Make(Mix(/*min_sources=*/1), 2);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A+B"; })) << set_->Serving();
  EXPECT_FALSE(set_->Degraded());
  raw_[1]->set_mode(SwitchableSource::Mode::kStuck);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; })) << set_->Serving();
  EXPECT_TRUE(set_->Degraded());
  const std::size_t before = Drained().size();
  ASSERT_TRUE(WaitFor([&] { return Drained().size() > before + 8192; }))
      << "the healthy source alone must keep serving";
  raw_[1]->set_mode(SwitchableSource::Mode::kGood);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A+B"; })) << set_->Serving();
  EXPECT_FALSE(set_->Degraded());
  EXPECT_LT(LongestStuckRun(), 5u);
}

}  // namespace
}  // namespace rngmux
