#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "pool/entropy_pool.h"

namespace rngmux {

// Something that waits for bytes: a client session, a raw stream, a UDP peer.
class Consumer {
 public:
  virtual ~Consumer() = default;
  // Bytes this consumer can accept right now (owed to it and with room to queue).
  virtual std::size_t Wanted() const = 0;
  // Hands over bytes taken from the pool; bytes.size() <= Wanted(). The consumer
  // owns them from now on (and must wipe them once they have left).
  virtual void Deliver(std::span<const std::uint8_t> bytes) = 0;
  // Its share relative to others (an endpoint's weight=N): a consumer of weight 2
  // gets twice the credit per round of one of weight 1. Read when it is listed.
  virtual std::size_t Weight() const { return 1; }
};

// Shares the pool among consumers by bytes, with deficit round-robin: every pass
// gives each consumer the same quantum of credit, so when supply is short, equal
// demands get equal shares and one greedy client cannot starve the rest.
//
// Fairness also covers consumers that are only briefly absent: one whose demand is
// met keeps its unspent credit as a *reserve* (bytes left in the pool and set aside
// for it) and stays listed as *idle* for a grace period, accruing its quantum into
// the reserve on its turns. Others can take only the free bytes (the pool minus all
// reserves). If it asks again within the grace period it is served from its reserve
// first; otherwise the entry and its reserve are dropped. This is what keeps a
// client with one small request in flight (QEMU's rng-egd) from being starved by
// one that pipelines many. Reserves are capped per consumer (kMaxReserve) and in
// total (half the pool's capacity).
//
// Costs: Activate(), Remove() and a turn are O(1) in the number of listed
// consumers (an index finds entries; counters replace walks), so the cost of a
// request does not grow with the number of clients present. A non-blocking read
// that finds new bytes while others are idle walks the list once, as a round does
// (see TakeImmediate). Event-loop thread only.
class FairShare {
 public:
  static constexpr std::size_t kMinQuantum = 256;
  // Most bytes one Take()/Deliver() step moves.
  static constexpr std::size_t kMaxStepBytes = 16 * 1024;
  // Most bytes one idle consumer may have set aside.
  static constexpr std::size_t kMaxReserve = 4096;
  // A guest on a loaded host can take tens of milliseconds to send its next request
  // (and the loop as long to read it). With 50 ms, a guest beside a tenant churning
  // connections lost up to a third of its share whenever the machine was busy
  // (test_tenants under ASan, or under a parallel build); with 250 ms it kept half.
  static constexpr Clock::Duration kDefaultGrace = std::chrono::milliseconds(250);

  // `grace` is how long an idle consumer keeps its place and reserve; zero turns
  // reserves off (satisfied consumers leave at once).
  explicit FairShare(EntropyPool& pool, const Clock& clock = SteadyClock::Instance(),
                     Clock::Duration grace = kDefaultGrace)
      : pool_(pool), clock_(clock), grace_(grace) {}

  // Marks a consumer as waiting (idempotent). An idle consumer within its grace
  // period becomes waiting again with its reserve. Does not pump.
  void Activate(Consumer* consumer);
  // Forgets a consumer (it is going away) and releases its reserve at once. Safe to
  // call if it was never active.
  void Remove(Consumer* consumer);

  // A non-blocking read (EGD 0x01) by `consumer`: takes at most out.size() bytes
  // now, from its own reserve first, then from the free bytes only while no other
  // consumer waits for them, after setting aside the parts of idle (briefly absent)
  // consumers of what arrived since the last round or read. Under contention such
  // reads therefore get what the consumer's turns set aside, its share and no more:
  // the consumer is listed as idle (accruing its quantum into its reserve on its
  // turns) for as long as it keeps reading. Returns bytes taken. May be called from
  // Deliver().
  std::size_t TakeImmediate(Consumer* consumer, std::span<std::uint8_t> out);

  // Moves bytes from the pool to waiting consumers until no free bytes are left or
  // nobody waits: reserves first, then round-robin. Consumers whose Wanted() drops
  // to 0 become idle (if they were served) or leave; they Activate() again when
  // they want more. Idle consumers past their grace period are dropped first.
  // Returns bytes delivered.
  std::size_t Pump();

  // Consumers waiting for bytes (not idle).
  std::size_t active_count() const;
  // Consumers idle within their grace period (or not yet found to be past it).
  std::size_t idle_count() const;
  // Bytes set aside in the pool for idle or returning consumers.
  std::size_t reserved_bytes() const { return total_reserved_; }
  std::size_t reserve_of(const Consumer* consumer) const;

 private:
  struct Entry {
    Consumer* consumer;  // nullptr: removed while pumping, erased later
    std::size_t weight = 1;
    std::size_t deficit = 0;
    std::size_t reserve = 0;
    bool idle = false;
    bool served = false;  // got bytes since it was listed
    Clock::TimePoint idle_since{};
  };
  using EntryIt = std::list<Entry>::iterator;

  EntryIt Find(const Consumer* consumer);
  EntryIt Add(Consumer* consumer);
  void SetIdle(Entry& entry, bool idle, Clock::TimePoint now);

  void ExpireIdle(Clock::TimePoint now);
  // Drops an entry (erases it, or marks it dead while pumping) and its reserve.
  EntryIt Drop(EntryIt it);
  // The pool's bytes not set aside; first shrinks reserves that bytes taken by
  // other paths (0x01 reads) no longer back.
  std::size_t FreeBytes();
  std::size_t Serve(Entry& entry, std::size_t ask, bool from_reserve,
                    std::span<std::uint8_t> scratch);
  std::size_t ServeReserve(Entry& entry, std::size_t budget_left, std::span<std::uint8_t> scratch);
  // Moves the entry's credit into its reserve, within the caps and the free bytes.
  // Returns false if credit is left only because the free bytes ran out.
  bool KeepAsReserve(Entry& entry);
  // With nobody waiting, a non-blocking read does what a round would: every other
  // idle consumer's part of the free bytes goes into its reserve, within the caps.
  // Splits only what arrived since the last split (pool bytes_in() at that time).
  void SetAsideForIdleOthers(const Entry& reader);

  EntropyPool& pool_;
  const Clock& clock_;
  Clock::Duration grace_;
  std::list<Entry> entries_;
  std::uint64_t split_upto_ = 0;  // pool_.bytes_in() when free bytes were last split
  std::unordered_map<const Consumer*, EntryIt> index_;  // live entries only
  // Idle transitions in time order, for expiry without a walk; stale items (the
  // entry went active again, or left) are skipped when they come due.
  std::deque<std::pair<Clock::TimePoint, const Consumer*>> idle_queue_;
  // Consumers that asked again while holding a reserve: served from it first.
  std::vector<const Consumer*> returning_;
  std::size_t idle_count_ = 0;
  std::size_t total_weight_ = 0;  // over live entries
  std::size_t total_reserved_ = 0;
  bool pumping_ = false;
};

}  // namespace rngmux
