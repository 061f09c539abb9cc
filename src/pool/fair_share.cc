#include "pool/fair_share.h"

#include <algorithm>
#include <array>

#include "common/secure_memory.h"

// How the round-robin works here (deficit round-robin over bytes):
//
// The list is the round-robin order and its front is the cursor. The consumer at
// the front gets one quantum of credit when its turn starts and is served
// min(credit, Wanted(), free bytes). Its turn ends when the credit is spent (it
// moves to the back) or its demand is met (Wanted() == 0: see reserves below). If
// the free bytes run out mid-turn, the consumer stays at the front with its
// remaining credit and the next Pump() resumes that same turn. Only the front can
// hold credit, and only between Pump()s.
//
// A resumed turn is finished before the next round starts and is not counted as one
// of its turns. Otherwise the fragment (say 255 bytes left of a 256-byte quantum
// handed out on a near-empty pool) would stand for that consumer's whole turn in a
// round whose quantum is far larger, and the consumer most often cut short, the
// one that is always waiting, would lose out every time.
//
// Resuming rather than restarting matters when supply is short: if every Pump()
// started at the same consumer and handed everyone fresh credit, whoever sits first
// would drain the pool each time while the rest piled up credit they never spend.
//
// The quantum is fixed per round (one turn per listed consumer) at
// max(kMinQuantum, free / listed), so abundant supply is split in one round and
// scarce supply still moves in chunks worth a Take().
//
// Reserves, and why. Plain DRR is fair only among consumers that are waiting when
// bytes arrive ("an emptied queue forfeits its deficit"). A client that keeps one
// small request in flight (QEMU's rng-egd without a lead: 02 40, wait for 64 bytes,
// send the next 02 40 a fraction of a millisecond later) is served 64 bytes on each
// arrival of a slow source's block and leaves; a client that pipelines 02 FF takes
// the rest, and the pool is empty again by the time the next 02 40 comes. Measured:
// 320 B/s against 21 kB/s. So a consumer whose demand is met, if it has been served
// since it was listed, does not leave: it turns its unspent credit into a reserve,
// bytes left in the pool that only it may take, and stays listed as idle. On its
// turns while idle it accrues its quantum into the reserve, taking nothing, so it
// keeps its share of what arrives during a short absence. When it Activate()s again,
// Pump() first serves it from its reserve (outside the round-robin order: those
// bytes are already its own), then it takes turns as usual. Everybody else may take
// only free bytes: Available() - total_reserved_. Reserves are capped at kMaxReserve
// per consumer and capacity/2 in all, and accrue only from free bytes, so they are
// always backed by bytes in the pool. Bytes can also leave the pool by other paths
// (0x01 reads take directly); FreeBytes() then shrinks every reserve in proportion
// so that the accounting stays backed. With only idle consumers listed nothing is
// set aside (nobody competes for the bytes).
//
// Expiry is lazy: an idle consumer that has not asked again within grace_ is
// dropped, and its reserve released, by the next Activate() or Pump(); there is no
// timer. This cannot deadlock a waiting consumer: reserves never hold more than
// half the pool, so while anyone waits the pool cannot fill up with bytes nobody may
// take. Either free bytes are there (and Pump() hands them out), or the pool has
// room, so producers keep putting, and every Put() requests a Pump(), which expires
// stale reserves. If the source stops producing altogether, nothing calls Pump();
// the owner covers that case by pumping again once the grace period has passed
// while reserves are held and someone waits (Server::RequestPump).
//
// Weights: a round's quantum is computed per unit of weight, max(kMinQuantum,
// free / total weight), and a consumer's turn gets quantum * weight of credit.
//
// Non-blocking reads (0x01) go through TakeImmediate(): from the consumer's reserve,
// and from free bytes only when nobody else waits. A client that only ever sends
// 01 FF would otherwise sidestep the round-robin altogether and empty the pool ahead
// of every waiting consumer. Listing it as idle while it reads makes its turns set
// bytes aside for it like for any briefly absent consumer: its share, no more.
//
// Re-entrancy: Deliver() may Activate() or Remove() any consumer, including the one
// being served, and may call Pump(). While pumping_ is set, entries are never erased
// from the outside: Remove() and expiry only mark them dead (consumer = nullptr)
// and release their reserves, so that no iterator or reference Pump() holds is
// invalidated; Pump() drops dead entries when they reach the front and on exit.
// An entry is never idle while it is being delivered to, so expiry cannot hit it.
// A nested Pump() returns 0 and the outer one carries on.

