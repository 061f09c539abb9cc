#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <span>

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
};

// Shares the pool among waiting consumers by bytes, with deficit round-robin:
// every pass gives each waiting consumer the same quantum of credit, so when
// supply is short, equal demands get equal shares and one greedy client cannot
// starve the rest. Event-loop thread only.
class FairShare {
 public:
  static constexpr std::size_t kMinQuantum = 256;

  explicit FairShare(EntropyPool& pool) : pool_(pool) {}

  // Marks a consumer as waiting (idempotent). Does not pump.
  void Activate(Consumer* consumer);
  // Forgets a consumer (it is going away). Safe to call if it was never active.
  void Remove(Consumer* consumer);

  // Moves bytes from the pool to waiting consumers until the pool is empty or
  // nobody waits. Consumers whose Wanted() drops to 0 leave the active list;
  // they Activate() again when they want more. Returns bytes delivered.
  std::size_t Pump();

  std::size_t active_count() const { return active_.size(); }

 private:
  struct Entry {
    Consumer* consumer;
    std::size_t deficit = 0;
  };
  EntropyPool& pool_;
  std::list<Entry> active_;
  bool pumping_ = false;
};

}  // namespace rngmux
