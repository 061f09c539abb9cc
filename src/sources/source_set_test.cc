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

namespace rngmux {
namespace {

using std::chrono::milliseconds;

constexpr std::uint8_t kStuckValue = 0xAA;

// A source whose behaviour the test switches while it runs: good (uniform,
// recorded), stuck (a constant, which RCT rejects), silent (blocks until told
// otherwise or stopped) or erroring.
class SwitchableSource final : public Source {
 public:
  enum class Mode { kGood, kStuck, kSilent, kError };

  SwitchableSource(std::string name, unsigned seed, milliseconds pace = milliseconds(1))
      : name_(std::move(name)), pace_(pace), rng_(seed) {}

  const std::string& name() const override { return name_; }
  double claimed_entropy_bits_per_byte() const override { return 8; }
  std::size_t preferred_block_size() const override { return 512; }

  Result<std::size_t> Read(std::span<std::uint8_t> out, const Interrupt& stop) override {
    // Pace it a little, like hardware, so switches are observable.
    if (!stop.SleepFor(pace_)) return std::size_t{0};
    // Silent: block, as a stalled device does, until it speaks again or we stop.
    while (mode_ == Mode::kSilent) {
      if (!stop.SleepFor(milliseconds(5))) return std::size_t{0};
    }
    switch (mode_.load()) {
      case Mode::kSilent:
        return std::size_t{0};
      case Mode::kError:
        return Status::Error(name_ + ": read: Input/output error");
      case Mode::kStuck:
        std::fill(out.begin(), out.end(), kStuckValue);
        return out.size();
      case Mode::kGood: {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& b : out) b = static_cast<std::uint8_t>(rng_() >> 24);
        good_.insert(good_.end(), out.begin(), out.end());
        return out.size();
      }
    }
    return std::size_t{0};
  }

  void set_mode(Mode mode) { mode_ = mode; }
  std::vector<std::uint8_t> good() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return good_;
  }

 private:
  std::string name_;
  milliseconds pace_;
  std::atomic<Mode> mode_{Mode::kGood};
  mutable std::mutex mutex_;
  std::mt19937 rng_;
  std::vector<std::uint8_t> good_;
};

class SourceSetTest : public ::testing::Test {
 protected:
  // `paces`: per-source pause before each read (default 1 ms each); `drain`: whether
  // a consumer keeps taking from the pool.
  void Make(SourceMode mode, int n, SourceSetTiming timing, std::vector<milliseconds> paces = {},
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
    set_ = std::make_unique<SourceSet>(std::move(sources), std::move(options), pool_, mode, timing);
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

TEST_F(SourceSetTest, FailsOverToTheNextHealthySourceAndBack) {
  Make(SourceMode::kFailover, 2, {});
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
  Make(SourceMode::kFailover, 2, {});
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; }));
  raw_[0]->set_mode(SwitchableSource::Mode::kError);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "B"; })) << set_->Serving();
  EXPECT_GT(set_->runner(0).counters().read_errors, 0u);
}

TEST_F(SourceSetTest, ASilentSourceIsPassedOverAfterTheTimeout) {
  SourceSetTiming timing;
  timing.silence_timeout = milliseconds(300);
  timing.startup_grace = milliseconds(300);
  Make(SourceMode::kFailover, 2, timing);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; }));
  raw_[0]->set_mode(SwitchableSource::Mode::kSilent);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "B"; })) << set_->Serving();
  raw_[0]->set_mode(SwitchableSource::Mode::kGood);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; })) << set_->Serving();
}

TEST_F(SourceSetTest, NoHealthySourceMeansNothingIsServed) {
  Make(SourceMode::kFailover, 2, {});
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; }));
  raw_[0]->set_mode(SwitchableSource::Mode::kStuck);
  raw_[1]->set_mode(SwitchableSource::Mode::kStuck);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "none"; })) << set_->Serving();
  // Good bytes put before the sources failed may still be in the pool.
  ASSERT_TRUE(WaitFor([&] { return pool_.Available() == 0; })) << pool_.Available();
  const std::size_t before = Drained().size();
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(Drained().size(), before) << "bytes were served with no healthy source";
  EXPECT_LT(LongestStuckRun(), 5u);
}

