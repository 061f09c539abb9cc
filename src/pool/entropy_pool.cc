#include "pool/entropy_pool.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace rngmux {

EntropyPool::EntropyPool(std::size_t capacity, std::chrono::milliseconds stop_poll_interval)
    : buffer_(capacity), stop_poll_interval_(stop_poll_interval) {
  // A zero-capacity pool would make every non-empty Put() wait forever.
  if (capacity == 0) throw std::invalid_argument("entropy pool: capacity must be positive");
}

std::size_t EntropyPool::Put(std::span<const std::uint8_t> bytes, const Interrupt& stop) {
  std::size_t added = 0;
  while (added < bytes.size()) {
    {
      std::unique_lock lock(mutex_);
      const std::size_t capacity = buffer_.size();
      // A producer on a full pool waits for room for the rest of its block (at most
      // half the pool), not for one byte: it then adds big chunks, and Take() wakes
      // it once that much is free instead of on every take. With guests taking 64
      // bytes a request from a full pool, each take otherwise cost a futex wake, a
      // context switch to the source thread, a 64-byte put and a pump posted back.
      // stop is checked only while there is no room: a triggered stop must not
      // cost a syscall per chunk on the fast path.
      const std::size_t want =
          std::min(bytes.size() - added, std::max<std::size_t>(1, capacity / 2));
      while (capacity - size_ < want) {
        if (stop.triggered()) return added;
        wake_room_ = std::min(wake_room_, want);
        ++waiting_producers_;
        room_.wait_for(lock, stop_poll_interval_);
        if (--waiting_producers_ == 0) wake_room_ = kNoWaiter;
      }
      const std::size_t chunk = std::min(bytes.size() - added, capacity - size_);
      const std::size_t tail = (head_ + size_) % capacity;
      const std::size_t before_wrap = std::min(chunk, capacity - tail);
      std::memcpy(buffer_.data() + tail, bytes.data() + added, before_wrap);
      std::memcpy(buffer_.data(), bytes.data() + added + before_wrap, chunk - before_wrap);
      size_ += chunk;
      bytes_in_ += chunk;
      added += chunk;
    }
    // Outside the lock: the callback may post work that calls Take() or Available().
    if (on_data_) on_data_();
  }
  return added;
}

std::size_t EntropyPool::Take(std::span<std::uint8_t> out) {
  std::size_t taken = 0;
  bool wake = false;
  {
    std::lock_guard lock(mutex_);
    taken = std::min(out.size(), size_);
    if (taken == 0) return 0;
    const std::size_t capacity = buffer_.size();
    const std::size_t before_wrap = std::min(taken, capacity - head_);
    // Copy and wipe under the same lock: once we unlock, these bytes exist only in
    // `out`, so no later Take() can hand them out again.
    std::memcpy(out.data(), buffer_.data() + head_, before_wrap);
    SecureWipe(buffer_.data() + head_, before_wrap);
    std::memcpy(out.data() + before_wrap, buffer_.data(), taken - before_wrap);
    SecureWipe(buffer_.data(), taken - before_wrap);
    size_ -= taken;
    bytes_out_ += taken;
    // Restarting at 0 when empty keeps later Put()s contiguous (one memcpy).
    head_ = size_ == 0 ? 0 : (head_ + taken) % capacity;
    wake = capacity - size_ >= wake_room_;  // never while nobody waits (kNoWaiter)
  }
  // All waiters: one may need less room than was freed, leaving room for another.
  if (wake) room_.notify_all();
  return taken;
}

std::size_t EntropyPool::Available() const {
  std::lock_guard lock(mutex_);
  return size_;
}

void EntropyPool::WakeProducers() {
  // Taking the lock orders us after any producer that checked its Interrupt but has
  // not started waiting yet, so the notification cannot be lost.
  { std::lock_guard lock(mutex_); }
  room_.notify_all();
}

}  // namespace rngmux
