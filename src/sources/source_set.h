#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/secure_memory.h"
#include "pool/entropy_pool.h"
#include "sources/source_runner.h"

namespace rngmux {

// How several sources share the pool.
enum class SourceMode {
  // Only the most preferred healthy source fills the pool. Sources preferred over it
  // that are unhealthy keep being retried (with back-off) to prove themselves again;
  // less preferred ones wait on standby and are tested afresh when they are needed.
  kFailover,
  // Every healthy source contributes, and what enters the pool is the XOR of equal
  // runs of their bytes: the result is at least as unpredictable as the best of them
  // if they are independent, so one silently bad source cannot weaken it. The pool
  // fills at the pace of the slowest healthy source.
  kMix,
};

struct SourceSetTiming {
  // A serving source that delivers nothing for this long is passed over (a device
  // that stalls without an error) until it delivers again.
  std::chrono::milliseconds silence_timeout{5000};
  // At start, a source waits this long for more preferred ones to pass their
  // start-up test (or fail) before it reads, so the best source serves first.
  std::chrono::milliseconds startup_grace{3000};
};

// Several sources, each on its own SourceRunner, feeding one pool in order of
// preference (index 0 is preferred). Every change of who serves is logged and
// counted. Thread-safe: runners call the BlockSink side from their threads; the
// accessors may be called from any thread.
class SourceSet final : public BlockSink {
 public:
  SourceSet(std::vector<std::unique_ptr<Source>> sources,
            std::vector<SourceRunner::Options> options, EntropyPool& pool, SourceMode mode,
            SourceSetTiming timing = {});
  ~SourceSet() override;  // Stops the runners.

  void Start();
  void Stop();

  std::size_t size() const { return runners_.size(); }
  const SourceRunner& runner(std::size_t i) const { return *runners_[i]; }
  SourceMode mode() const { return mode_; }
  // Names of the sources serving now, joined by '+', or "none".
  std::string Serving() const;
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
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  using Clock = std::chrono::steady_clock;
  // Failover: the most preferred healthy source that is not silent, or kNone.
  // Requires mutex_.
  std::size_t ActiveLocked() const;
  bool SilentLocked(std::size_t i, Clock::time_point now) const;
  // Mix: healthy and not silent. Requires mutex_.
  bool ContributesLocked(std::size_t i, Clock::time_point now) const;
  // Failover: should source `index` read now? Requires mutex_.
  bool WantedLocked(std::size_t index) const;
  // Logs and counts a change of the serving set. Requires mutex_.
  void NoteServingLocked();
  std::string ServingLocked() const;
  // Mix: XORs what every healthy source has staged into `out`; returns its length.
  std::size_t TakeMixLocked(std::span<std::uint8_t> out);

  EntropyPool& pool_;
  const SourceMode mode_;
  const SourceSetTiming timing_;
  std::vector<std::unique_ptr<SourceRunner>> runners_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<bool> healthy_;  // guarded by mutex_
  std::vector<bool> waiting_;  // in WaitUntilWanted; guarded by mutex_
  std::vector<bool> tried_;    // has passed or failed at least once; guarded by mutex_
  std::vector<bool> in_put_;   // blocked handing bytes over; guarded by mutex_
  std::vector<Clock::time_point> last_activity_;  // healthy or a block; guarded by mutex_
  Clock::time_point started_;                     // guarded by mutex_
  std::string serving_;                           // last logged serving set; guarded by mutex_
  std::uint64_t switches_ = 0;                    // guarded by mutex_
  bool stopping_ = false;                         // guarded by mutex_
  // Mix mode: bytes each source has handed over and not yet mixed.
  std::vector<std::unique_ptr<SecureBuffer>> staged_;  // guarded by mutex_
  std::vector<std::size_t> staged_size_;               // guarded by mutex_
  // Mix mode: each producer's buffer for mixed output (its own, so no lock needed).
  std::vector<std::unique_ptr<SecureBuffer>> mix_out_;
};

}  // namespace rngmux
