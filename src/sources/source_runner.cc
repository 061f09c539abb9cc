#include "sources/source_runner.h"

#include <algorithm>
#include <exception>
#include <optional>

#include "common/log.h"
#include "common/secure_memory.h"
#include "health/conditioner.h"
#include "health/fips140_2.h"

namespace rngmux {

namespace {

// One source straight into the pool: always wanted, always serving.
class PoolSink final : public BlockSink {
 public:
  explicit PoolSink(EntropyPool& pool) : pool_(pool) {}
  bool WaitUntilWanted(std::size_t, const Interrupt& stop, bool* waited) override {
    *waited = false;
    return !stop.triggered();
  }
  std::size_t Put(std::size_t, std::span<const std::uint8_t> bytes,
                  const Interrupt& stop) override {
    return pool_.Put(bytes, stop);
  }
  void HealthChanged(std::size_t, bool) override {}
  // Put() waits on the pool's condition variable, not on the Interrupt's fd.
  void WakeProducers() override { pool_.WakeProducers(); }

 private:
  EntropyPool& pool_;
};

// FIPS 140-2 tests whole 20,000-bit blocks, so a source tested with them is read in
// multiples of 2500 bytes: the preferred size rounded up.
std::size_t BlockSizeFor(std::size_t preferred, bool fips) {
  if (!fips) return preferred;
  const std::size_t unit = Fips140_2Tester::kBlockBytes;
  return (std::max<std::size_t>(preferred, 1) + unit - 1) / unit * unit;
}

// "monobit", "poker+runs", ...: which FIPS 140-2 tests a block failed, for logs.
std::string FailedFipsTests(const Fips140_2Result& r) {
  std::string out;
  auto add = [&out](bool ok, const char* name) {
    if (ok) return;
    if (!out.empty()) out += '+';
    out += name;
  };
  add(r.monobit, "monobit");
  add(r.poker, "poker");
  add(r.runs, "runs");
  add(r.long_run, "long-run");
  add(r.continuous, "continuous");
  return out;
}

}  // namespace

SourceRunner::SourceRunner(std::unique_ptr<Source> source, EntropyPool& pool, Options options)
    : own_sink_(std::make_unique<PoolSink>(pool)),
      source_(std::move(source)),
      sink_(*own_sink_),
      index_(0),
      options_(options) {}

SourceRunner::SourceRunner(std::unique_ptr<Source> source, BlockSink& sink, std::size_t index,
                           Options options)
    : source_(std::move(source)), sink_(sink), index_(index), options_(options) {}

SourceRunner::~SourceRunner() { Stop(); }

void SourceRunner::Start() {
  if (thread_.joinable() || stop_.triggered()) return;
  thread_ = std::thread([this] {
    try {
      Run();
    } catch (const std::exception& e) {
      // One broken source must not take the daemon down; it just stops serving (and
      // the sink must know, or a mix would wait for it forever).
      SetHealthy(false);
      LOG_ERROR("source ", name(), ": stopped after an internal error: ", e.what());
    }
  });
}

void SourceRunner::Stop() {
  stop_.Trigger();
  sink_.WakeProducers();
  if (thread_.joinable()) thread_.join();
}

std::string SourceRunner::last_error() const {
  std::lock_guard<std::mutex> lock(last_error_mutex_);
  return last_error_;
}

void SourceRunner::SetHealthy(bool healthy) {
  // Every failure is reported, even when already unhealthy: a sink may be waiting
  // to see whether a preferred source gets anywhere.
  if (counters_.healthy.exchange(healthy) != healthy || !healthy) {
    sink_.HealthChanged(index_, healthy);
  }
}

void SourceRunner::Run() {
  const std::string& source_name = name();
  const double claim = source_->claimed_entropy_bits_per_byte();
  HealthMonitor monitor(claim, options_.alpha_log2);
  const HealthCutoffs cutoffs = monitor.cutoffs();
  // Below full entropy, what enters the pool is SHA-256 conditioned (see conditioner.h).
  std::optional<Conditioner> conditioner;
  if (claim < 8) conditioner.emplace(claim);
  std::optional<Fips140_2Tester> fips;
  if (options_.fips) fips.emplace();
  LOG_INFO("source ", source_name, ": started; claims ", claim, " bits/byte; health cutoffs RCT ",
           cutoffs.rct_cutoff, ", APT ", cutoffs.apt_cutoff, "/", cutoffs.apt_window, " (alpha 2^-",
           options_.alpha_log2, ")", fips ? "; FIPS 140-2 block tests on" : "",
           conditioner ? "; SHA-256 conditioned, " : "",
           conditioner ? std::to_string(conditioner->input_bytes_per_output()) : "",
           conditioner ? " bytes in per 32 out" : "");

  // Raw bytes are secret until dropped: locked memory, wiped after every block.
  SecureBuffer block(BlockSizeFor(source_->preferred_block_size(), options_.fips));
  SecureBuffer conditioned(
      conditioner ? conditioner->MaxOutput(block.size()) + Conditioner::kOutputBytes : 1);
  Backoff backoff(options_.backoff_initial, options_.backoff_max);
  std::uint64_t error_streak = 0;    // read errors since the last full block
  std::uint64_t failure_streak = 0;  // failed blocks since the last passed one
  // After any break in the stream (error, failure, standby), everything is proven again.
  auto start_over = [&] {
    monitor = HealthMonitor(claim, options_.alpha_log2);
    if (conditioner) conditioner->Reset();
    if (fips) fips->Reset();
    SetHealthy(false);
  };

  while (!stop_.triggered()) {
    bool waited = false;
    if (!sink_.WaitUntilWanted(index_, stop_, &waited)) break;
    if (waited) {
      // It sat idle while a preferred source served: its last test result is stale.
      start_over();
      LOG_INFO("source ", source_name, ": reading again (start-up test first)");
    }

    std::size_t filled = 0;
    Status read_status;
    while (filled < block.size()) {
      Result<std::size_t> got = source_->Read(block.span().subspan(filled), stop_);
      if (!got.ok()) {
        read_status = got.status();
        break;
      }
      if (*got == 0) break;  // stopped
      filled += *got;
      counters_.bytes_read += *got;
    }

    if (!read_status.ok()) {
      SecureWipe(block.data(), filled);
      {
        std::lock_guard<std::mutex> lock(last_error_mutex_);
        last_error_ = read_status.message();
      }
      ++counters_.read_errors;
      // The bytes on either side of a failed read are not one contiguous stream,
      // and a reopened device may not be the same device: prove it again.
      start_over();
      if (error_streak++ == 0) {
        LOG_WARNING("source ", source_name, ": ", read_status.message(),
                    "; retrying with back-off");
      }
      stop_.SleepFor(backoff.NextDelay());
      continue;
    }
    if (filled < block.size()) {  // stopped mid-block
      SecureWipe(block.data(), filled);
      break;
    }
    if (error_streak != 0) {
      LOG_INFO("source ", source_name, " recovered after ", error_streak,
               error_streak == 1 ? " error" : " errors");
      error_streak = 0;
    }

    HealthMonitor::Verdict verdict = monitor.Check(block.span());
    std::string failure = monitor.last_failure();
    if (verdict == HealthMonitor::Verdict::kPass && fips) {
      for (std::size_t at = 0; at < block.size(); at += Fips140_2Tester::kBlockBytes) {
        const Fips140_2Result r =
            fips->Test(std::span<const std::uint8_t, Fips140_2Tester::kBlockBytes>(
                block.data() + at, Fips140_2Tester::kBlockBytes));
        if (!r.passed()) {
          verdict = HealthMonitor::Verdict::kFail;
          failure = "FIPS 140-2 " + FailedFipsTests(r);
          ++counters_.fips_failures;
          break;
        }
      }
    }
    switch (verdict) {
      case HealthMonitor::Verdict::kPass: {
        SetHealthy(true);
        std::span<const std::uint8_t> out = block.span();
        if (conditioner) {
          out = conditioned.span().first(conditioner->Condition(block.span(), conditioned.span()));
        }
        const std::size_t put = out.empty() ? 0 : sink_.Put(index_, out, stop_);
        SecureWipe(conditioned.span());
        counters_.bytes_accepted += put;
        ++counters_.blocks_passed;
        backoff.Reset();
        if (failure_streak != 0) {
          LOG_INFO("source ", source_name, ": healthy again after ", failure_streak,
                   " failed blocks");
          failure_streak = 0;
        }
        break;
      }
      case HealthMonitor::Verdict::kStartupInProgress:
        ++counters_.startup_blocks;
        break;
      case HealthMonitor::Verdict::kFail: {
        ++counters_.blocks_failed;
        SecureWipe(block.span());
        start_over();
        const Backoff::Duration delay = backoff.NextDelay();
        // Warn when a healthy source goes bad; while it stays bad, the repeats
        // (one per back-off) are only worth a debug line.
        if (failure_streak++ == 0) {
          LOG_WARNING("source ", source_name, ": health test ", failure,
                      " failed; block discarded, start-up test required again");
        } else {
          LOG_DEBUG("source ", source_name, ": health test ", failure, " failed again (",
                    failure_streak, " blocks in a row)");
        }
        stop_.SleepFor(delay);
        continue;
      }
    }
    SecureWipe(block.span());
    if (monitor.startup_complete()) SetHealthy(true);
  }
  LOG_INFO("source ", source_name, ": stopped");
}

}  // namespace rngmux
