#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/backoff.h"
#include "common/interrupt.h"
#include "health/health_monitor.h"
#include "pool/entropy_pool.h"
#include "sources/source.h"

namespace rngmux {

// Counters for one source, read by the stats reporter from any thread.
struct SourceCounters {
  std::atomic<std::uint64_t> bytes_read{0};      // raw bytes from the driver
  std::atomic<std::uint64_t> bytes_accepted{0};  // bytes that passed and entered the pool
  std::atomic<std::uint64_t> blocks_passed{0};
  std::atomic<std::uint64_t> blocks_failed{0};   // discarded by RCT/APT
  std::atomic<std::uint64_t> startup_blocks{0};  // consumed by start-up tests
  std::atomic<std::uint64_t> read_errors{0};
  std::atomic<bool> healthy{false};  // start-up passed and no failure since
};

// Runs one source on its own thread: read a block, health-test it, put it into
// the pool; on a read error or a failed block, wipe, count, log, back off and
// retry. Blocking reads never touch the event loop.
class SourceRunner {
 public:
  struct Options {
    double alpha_log2 = 30.0;
    Backoff::Duration backoff_initial{100};
    Backoff::Duration backoff_max{30000};
  };

  SourceRunner(std::unique_ptr<Source> source, EntropyPool& pool, Options options);
  ~SourceRunner();  // Stops and joins.

  void Start();
  void Stop();  // Idempotent; returns after the thread has exited.

  const std::string& name() const { return source_->name(); }
  const SourceCounters& counters() const { return counters_; }
  // The most recent read error ("" if none yet). Any thread.
  std::string last_error() const;
  // The driver's own stats (Source::ExtraStats). Any thread.
  std::vector<std::pair<std::string, std::string>> extra_stats() const {
    return source_->ExtraStats();
  }

 private:
  void Run();

  std::unique_ptr<Source> source_;
  EntropyPool& pool_;
  Options options_;
  Interrupt stop_;
  SourceCounters counters_;
  mutable std::mutex last_error_mutex_;
  std::string last_error_;  // guarded by last_error_mutex_
  std::thread thread_;
};

}  // namespace rngmux
