#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "common/interrupt.h"
#include "common/secure_memory.h"

namespace rngmux {

// The one bounded store of health-tested bytes between the source threads
// (producers) and the event loop (the consumer). A ring buffer in a SecureBuffer.
//
// Exactly-once: Take() copies bytes out and wipes them in the ring in the same
// critical section, so no byte can be handed out twice.
//
// Thread-safety: all methods are safe from any thread. Put() may block (a source
// thread waiting for room); Take() and Available() never block.
class EntropyPool {
 public:
  // Interrupt::Trigger() cannot signal the condition variable, so owners call
  // WakeProducers() after triggering. A producer blocked in Put() also looks at its
  // Interrupt every `stop_poll_interval`; that only bounds how long a forgotten
  // wake-up can delay its exit, and is not how stop is normally seen.
  static constexpr std::chrono::milliseconds kDefaultStopPollInterval{100};

  explicit EntropyPool(std::size_t capacity,
                       std::chrono::milliseconds stop_poll_interval = kDefaultStopPollInterval);

  // Copies all of `bytes` in, waiting for room as needed: for room for all of the
  // rest, or for half the pool if that is less, so that a blocked producer adds big
  // chunks and is woken once per half pool drained, not on every Take(). Calls the
  // data-ready callback (outside the lock) after each chunk that was added. Returns
  // the number of bytes added, which is less than bytes.size() only if `stop` was
  // triggered.
  std::size_t Put(std::span<const std::uint8_t> bytes, const Interrupt& stop);

  // Moves up to out.size() bytes out (wiping them in the ring). Never blocks.
  std::size_t Take(std::span<std::uint8_t> out);

  std::size_t Available() const;
  // Bytes put in and taken out since construction (for status and metrics).
  std::uint64_t bytes_in() const { return bytes_in_.load(std::memory_order_relaxed); }
  std::uint64_t bytes_out() const { return bytes_out_.load(std::memory_order_relaxed); }
  std::size_t capacity() const { return buffer_.size(); }
  bool memory_locked() const { return buffer_.locked(); }

  // Called on the producer's thread whenever bytes were added; the server uses it
  // to post a "pump" onto the event loop. Set once, before producers start.
  void SetDataReadyCallback(std::function<void()> callback) { on_data_ = std::move(callback); }

  // Wakes producers blocked in Put() so they can observe their Interrupt.
  void WakeProducers();

 private:
  mutable std::mutex mutex_;
  std::condition_variable room_;
  SecureBuffer buffer_;
  std::size_t head_ = 0;                     // next byte to take
  std::size_t size_ = 0;                     // bytes stored
  std::atomic<std::uint64_t> bytes_in_{0};   // written under mutex_
  std::atomic<std::uint64_t> bytes_out_{0};  // written under mutex_
  std::function<void()> on_data_;
  std::chrono::milliseconds stop_poll_interval_;
  // Producers blocked in Put(), and the least room one of them waits for (a stale
  // smaller value after that one left costs the others a spurious wake-up, no more).
  static constexpr std::size_t kNoWaiter = static_cast<std::size_t>(-1);
  std::size_t waiting_producers_ = 0;
  std::size_t wake_room_ = kNoWaiter;
};

}  // namespace rngmux
