#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
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
  std::atomic<std::uint64_t> blocks_failed{0};   // discarded by RCT/APT or FIPS 140-2
  std::atomic<std::uint64_t> fips_failures{0};   // of which by FIPS 140-2
  std::atomic<std::uint64_t> startup_blocks{0};  // consumed by start-up tests
  std::atomic<std::uint64_t> read_errors{0};
  std::atomic<bool> healthy{false};  // start-up passed and no failure since
};

// Where a runner's tested (and, below 8 bits/byte, conditioned) blocks go: the pool,
// or a SourceSet that decides which of several sources serves. Called from the
// runners' threads.
class BlockSink {
 public:
  virtual ~BlockSink() = default;
  // Blocks until source `index` should read (a standby source waits here) or `stop`
  // is triggered. Returns false on stop; sets *waited if it had to wait.
  virtual bool WaitUntilWanted(std::size_t index, const Interrupt& stop, bool* waited) = 0;
  // Hands over a block of full-entropy bytes; blocks while there is no room. Returns
  // the bytes taken (fewer only on stop, or 0 if this source is not serving now).
  virtual std::size_t Put(std::size_t index, std::span<const std::uint8_t> bytes,
                          const Interrupt& stop) = 0;
  // Source `index` became healthy (start-up passed) or unhealthy (failure, error).
  virtual void HealthChanged(std::size_t index, bool healthy) = 0;
  // Wakes every producer blocked in WaitUntilWanted() or Put() (for Stop()).
  virtual void WakeProducers() = 0;
};

// Runs one source on its own thread: read a block, pass it through the BlockGate
// (SP 800-90B RCT/APT, optionally FIPS 140-2, conditioning below 8 bits/byte), and
// hand what passes to the sink; on a read error or a failed block, wipe, count, log,
// back off and retry. Blocking reads never touch the event loop.
//
// A fast source with threads=N (Source::reader_threads) runs on N threads, each with
// a reader of its own (Source::NewReader) and a BlockGate of its own: every thread's
// stream passes its own start-up and continuous tests before any of it is put. The
// source is healthy once a thread has passed start-up, and not while any thread's
// stream has failed (until that thread passes start-up again).
class SourceRunner {
 public:
  struct Options {
    double alpha_log2 = kDefaultHealthAlphaLog2;
    bool fips = false;  // FIPS 140-2 block tests on top of RCT/APT
    Backoff::Duration backoff_initial{100};
    Backoff::Duration backoff_max{30000};
  };

  // Feeds the pool directly (one source).
  SourceRunner(std::unique_ptr<Source> source, EntropyPool& pool, Options options);
  // Feeds `sink` as source number `index`; the sink outlives the runner.
  SourceRunner(std::unique_ptr<Source> source, BlockSink& sink, std::size_t index, Options options);
  ~SourceRunner();  // Stops and joins.

  void Start();
  void Stop();  // Idempotent; returns after the thread has exited.

  const std::string& name() const { return source_->name(); }
  double claimed_entropy_bits_per_byte() const { return source_->claimed_entropy_bits_per_byte(); }
  bool fips() const { return options_.fips; }
  const SourceCounters& counters() const { return counters_; }
  // A reload keeps a source that is still configured: its driver (an open device,
  // a stream position) moves to a new runner, and its counts go on from the old
  // ones. Only once stopped.
  std::unique_ptr<Source> TakeSource();
  void CarryCounters(const SourceCounters& from);
  // The most recent read error ("" if none yet). Any thread.
  std::string last_error() const;
  // The driver's own stats (Source::ExtraStats). Any thread.
  std::vector<std::pair<std::string, std::string>> extra_stats() const {
    return source_->ExtraStats();
  }

 private:
  // Thread k's loop over `reader` (source_ for k = 0).
  void Run(Source& reader, std::size_t k);
  // Fills `block` from `reader`: its full size, fewer bytes only on stop (then
  // wiped), or the read error (the partial block wiped).
  Result<std::size_t> ReadBlock(Source& reader, std::span<std::uint8_t> block);
  // A thread's stream: proving itself (start-up tests, at first and after a pause),
  // healthy, or failed (a read error or a failed block, until start-up passes again).
  enum class Health { kStarting, kHealthy, kFailed };
  // Records thread k's state, sets counters_.healthy (some thread healthy and none
  // failed) and tells the sink when that changes, and of every failure.
  void SetHealth(std::size_t k, Health health);

  std::unique_ptr<BlockSink> own_sink_;  // the pool's, when constructed with a pool
  std::unique_ptr<Source> source_;
  BlockSink& sink_;
  std::size_t index_;
  Options options_;
  Interrupt stop_;
  SourceCounters counters_;
  mutable std::mutex last_error_mutex_;
  std::string last_error_;  // guarded by last_error_mutex_
  std::mutex health_mutex_;
  std::vector<Health> thread_health_;             // guarded by health_mutex_
  std::vector<std::unique_ptr<Source>> readers_;  // threads 1..N-1
  std::vector<std::thread> threads_;
};

}  // namespace rngmux
