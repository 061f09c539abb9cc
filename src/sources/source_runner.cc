#include "sources/source_runner.h"

#include <exception>

#include "common/log.h"
#include "common/secure_memory.h"

namespace rngmux {

SourceRunner::SourceRunner(std::unique_ptr<Source> source, EntropyPool& pool, Options options)
    : source_(std::move(source)), pool_(pool), options_(options) {}

SourceRunner::~SourceRunner() { Stop(); }

void SourceRunner::Start() {
  if (thread_.joinable() || stop_.triggered()) return;
  thread_ = std::thread([this] {
    try {
      Run();
    } catch (const std::exception& e) {
      // One broken source must not take the daemon down; it just stops serving.
      counters_.healthy = false;
      LOG_ERROR("source ", name(), ": stopped after an internal error: ", e.what());
    }
  });
}

void SourceRunner::Stop() {
  stop_.Trigger();
  // Put() waits on the pool's condition variable, not on the Interrupt's fd.
  pool_.WakeProducers();
  if (thread_.joinable()) thread_.join();
}

std::string SourceRunner::last_error() const {
  std::lock_guard<std::mutex> lock(last_error_mutex_);
  return last_error_;
}

void SourceRunner::Run() {
  const std::string& source_name = name();
  const double claim = source_->claimed_entropy_bits_per_byte();
  HealthMonitor monitor(claim, options_.alpha_log2);
  const HealthCutoffs cutoffs = monitor.cutoffs();
  LOG_INFO("source ", source_name, ": started; claims ", claim, " bits/byte; health cutoffs RCT ",
           cutoffs.rct_cutoff, ", APT ", cutoffs.apt_cutoff, "/", cutoffs.apt_window, " (alpha 2^-",
           options_.alpha_log2, ")");

  // Raw bytes are secret until dropped: locked memory, wiped after every block.
  SecureBuffer block(source_->preferred_block_size());
  Backoff backoff(options_.backoff_initial, options_.backoff_max);
  std::uint64_t error_streak = 0;    // read errors since the last full block
  std::uint64_t failure_streak = 0;  // failed blocks since the last passed one

  while (!stop_.triggered()) {
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
      counters_.healthy = false;
      // The bytes on either side of a failed read are not one contiguous stream,
      // and a reopened device may not be the same device: prove it again.
      monitor = HealthMonitor(claim, options_.alpha_log2);
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

    const HealthMonitor::Verdict verdict = monitor.Check(block.span());
    switch (verdict) {
      case HealthMonitor::Verdict::kPass: {
        const std::size_t put = pool_.Put(block.span(), stop_);
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
        const Backoff::Duration delay = backoff.NextDelay();
        // Warn when a healthy source goes bad; while it stays bad, the repeats
        // (one per back-off) are only worth a debug line.
        if (failure_streak++ == 0) {
          LOG_WARNING("source ", source_name, ": health test ", monitor.last_failure(),
                      " failed; block discarded, start-up test required again");
        } else {
          LOG_DEBUG("source ", source_name, ": health test ", monitor.last_failure(),
                    " failed again (", failure_streak, " blocks in a row)");
        }
        SecureWipe(block.span());
        counters_.healthy = false;
        stop_.SleepFor(delay);
        continue;
      }
    }
    SecureWipe(block.span());
    counters_.healthy = monitor.startup_complete();
  }
  LOG_INFO("source ", source_name, ": stopped");
}

}  // namespace rngmux