TEST_F(SourceSetTest, MixServesTheXorOfBothSources) {
  Make(SourceMode::kMix, 2, {});
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A+B"; })) << set_->Serving();
  ASSERT_TRUE(WaitFor([&] { return Drained().size() > 40000; }));
  set_->Stop();
  stop_draining_ = true;
  drainer_.join();
  const std::vector<std::uint8_t> out = Drained();
  const std::vector<std::uint8_t> a = raw_[0]->good(), b = raw_[1]->good();
  // Some 64-byte window late in the output is a[i..] ^ b[j..] for offsets i and j;
  // and it is neither source's own bytes.
  const std::size_t at = out.size() - 1000;
  const std::vector<std::uint8_t> w(out.begin() + static_cast<std::ptrdiff_t>(at),
                                    out.begin() + static_cast<std::ptrdiff_t>(at + 64));
  EXPECT_EQ(std::search(a.begin(), a.end(), w.begin(), w.end()), a.end());
  EXPECT_EQ(std::search(b.begin(), b.end(), w.begin(), w.end()), b.end());
  bool found = false;
  std::vector<std::uint8_t> x(64);
  for (std::size_t i = 0; i + 64 <= a.size() && !found; ++i) {
    for (std::size_t k = 0; k < 64; ++k) x[k] = static_cast<std::uint8_t>(w[k] ^ a[i + k]);
    found = std::search(b.begin(), b.end(), x.begin(), x.end()) != b.end();
  }
  EXPECT_TRUE(found) << "the output is not the XOR of the two sources";
}

TEST_F(SourceSetTest, MixDropsAFailingSourceAndTakesItBack) {
  Make(SourceMode::kMix, 2, {});
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A+B"; }));
  raw_[1]->set_mode(SwitchableSource::Mode::kStuck);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; })) << set_->Serving();
  const std::size_t before = Drained().size();
  ASSERT_TRUE(WaitFor([&] { return Drained().size() > before + 8192; }))
      << "the healthy source alone must keep serving";
  raw_[1]->set_mode(SwitchableSource::Mode::kGood);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A+B"; })) << set_->Serving();
  EXPECT_LT(LongestStuckRun(), 5u);
}

TEST_F(SourceSetTest, AFullPoolIsNotSilence) {
  SourceSetTiming timing;
  timing.silence_timeout = milliseconds(1000);
  timing.startup_grace = milliseconds(1000);
  Make(SourceMode::kFailover, 2, timing, {}, /*drain=*/false);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; }));
  ASSERT_TRUE(WaitFor([&] { return pool_.Available() == pool_.capacity(); }));
  // A waits for room for much longer than the silence timeout: still A's turn.
  std::this_thread::sleep_for(milliseconds(3000));
  EXPECT_EQ(set_->Serving(), "A");
  EXPECT_EQ(set_->switches(), 0u);
  EXPECT_EQ(set_->State(1), "standby");
}

TEST_F(SourceSetTest, MixGoesOnWhenASlowSourceDropsOutWhileTheFastOneWaits) {
  // A is fast and fills its stage; B is slow. When B fails, A alone must go on.
  Make(SourceMode::kMix, 2, {}, {milliseconds(0), milliseconds(20)});
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A+B"; })) << set_->Serving();
  std::this_thread::sleep_for(milliseconds(500));  // A's stage is full by now
  raw_[1]->set_mode(SwitchableSource::Mode::kStuck);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; })) << set_->Serving();
  const std::size_t before = Drained().size();
  ASSERT_TRUE(WaitFor([&] { return Drained().size() > before + 300000; }))
      << "the mix stalled after the slow source dropped out";
}

TEST_F(SourceSetTest, MixPassesOverASilentSource) {
  SourceSetTiming timing;
  timing.silence_timeout = milliseconds(300);
  Make(SourceMode::kMix, 2, timing);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A+B"; }));
  raw_[1]->set_mode(SwitchableSource::Mode::kSilent);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A"; })) << set_->Serving();
  const std::size_t before = Drained().size();
  ASSERT_TRUE(WaitFor([&] { return Drained().size() > before + 100000; }));
  raw_[1]->set_mode(SwitchableSource::Mode::kGood);
  ASSERT_TRUE(WaitFor([&] { return set_->Serving() == "A+B"; })) << set_->Serving();
}

}  // namespace
}  // namespace rngmux
