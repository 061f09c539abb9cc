#pragma once

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "sources/source.h"

namespace rngmux {

// A scripted source: good (uniform) bytes, stuck bytes, read errors, in order, then
// it blocks until stopped as a silent device would. Reads are cut into small
// pieces that never straddle two steps, so the runner has to assemble blocks.
class ScriptedSource final : public Source {
 public:
  struct Step {
    enum Kind { kGood, kStuck, kError } kind;
    std::size_t count;  // bytes for kGood/kStuck, failed reads for kError
  };
  static constexpr std::size_t kForever = static_cast<std::size_t>(-1);
  static constexpr std::size_t kPiece = 200;
  static constexpr std::size_t kBlockBytes = 512;
  static constexpr std::uint8_t kStuckValue = 0xAA;

  explicit ScriptedSource(std::vector<Step> steps, std::uint32_t seed = 12345)
      : steps_(steps.begin(), steps.end()), rng_(seed) {}

  const std::string& name() const override { return name_; }
  double claimed_entropy_bits_per_byte() const override { return 8; }
  std::size_t preferred_block_size() const override { return kBlockBytes; }

  Result<std::size_t> Read(std::span<std::uint8_t> out, const Interrupt& stop) override {
    ++reads_;
    if (steps_.empty()) {
      script_done_ = true;
      pollfd pfd{stop.fd(), POLLIN, 0};
      poll(&pfd, 1, -1);
      return std::size_t{0};
    }
    Step& step = steps_.front();
    if (step.kind == Step::kError) {
      if (--step.count == 0) steps_.pop_front();
      return Status::Error("fake: read: Input/output error");
    }
    const std::size_t n = std::min({out.size(), step.count, kPiece});
    for (std::size_t i = 0; i < n; ++i) {
      out[i] = step.kind == Step::kGood ? static_cast<std::uint8_t>(rng_() >> 24) : kStuckValue;
    }
    if (step.kind == Step::kGood) good_.insert(good_.end(), out.begin(), out.begin() + n);
    if (step.count != kForever && (step.count -= n) == 0) steps_.pop_front();
    return n;
  }

  // All good bytes emitted, in order. Read only after the runner has stopped.
  const std::vector<std::uint8_t>& good() const { return good_; }
  bool script_done() const { return script_done_; }
  int reads() const { return reads_; }

 private:
  std::string name_ = "scripted";
  std::deque<Step> steps_;
  std::mt19937 rng_;
  std::vector<std::uint8_t> good_;
  std::atomic<bool> script_done_{false};
  std::atomic<int> reads_{0};
};

}  // namespace rngmux