namespace rngmux {

namespace {

// Bytes moved per Take()/Deliver() round trip. On the stack, wiped after each use.
constexpr std::size_t kScratchBytes = FairShare::kMaxStepBytes;

}  // namespace

FairShare::EntryIt FairShare::Find(const Consumer* consumer) {
  const auto found = index_.find(consumer);
  return found == index_.end() ? entries_.end() : found->second;
}

FairShare::EntryIt FairShare::Add(Consumer* consumer) {
  const std::size_t weight = std::max<std::size_t>(1, consumer->Weight());
  entries_.push_back(Entry{consumer, weight});
  const EntryIt it = std::prev(entries_.end());
  index_.emplace(consumer, it);
  total_weight_ += weight;
  return it;
}

void FairShare::SetIdle(Entry& entry, bool idle, Clock::TimePoint now) {
  if (entry.idle == idle) return;
  entry.idle = idle;
  if (idle) {
    ++idle_count_;
    entry.idle_since = now;
    idle_queue_.emplace_back(now, entry.consumer);
  } else {
    --idle_count_;
  }
}

void FairShare::Activate(Consumer* consumer) {
  if (consumer == nullptr) return;  // nullptr marks dead entries.
  const Clock::TimePoint now = clock_.Now();
  ExpireIdle(now);
  const EntryIt it = Find(consumer);
  if (it == entries_.end()) {
    Add(consumer);
    return;
  }
  if (!it->idle) return;
  // Back within its grace period: keeps its place and reserve.
  SetIdle(*it, false, now);
  if (it->reserve > 0) returning_.push_back(consumer);
}

void FairShare::Remove(Consumer* consumer) {
  if (consumer == nullptr) return;
  const EntryIt it = Find(consumer);
  if (it != entries_.end()) Drop(it);
}

std::size_t FairShare::active_count() const { return index_.size() - idle_count_; }

std::size_t FairShare::idle_count() const { return idle_count_; }

std::size_t FairShare::reserve_of(const Consumer* consumer) const {
  const auto found = index_.find(consumer);
  return found == index_.end() ? 0 : found->second->reserve;
}

FairShare::EntryIt FairShare::Drop(EntryIt it) {
  total_reserved_ -= it->reserve;
  total_weight_ -= it->weight;
  if (it->idle) --idle_count_;
  index_.erase(it->consumer);
  if (!pumping_) return entries_.erase(it);
  it->consumer = nullptr;
  it->deficit = 0;
  it->reserve = 0;
  it->idle = false;
  return std::next(it);
}

void FairShare::ExpireIdle(Clock::TimePoint now) {
  while (!idle_queue_.empty() && now - idle_queue_.front().first >= grace_) {
    const auto [since, consumer] = idle_queue_.front();
    idle_queue_.pop_front();
    const EntryIt it = Find(consumer);
    // Only the transition that is still current counts: the entry may have gone
    // active and idle again since (a later item stands for that).
    if (it != entries_.end() && it->idle && it->idle_since == since) Drop(it);
  }
}

std::size_t FairShare::FreeBytes() {
  const std::size_t available = pool_.Available();
  if (available < total_reserved_) {
    // Bytes left by another path: shrink reserves in proportion so they are backed.
    std::size_t total = 0;
    for (Entry& entry : entries_) {
      entry.reserve = entry.reserve * available / total_reserved_;
      total += entry.reserve;
    }
    total_reserved_ = total;
  }
  return available - total_reserved_;
}

std::size_t FairShare::TakeImmediate(Consumer* consumer, std::span<std::uint8_t> out) {
  if (consumer == nullptr || out.empty()) return 0;
  const Clock::TimePoint now = clock_.Now();
  ExpireIdle(now);
  EntryIt it = Find(consumer);
  if (it == entries_.end()) {
    it = Add(consumer);
    it->served = true;
    SetIdle(*it, true, now);
  } else if (it->idle) {
    // Still reading: its place (and what its turns set aside) is kept.
    it->idle = false;
    --idle_count_;
    SetIdle(*it, true, now);
  }
  Entry& entry = *it;
  std::size_t taken = 0;
  FreeBytes();  // Settles reserves against what the pool holds.
  const std::size_t from_reserve = std::min(entry.reserve, out.size());
  if (from_reserve > 0) {
    taken = pool_.Take(out.first(from_reserve));
    entry.reserve -= taken;
    total_reserved_ -= taken;
  }
  // Free bytes belong to the waiting consumers' turns; only with nobody else
  // waiting may a non-blocking read have them.
  const std::size_t others_waiting = active_count() - (entry.idle ? 0 : 1);
  if (taken < out.size() && others_waiting == 0) {
    // Others may be listed as idle: briefly absent between two requests. A round of
    // Pump() would set their parts aside; with nobody waiting no round runs, so
    // this read does it, or a reader spinning on 01 would take every byte that
    // arrives while a guest sends its next request.
    SetAsideForIdleOthers(entry);
    const std::size_t free = FreeBytes();
    const std::size_t more = std::min(free, out.size() - taken);
    if (more > 0) taken += pool_.Take(out.subspan(taken, more));
  }
  return taken;
}

void FairShare::SetAsideForIdleOthers(const Entry& reader) {
  const std::uint64_t in = pool_.bytes_in();
  const std::uint64_t arrived = in - split_upto_;
  if (arrived == 0 || index_.size() < 2) {
    split_upto_ = in;
    return;
  }
  // Only what arrived since the last split (here or in a Pump() round) is split,
  // so nothing is credited twice. The walk is O(listed consumers), like a round,
  // and runs at most once per Put(): a spinning reader finds nothing new after it.
  const std::size_t base = static_cast<std::size_t>(std::min<std::uint64_t>(arrived, FreeBytes()));
  const std::size_t per_weight = base / std::max<std::size_t>(1, total_weight_);
  // Fewer new bytes than listed weight: wait for more rather than round every idle
  // consumer's part down to nothing (and hand it all to the reader).
  if (per_weight == 0) return;
  split_upto_ = in;
  const std::size_t total_cap = pool_.capacity() / 2;
  for (Entry& entry : entries_) {
    if (total_reserved_ >= total_cap) break;
    if (&entry == &reader || entry.consumer == nullptr || !entry.idle) continue;
    const std::size_t room = kMaxReserve - std::min(kMaxReserve, entry.reserve);
    const std::size_t add =
        std::min({per_weight * entry.weight, room, total_cap - total_reserved_});
    entry.reserve += add;
    total_reserved_ += add;
  }
}

std::size_t FairShare::Serve(Entry& entry, std::size_t ask, bool from_reserve,
                             std::span<std::uint8_t> scratch) {
  const std::size_t got = pool_.Take(scratch.first(ask));
  if (got == 0) return 0;
  // Settle the accounts before Deliver(), which may Remove() this very entry.
  if (from_reserve) {
    const std::size_t used = std::min(got, entry.reserve);
    entry.reserve -= used;
    total_reserved_ -= used;
  } else {
    entry.deficit -= std::min(got, entry.deficit);
  }
  entry.served = true;
  SetIdle(entry, false, Clock::TimePoint{});
  entry.consumer->Deliver(std::span<const std::uint8_t>(scratch.data(), got));
  SecureWipe(scratch.data(), got);
  return got;
}

std::size_t FairShare::ServeReserve(Entry& entry, std::size_t budget_left,
                                    std::span<std::uint8_t> scratch) {
  std::size_t delivered = 0;
  while (entry.consumer != nullptr && entry.reserve > 0 && delivered < budget_left) {
    // Asked before every chunk: Deliver() must never get more than Wanted().
    const std::size_t wanted = entry.consumer->Wanted();
    if (wanted == 0) break;
    const std::size_t ask =
        std::min({entry.reserve, wanted, scratch.size(), budget_left - delivered});
    const std::size_t got = Serve(entry, ask, /*from_reserve=*/true, scratch);
    if (got == 0) {
      FreeBytes();  // The pool was emptied by another path: no reserve is backed.
      break;
    }
    delivered += got;
  }
  return delivered;
}

bool FairShare::KeepAsReserve(Entry& entry) {
  const std::size_t free = FreeBytes();
  const std::size_t total_cap = pool_.capacity() / 2;
  if (entry.reserve >= kMaxReserve || total_reserved_ >= total_cap) return true;
  const std::size_t add =
      std::min({entry.deficit, free, kMaxReserve - entry.reserve, total_cap - total_reserved_});
  entry.reserve += add;
  total_reserved_ += add;
  entry.deficit -= add;
  return entry.deficit == 0 || entry.reserve >= kMaxReserve || total_reserved_ >= total_cap;
}

std::size_t FairShare::Pump() {
  if (pumping_) return 0;
  const Clock::TimePoint now = clock_.Now();
  ExpireIdle(now);
  // Rounds split what is free now: a later non-blocking read splits only what comes after.
  if (active_count() > 0) split_upto_ = pool_.bytes_in();
  pumping_ = true;
  std::array<std::uint8_t, kScratchBytes> scratch;

  // Restores the invariants on every exit, including a Deliver() that throws.
  struct Finish {
    FairShare& share;
    std::span<std::uint8_t> scratch;
    ~Finish() {
      SecureWipe(scratch);
      share.entries_.remove_if([](const Entry& entry) { return entry.consumer == nullptr; });
      share.pumping_ = false;
    }
  } finish{*this, scratch};

  // Bounds one call even if Deliver() or a producer keeps refilling the pool, or a
  // consumer's Wanted() never drops. Stopping early loses nothing: bytes beyond this
  // budget were added during the call, and each Put() fires the data-ready callback
  // after adding, which schedules another Pump().
  const std::size_t budget = pool_.capacity();
  std::size_t delivered = 0;

  // Consumers that asked again are served from their reserves first, wherever they
  // sit in the round-robin. Ones that return during this loop (Deliver() may
  // Activate()) are appended and visited too.
  for (std::size_t i = 0; i < returning_.size() && delivered < budget; ++i) {
    const EntryIt it = Find(returning_[i]);
    if (it == entries_.end()) continue;
    Entry& entry = *it;
    if (entry.consumer == nullptr || entry.idle || entry.reserve == 0) continue;
    delivered += ServeReserve(entry, budget - delivered, scratch);
    if (entry.consumer != nullptr && entry.consumer->Wanted() == 0) SetIdle(entry, true, now);
  }
  returning_.clear();

  std::size_t quantum = kMinQuantum;
  std::size_t turns_left_in_round = 0;
  while (delivered < budget) {
    while (!entries_.empty() && entries_.front().consumer == nullptr) entries_.pop_front();
    if (entries_.empty()) break;
    const std::size_t free = FreeBytes();
    if (free == 0) break;

    if (turns_left_in_round == 0) {
      // Only idle consumers: nobody to set bytes aside from.
      if (active_count() == 0) break;
      quantum = std::max(kMinQuantum, free / std::max<std::size_t>(1, total_weight_));
      turns_left_in_round = index_.size();
    }

    // References into std::list stay valid across push_back (Activate) and, while
    // pumping_, nothing else erases, so `entry` is still the front after Deliver().
    Entry& entry = entries_.front();
    // Credit left over: a turn cut short by the previous Pump() is finished first. It
    // belonged to that round, so it is not one of this round's turns.
    const bool resumed = entry.deficit > 0;
    if (!resumed) entry.deficit = quantum * entry.weight;

    // A reserve, if any, is spent before the credit (it was earned on earlier turns).
    if (entry.reserve > 0) delivered += ServeReserve(entry, budget - delivered, scratch);
    bool demand_met = false;
    while (entry.consumer != nullptr && entry.deficit > 0 && delivered < budget) {
      const std::size_t wanted = entry.consumer->Wanted();
      if (wanted == 0) {
        demand_met = true;
        break;
      }
      const std::size_t available = FreeBytes();
      if (available == 0) break;
      const std::size_t ask =
          std::min({entry.deficit, wanted, available, scratch.size(), budget - delivered});
      const std::size_t got = Serve(entry, ask, /*from_reserve=*/false, scratch);
      if (got == 0) break;
      delivered += got;
    }
    // Credit and demand can run out together; settle now rather than on the next visit.
    if (!demand_met && entry.consumer != nullptr && entry.deficit == 0) {
      demand_met = entry.consumer->Wanted() == 0;
    }

    if (entry.consumer == nullptr) {
      entries_.pop_front();
    } else if (demand_met && grace_ > Clock::Duration::zero() && entry.served) {
      // Idle: the rest of this turn's credit is set aside, up to the caps. If the
      // free bytes run out first, the turn resumes here with the remaining credit,
      // just as a waiting consumer's would.
      SetIdle(entry, true, now);
      if (!KeepAsReserve(entry)) break;
      entry.deficit = 0;  // Capped: the rest is forfeited.
      entries_.splice(entries_.end(), entries_, entries_.begin());
    } else if (demand_met) {
      // Never served (or reserves off): it leaves, as in plain DRR.
      Drop(entries_.begin());
      entries_.pop_front();
    } else if (entry.deficit == 0) {
      entries_.splice(entries_.end(), entries_, entries_.begin());
    } else {
      // No free bytes or budget spent mid-turn: keep the cursor and the credit here.
      break;
    }
    if (!resumed) --turns_left_in_round;
  }
  return delivered;
}

}  // namespace rngmux
