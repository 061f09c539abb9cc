#include "pool/fair_share.h"

#include <algorithm>
#include <array>

#include "common/secure_memory.h"

// How the round-robin works here (deficit round-robin over bytes):
//
// The list is the round-robin order and its front is the cursor. The consumer at
// the front gets one quantum of credit when its turn starts and is served
// min(credit, Wanted(), what the pool has). Its turn ends when the credit is spent
// (it moves to the back) or its demand is met (Wanted() == 0: it leaves the list).
// Since bytes are divisible, a turn that ends leaves no credit over; the DRR rule
// "an emptied queue forfeits its deficit" covers the demand-met case. If the pool
// runs dry mid-turn, the consumer stays at the front with its remaining credit and
// the next Pump() resumes that same turn.
//
// Resuming rather than restarting matters when supply is short: if every Pump()
// started at the same consumer and handed everyone fresh credit, whoever sits first
// would drain the pool each time while the rest piled up credit they never spend.
//
// The quantum is fixed per round (one turn per waiting consumer) at
// max(kMinQuantum, available / waiting), so abundant supply is split in one round
// and scarce supply still moves in chunks worth a Take().
//
// Re-entrancy: Deliver() may Activate() or Remove() any consumer, including the one
// being served, and may call Pump(). While pumping_ is set, Remove() only marks the
// entry dead (consumer = nullptr) so that no iterator or reference Pump() holds is
// invalidated; Pump() drops dead entries when they reach the front and on exit.
// A nested Pump() returns 0 and the outer one carries on.

namespace rngmux {

namespace {

// Bytes moved per Take()/Deliver() round trip. On the stack, wiped after each use.
constexpr std::size_t kScratchBytes = 16 * 1024;

}  // namespace

void FairShare::Activate(Consumer* consumer) {
  if (consumer == nullptr) return;  // nullptr marks dead entries.
  for (const Entry& entry : active_) {
    if (entry.consumer == consumer) return;
  }
  active_.push_back(Entry{consumer});
}

void FairShare::Remove(Consumer* consumer) {
  if (consumer == nullptr) return;
  for (auto it = active_.begin(); it != active_.end(); ++it) {
    if (it->consumer != consumer) continue;
    if (pumping_) {
      it->consumer = nullptr;
      it->deficit = 0;
    } else {
      active_.erase(it);
    }
    return;
  }
}

std::size_t FairShare::Pump() {
  if (pumping_) return 0;
  pumping_ = true;
  std::array<std::uint8_t, kScratchBytes> scratch;

  // Restores the invariants on every exit, including a Deliver() that throws.
  struct Finish {
    FairShare& share;
    std::span<std::uint8_t> scratch;
    ~Finish() {
      SecureWipe(scratch);
      share.active_.remove_if([](const Entry& entry) { return entry.consumer == nullptr; });
      share.pumping_ = false;
    }
  } finish{*this, scratch};

  // Bounds one call even if Deliver() or a producer keeps refilling the pool, or a
  // consumer's Wanted() never drops. Stopping early loses nothing: bytes beyond this
  // budget were added during the call, and each Put() fires the data-ready callback
  // after adding, which schedules another Pump().
  const std::size_t budget = pool_.capacity();
  std::size_t delivered = 0;
  std::size_t quantum = kMinQuantum;
  std::size_t turns_left_in_round = 0;

  while (delivered < budget) {
    while (!active_.empty() && active_.front().consumer == nullptr) active_.pop_front();
    if (active_.empty()) break;
    const std::size_t available = pool_.Available();
    if (available == 0) break;

    if (turns_left_in_round == 0) {
      const auto waiting = static_cast<std::size_t>(std::count_if(
          active_.begin(), active_.end(), [](const Entry& e) { return e.consumer != nullptr; }));
      quantum = std::max(kMinQuantum, available / waiting);
      turns_left_in_round = waiting;
    }

    // References into std::list stay valid across push_back (Activate) and, while
    // pumping_, nothing erases, so `entry` is still the front after Deliver().
    Entry& entry = active_.front();
    if (entry.deficit == 0) entry.deficit = quantum;  // Otherwise: resuming a turn.

    bool demand_met = false;
    while (entry.deficit > 0 && delivered < budget) {
      // Asked before every chunk: Deliver() must never get more than Wanted().
      const std::size_t wanted = entry.consumer->Wanted();
      if (wanted == 0) {
        demand_met = true;
        break;
      }
      const std::size_t ask = std::min({entry.deficit, wanted, scratch.size(), budget - delivered});
      const std::size_t got = pool_.Take(std::span(scratch.data(), ask));
      if (got == 0) break;
      entry.consumer->Deliver(std::span<const std::uint8_t>(scratch.data(), got));
      SecureWipe(scratch.data(), got);
      entry.deficit -= got;
      delivered += got;
      if (entry.consumer == nullptr) break;  // Removed inside Deliver(); do not touch it.
    }
    // Credit and demand can run out together; leave now rather than on the next visit.
    if (!demand_met && entry.consumer != nullptr && entry.deficit == 0) {
      demand_met = entry.consumer->Wanted() == 0;
    }

    if (entry.consumer == nullptr || demand_met) {
      active_.pop_front();
    } else if (entry.deficit == 0) {
      active_.splice(active_.end(), active_, active_.begin());
    } else {
      // Pool dry or budget spent mid-turn: keep the cursor and the credit here.
      break;
    }
    --turns_left_in_round;
  }
  return delivered;
}

}  // namespace rngmux
