#include "sources/source_runner.h"

#include <algorithm>
#include <exception>
#include <string>

#include "common/log.h"
#include "common/secure_memory.h"
#include "common/signal_mask.h"
#include "sources/block_gate.h"

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
  if (!threads_.empty() || stop_.triggered()) return;
  readers_.clear();
  for (std::size_t k = 1; k < source_->reader_threads(); ++k) {
    std::unique_ptr<Source> reader = source_->NewReader(k);
    if (!reader) break;
    readers_.push_back(std::move(reader));
  }
  {
    std::lock_guard<std::mutex> lock(health_mutex_);
    thread_health_.assign(1 + readers_.size(), Health::kStarting);
  }
  // Source threads never take the daemon's signals: the event loop handles them.
  const ScopedAsyncSignalBlock signals_to_the_loop;
  for (std::size_t k = 0; k <= readers_.size(); ++k) {
    Source& reader = k == 0 ? *source_ : *readers_[k - 1];
    threads_.emplace_back([this, &reader, k] {
      try {
        Run(reader, k);
      } catch (const std::exception& e) {
        // One broken source must not take the daemon down; it just stops serving (and
        // the sink must know, or a mix would wait for it forever).
        SetHealth(k, Health::kFailed);
        LOG_ERROR("source ", name(), ": stopped after an internal error: ", e.what());
      }
    });
  }
}

