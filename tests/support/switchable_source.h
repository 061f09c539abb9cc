#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "sources/source.h"

namespace rngmux {

// A source whose behaviour the test switches while it runs: good (uniform,
// recorded), stuck (a constant, which RCT rejects), silent (blocks until told
// otherwise or stopped) or erroring.
class SwitchableSource final : public Source {
 public:
  static constexpr std::uint8_t kStuckValue = 0xAA;
  enum class Mode { kGood, kStuck, kSilent, kError };

  SwitchableSource(std::string name, unsigned seed,
                   std::chrono::milliseconds pace = std::chrono::milliseconds(1))
      : name_(std::move(name)), pace_(pace), rng_(seed) {}

  const std::string& name() const override { return name_; }
  double claimed_entropy_bits_per_byte() const override { return 8; }
  std::size_t preferred_block_size() const override { return 512; }

  Result<std::size_t> Read(std::span<std::uint8_t> out, const Interrupt& stop) override {
    // Pace it a little, like hardware, so switches are observable.
    if (!stop.SleepFor(pace_)) return std::size_t{0};
    // Silent: block, as a stalled device does, until it speaks again or we stop.
    while (mode_ == Mode::kSilent) {
      if (!stop.SleepFor(std::chrono::milliseconds(5))) return std::size_t{0};
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
  std::chrono::milliseconds pace_;
  std::atomic<Mode> mode_{Mode::kGood};
  mutable std::mutex mutex_;
  std::mt19937 rng_;
  std::vector<std::uint8_t> good_;
};

}  // namespace rngmux
