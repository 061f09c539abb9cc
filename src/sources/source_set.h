#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/secure_memory.h"
#include "pool/entropy_pool.h"
#include "sources/source_runner.h"
#include "sources/source_selector.h"

namespace rngmux {

// How several sources share the pool; see FailoverPolicy and MixPolicy.
struct SourceSetOptions {
  SourceMode mode = SourceMode::kFailover;
  // Mix only: serve with fewer sources, but at least this many (0 = never fewer).
  std::size_t min_mix_sources = 0;
  SelectorTiming timing;
};

// The threads around a SourceSelector: several sources, each on its own
// SourceRunner, feeding one pool in order of preference (index 0 is preferred).
// Runners call the BlockSink side from their threads; this class takes its lock, asks
// the selector with the clock's `now`, and waits on a condition variable until the
// next event or the selector's next deadline. The accessors may be called from any
// thread.
class SourceSet final : public BlockSink {
 public:
  SourceSet(std::vector<std::unique_ptr<Source>> sources,
            std::vector<SourceRunner::Options> options, EntropyPool& pool,
            SourceSetOptions set_options, const Clock& clock = SteadyClock::Instance());
  ~SourceSet() override;  // Stops the runners.

  void Start();
  void Stop();

  std::size_t size() const { return runners_.size(); }
  const SourceRunner& runner(std::size_t i) const { return *runners_[i]; }
  // For a reload: source i's driver, once Stop() has returned (see
  // SourceRunner::TakeSource), and counts carried over from a runner it replaces.
  std::unique_ptr<Source> TakeSource(std::size_t i) { return runners_[i]->TakeSource(); }
  void CarryCounters(std::size_t i, const SourceCounters& from) {
    runners_[i]->CarryCounters(from);
  }
  SourceMode mode() const { return options_.mode; }
  // "failover", "mix" or "mix (at least 1 of 2)".
  std::string Describe() const;
  // Names of the sources serving now, joined by '+', or "none".
  std::string Serving() const;
  // Mix serves fewer sources than configured (--mix-min-sources).
  bool Degraded() const;
  // "serving", "standby", "retrying" or "starting" for source i.
  std::string State(std::size_t i) const;
  std::uint64_t switches() const;

  // BlockSink
  bool WaitUntilWanted(std::size_t index, const Interrupt& stop, bool* waited) override;
  std::size_t Put(std::size_t index, std::span<const std::uint8_t> bytes,
                  const Interrupt& stop) override;
  void HealthChanged(std::size_t index, bool healthy) override;
  void WakeProducers() override;

 private:
  // Waits for an event or the selector's next deadline. Requires lock on mutex_.
  void WaitLocked(std::unique_lock<std::mutex>& lock);

  EntropyPool& pool_;
  const SourceSetOptions options_;
  const Clock& clock_;
  std::vector<std::unique_ptr<SourceRunner>> runners_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::unique_ptr<SourceSelector> selector_;  // guarded by mutex_
  bool stopping_ = false;                     // guarded by mutex_
  bool flushing_ = false;  // a producer is putting mixed bytes into the pool; guarded by mutex_
  // Each producer's buffer for mixed output (its own, so no lock needed).
  std::vector<std::unique_ptr<SecureBuffer>> mix_out_;
};

}  // namespace rngmux