void SourceRunner::Stop() {
  stop_.Trigger();
  sink_.WakeProducers();
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

std::unique_ptr<Source> SourceRunner::TakeSource() {
  Stop();
  readers_.clear();  // the next runner makes its own
  return std::move(source_);
}

void SourceRunner::CarryCounters(const SourceCounters& from) {
  counters_.bytes_read += from.bytes_read.load();
  counters_.bytes_accepted += from.bytes_accepted.load();
  counters_.blocks_passed += from.blocks_passed.load();
  counters_.blocks_failed += from.blocks_failed.load();
  counters_.fips_failures += from.fips_failures.load();
  counters_.startup_blocks += from.startup_blocks.load();
  counters_.read_errors += from.read_errors.load();
}

std::string SourceRunner::last_error() const {
  std::lock_guard<std::mutex> lock(last_error_mutex_);
  return last_error_;
}

void SourceRunner::SetHealth(std::size_t k, Health health) {
  // Under the lock, so that two threads' changes reach the sink in the order they
  // were made (the sink never calls back into the runner).
  std::lock_guard<std::mutex> lock(health_mutex_);
  thread_health_[k] = health;
  const bool any_failed = std::find(thread_health_.begin(), thread_health_.end(),
                                    Health::kFailed) != thread_health_.end();
  const bool any_healthy = std::find(thread_health_.begin(), thread_health_.end(),
                                     Health::kHealthy) != thread_health_.end();
  const bool healthy = any_healthy && !any_failed;
  // Every failure is reported, even when already unhealthy: a sink may be waiting
  // to see whether a preferred source gets anywhere.
  if (counters_.healthy.exchange(healthy) != healthy || health == Health::kFailed) {
    sink_.HealthChanged(index_, healthy);
  }
}

// A thin shell around the BlockGate: read a whole block, let the gate judge it, hand
// what passes to the sink; on a read error or a failed block, wipe, count, log, back
// off and start over.
void SourceRunner::Run(Source& reader, std::size_t k) {
  const std::size_t threads = 1 + readers_.size();
  // Thread k's lines say which stream they are about.
  const std::string source_name = threads == 1 ? name()
                                               : name() + " (thread " + std::to_string(k + 1) +
                                                     "/" + std::to_string(threads) + ")";
  const double claim = source_->claimed_entropy_bits_per_byte();
  BlockGate::Options gate_options;
  gate_options.alpha_log2 = options_.alpha_log2;
  gate_options.fips = options_.fips ? BlockGate::Fips::kGate : BlockGate::Fips::kOff;
  BlockGate gate(claim, gate_options);
  const HealthCutoffs cutoffs = gate.cutoffs();
  const std::string described = gate.Describe();
  if (k == 0) {
    LOG_INFO("source ", name(), ": started; claims ", claim, " bits/byte; health cutoffs RCT ",
             cutoffs.rct_cutoff, ", APT ", cutoffs.apt_cutoff, "/", cutoffs.apt_window,
             " (alpha 2^-", options_.alpha_log2, ")", described.empty() ? "" : "; ", described,
             threads == 1 ? ""
                          : "; read on " + std::to_string(threads) +
                                " threads, each stream tested on its own");
  }

  // Raw bytes are secret until dropped: locked memory, wiped after every block.
  SecureBuffer block(BlockGate::BlockBytesFor(reader.preferred_block_size(), gate_options.fips));
  Backoff backoff(options_.backoff_initial, options_.backoff_max);
  std::uint64_t error_streak = 0;    // read errors since the last full block
  std::uint64_t failure_streak = 0;  // failed blocks since the last passed one
  // After any break in the stream (error, failure, standby), everything is proven again.
  auto start_over = [&](Health why) {
    gate.Reset();
    SetHealth(k, why);
  };

  while (!stop_.triggered()) {
    bool waited = false;
    if (!sink_.WaitUntilWanted(index_, stop_, &waited)) break;
    if (waited) {
      // It sat idle while a preferred source served: its last test result is stale.
      start_over(Health::kStarting);
      LOG_INFO("source ", source_name, ": reading again (start-up test first)");
    }

    Result<std::size_t> filled = ReadBlock(reader, block.span());
    if (!filled.ok()) {
      {
        std::lock_guard<std::mutex> lock(last_error_mutex_);
        last_error_ = filled.status().message();
      }
      ++counters_.read_errors;
      // The bytes on either side of a failed read are not one contiguous stream,
      // and a reopened device may not be the same device: prove it again.
      start_over(Health::kFailed);
      if (error_streak++ == 0) {
        LOG_WARNING("source ", source_name, ": ", filled.status().message(),
                    "; retrying with back-off");
      }
      stop_.SleepFor(backoff.NextDelay());
      continue;
    }
    if (*filled < block.size()) break;  // stopped mid-block (ReadBlock wiped it)
    if (error_streak != 0) {
      LOG_INFO("source ", source_name, " recovered after ", error_streak,
               error_streak == 1 ? " error" : " errors");
      error_streak = 0;
    }

    const BlockGate::Outcome outcome = gate.Check(block.span());
    switch (outcome.verdict) {
      case BlockGate::Verdict::kPass: {
        SetHealth(k, Health::kHealthy);
        const std::size_t put =
            outcome.output.empty() ? 0 : sink_.Put(index_, outcome.output, stop_);
        gate.WipeOutput();
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
      case BlockGate::Verdict::kStartupInProgress:
        ++counters_.startup_blocks;
        break;
      case BlockGate::Verdict::kFail: {
        ++counters_.blocks_failed;
        if (outcome.fips_failed) ++counters_.fips_failures;
        SecureWipe(block.span());
        start_over(Health::kFailed);
        // Warn when a healthy source goes bad; while it stays bad, the repeats
        // (one per back-off) are only worth a debug line.
        if (failure_streak++ == 0) {
          LOG_WARNING("source ", source_name, ": health test ", outcome.failure,
                      " failed; block discarded, start-up test required again");
        } else {
          LOG_DEBUG("source ", source_name, ": health test ", outcome.failure, " failed again (",
                    failure_streak, " blocks in a row)");
        }
        stop_.SleepFor(backoff.NextDelay());
        continue;
      }
    }
    SecureWipe(block.span());
    if (gate.startup_complete()) SetHealth(k, Health::kHealthy);
  }
  if (k == 0) LOG_INFO("source ", name(), ": stopped");
}

Result<std::size_t> SourceRunner::ReadBlock(Source& reader, std::span<std::uint8_t> block) {
  std::size_t filled = 0;
  while (filled < block.size()) {
    Result<std::size_t> got = reader.Read(block.subspan(filled), stop_);
    if (!got.ok()) {
      SecureWipe(block.data(), filled);
      return got.status();
    }
    if (*got == 0) break;  // stopped
    filled += *got;
    counters_.bytes_read += *got;
  }
  if (filled < block.size()) SecureWipe(block.data(), filled);
  return filled;
}

}  // namespace rngmux
