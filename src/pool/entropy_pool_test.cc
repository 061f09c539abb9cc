#include "pool/entropy_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/interrupt.h"
#include "common/secure_memory.h"

namespace rngmux {
namespace {

std::vector<std::uint8_t> Sequence(std::size_t size, std::uint8_t first) {
  std::vector<std::uint8_t> bytes(size);
  std::iota(bytes.begin(), bytes.end(), first);
  return bytes;
}

std::vector<std::uint8_t> TakeAll(EntropyPool& pool) {
  std::vector<std::uint8_t> out(pool.capacity());
  out.resize(pool.Take(out));
  return out;
}

// Counts data-ready callbacks and lets a test wait for the n-th one without timers.
class CallbackCounter {
 public:
  void Increment() {
    {
      std::lock_guard lock(mutex_);
      ++count_;
    }
    changed_.notify_all();
  }
  void WaitFor(int n) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return count_ >= n; });
  }
  int count() {
    std::lock_guard lock(mutex_);
    return count_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int count_ = 0;
};

TEST(EntropyPoolTest, RejectsZeroCapacity) {
  EXPECT_THROW(EntropyPool pool(0), std::invalid_argument);
}

TEST(EntropyPoolTest, TakeReturnsBytesInOrderAcrossWrapAround) {
  Interrupt stop;
  EntropyPool pool(10);
  const auto first = Sequence(7, 0);
  const auto second = Sequence(6, 100);

  ASSERT_EQ(pool.Put(first, stop), 7u);
  std::array<std::uint8_t, 5> five{};
  ASSERT_EQ(pool.Take(five), 5u);
  EXPECT_TRUE(std::equal(five.begin(), five.end(), first.begin()));
  // The ring now holds bytes 5..6 at positions 5..6; six more wrap past the end.
  ASSERT_EQ(pool.Put(second, stop), 6u);
  EXPECT_EQ(pool.Available(), 8u);

  const std::vector<std::uint8_t> expected = {5, 6, 100, 101, 102, 103, 104, 105};
  EXPECT_EQ(TakeAll(pool), expected);
  EXPECT_EQ(pool.Available(), 0u);
}

TEST(EntropyPoolTest, TakeHandsEachByteOutOnce) {
  Interrupt stop;
  EntropyPool pool(16);
  const auto bytes = Sequence(16, 1);
  ASSERT_EQ(pool.Put(bytes, stop), 16u);

  std::array<std::uint8_t, 10> first{};
  ASSERT_EQ(pool.Take(first), 10u);
  EXPECT_EQ(pool.Available(), 6u);
  const std::vector<std::uint8_t> rest = TakeAll(pool);
  EXPECT_EQ(rest, std::vector<std::uint8_t>(bytes.begin() + 10, bytes.end()));
  EXPECT_EQ(TakeAll(pool), std::vector<std::uint8_t>{});

  // Refill the whole ring: only the new bytes come out, never a stale one.
  const auto fresh = Sequence(16, 200);
  ASSERT_EQ(pool.Put(fresh, stop), 16u);
  EXPECT_EQ(TakeAll(pool), fresh);
}

TEST(EntropyPoolTest, TakeIntoEmptySpanOrFromEmptyPoolReturnsZero) {
  Interrupt stop;
  EntropyPool pool(4);
  std::array<std::uint8_t, 4> out{};
  EXPECT_EQ(pool.Take(out), 0u);
  ASSERT_EQ(pool.Put(Sequence(2, 0), stop), 2u);
  EXPECT_EQ(pool.Take(std::span<std::uint8_t>()), 0u);
  EXPECT_EQ(pool.Available(), 2u);
}

TEST(SecureWipeTest, ZeroesEveryByte) {
  std::vector<std::uint8_t> bytes(1000, 0xA5);
  SecureWipe(std::span(bytes).subspan(1, 998));
  EXPECT_EQ(bytes.front(), 0xA5);
  EXPECT_EQ(bytes.back(), 0xA5);
  EXPECT_TRUE(std::all_of(bytes.begin() + 1, bytes.end() - 1, [](auto b) { return b == 0; }));
}

TEST(EntropyPoolTest, DataReadyCallbackFiresOutsideTheLockPerChunk) {
  Interrupt stop;
  EntropyPool pool(8);
  int calls = 0;
  std::size_t seen_available = 0;
  // Available() would deadlock if the callback ran under the pool's lock.
  pool.SetDataReadyCallback([&] {
    ++calls;
    seen_available = pool.Available();
  });

  EXPECT_EQ(pool.Put({}, stop), 0u);
  EXPECT_EQ(calls, 0);
  ASSERT_EQ(pool.Put(Sequence(3, 0), stop), 3u);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen_available, 3u);
}

TEST(EntropyPoolTest, PutBlocksWhenFullAndResumesAfterTake) {
  Interrupt stop;
  EntropyPool pool(8);
  CallbackCounter callbacks;
  pool.SetDataReadyCallback([&] { callbacks.Increment(); });
  const auto bytes = Sequence(12, 0);

  std::atomic<bool> returned{false};
  std::size_t put = 0;
  std::thread producer([&] {
    put = pool.Put(bytes, stop);
    returned = true;
  });

  callbacks.WaitFor(1);  // The first 8 bytes are in; 4 have no room.
  EXPECT_EQ(pool.Available(), 8u);
  // Nothing can make room, so a correct Put() is still blocked; the pause only gives
  // a broken one (returning early or overwriting) the chance to show itself.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(returned);
  EXPECT_EQ(pool.Available(), 8u);

  std::array<std::uint8_t, 4> out{};
  ASSERT_EQ(pool.Take(out), 4u);
  producer.join();
  EXPECT_EQ(put, 12u);
  EXPECT_EQ(callbacks.count(), 2);
  EXPECT_EQ(TakeAll(pool), std::vector<std::uint8_t>(bytes.begin() + 4, bytes.end()));
}

// A pool filled to capacity that counts its data-ready callbacks (one so far), and a
// producer thread putting one block into it. The stop poll is far longer than the
// tests, so only Take()'s wake-up can let the producer go on. The destructor stops
// and joins the producer, so a failed check never leaves it blocked.
class FullPool {
 public:
  explicit FullPool(std::size_t capacity) : pool(capacity, std::chrono::seconds(10)) {
    pool.SetDataReadyCallback([this] { callbacks.Increment(); });
    EXPECT_EQ(pool.Put(Sequence(capacity, 0), stop_), capacity);
    EXPECT_EQ(callbacks.count(), 1);
  }
  ~FullPool() {
    stop_.Trigger();
    pool.WakeProducers();
    if (producer_.joinable()) producer_.join();
  }
  FullPool(const FullPool&) = delete;
  FullPool& operator=(const FullPool&) = delete;

  void StartProducer(const std::vector<std::uint8_t>& block) {
    producer_ = std::thread([this, &block] {
      put_ = pool.Put(block, stop_);
      returned_ = true;
    });
  }
  bool returned() const { return returned_; }
  // Waits (bounded) for the producer to return; the bytes it put.
  std::size_t WaitForProducer() {
    for (int i = 0; i < 400 && !returned_; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_TRUE(returned_) << "the producer was not woken";
    stop_.Trigger();
    pool.WakeProducers();
    producer_.join();
    return put_;
  }

  EntropyPool pool;
  CallbackCounter callbacks;

 private:
  Interrupt stop_;
  std::thread producer_;
  std::atomic<bool> returned_{false};
  std::size_t put_ = 0;
};

// Guests take 64 bytes a request from a full pool. A producer woken by every such
// take would add 64 bytes each time (a futex wake, a context switch, a pump posted);
// it waits instead until its whole block fits (or half the pool is free) and adds it
// in one piece.
TEST(EntropyPoolTest, BlockedProducerWaitsForRoomForItsBlockNotForEachSmallTake) {
  FullPool full(1024);
  const auto block = Sequence(256, 7);
  full.StartProducer(block);
  std::array<std::uint8_t, 64> out{};
  for (int i = 0; i < 3; ++i) {  // 192 bytes free: less than the block
    EXPECT_EQ(full.pool.Take(out), 64u);
    // Time for a producer woken too early to add what fits.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(full.callbacks.count(), 1) << "the producer added part of its block";
    EXPECT_EQ(full.pool.Available(), 1024u - 64u * static_cast<std::size_t>(i + 1));
  }
  EXPECT_FALSE(full.returned());
  EXPECT_EQ(full.pool.Take(out), 64u);  // 256 free: the block fits
  EXPECT_EQ(full.WaitForProducer(), 256u);
  EXPECT_EQ(full.callbacks.count(), 2);  // one chunk
  EXPECT_EQ(full.pool.Available(), 1024u);
}

// A block larger than half the pool goes in by halves at least, in order, and not
// all at once at the end; taken 64 bytes at a time, never 64 bytes at a time.
TEST(EntropyPoolTest, BlockedProducerWithABlockOverHalfThePoolAddsHalves) {
  FullPool full(256);
  const auto block = Sequence(512, 3);
  full.StartProducer(block);
  std::vector<std::uint8_t> got;
  std::array<std::uint8_t, 64> out{};
  // The ring's first 256 bytes, then the block; bounded (about 2 s at most).
  for (int i = 0; i < 400 && got.size() < 768; ++i) {
    const std::size_t n = full.pool.Take(out);
    got.insert(got.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
    if (n == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(full.WaitForProducer(), 512u);
  ASSERT_EQ(got.size(), 768u);
  EXPECT_TRUE(std::equal(block.begin(), block.end(), got.begin() + 256));
  // At least two chunks: it never waits for more room than half the pool. At most
  // four: each is half the pool or more (the takes may free more before it runs),
  // where waking on every 64-byte take would add up to eight.
  EXPECT_GE(full.callbacks.count(), 1 + 2);
  EXPECT_LE(full.callbacks.count(), 1 + 4);
}

TEST(EntropyPoolTest, PutReturnsEarlyWhenStopTriggeredAndProducersWoken) {
  Interrupt stop;
  // A safety-net poll far longer than any scheduling stall: only the wake-up can
  // end the wait in time.
  EntropyPool pool(4, std::chrono::seconds(10));
  CallbackCounter callbacks;
  pool.SetDataReadyCallback([&] { callbacks.Increment(); });

  std::size_t put = 0;
  std::thread producer([&] { put = pool.Put(Sequence(10, 0), stop); });
  callbacks.WaitFor(1);
  // The first 4 bytes are in; give the producer time to start waiting for room, so
  // that it is the wake-up, not an early look at the Interrupt, that lets it go.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto start = std::chrono::steady_clock::now();
  stop.Trigger();
  pool.WakeProducers();
  producer.join();
  EXPECT_EQ(put, 4u);
  EXPECT_EQ(pool.Available(), 4u);
  // Woken, not left to the safety-net poll.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(EntropyPoolTest, PutNoticesStopEvenWithoutWakeProducers) {
  Interrupt stop;
  EntropyPool pool(4);
  CallbackCounter callbacks;
  pool.SetDataReadyCallback([&] { callbacks.Increment(); });

  std::size_t put = 0;
  std::thread producer([&] { put = pool.Put(Sequence(10, 0), stop); });
  callbacks.WaitFor(1);
  stop.Trigger();
  producer.join();
  EXPECT_EQ(put, 4u);
}

TEST(EntropyPoolTest, PutIntoFullPoolWithStopAlreadyTriggeredReturnsZero) {
  Interrupt stop;
  EntropyPool pool(4);
  ASSERT_EQ(pool.Put(Sequence(4, 0), stop), 4u);
  stop.Trigger();
  EXPECT_EQ(pool.Put(Sequence(4, 0), stop), 0u);
  EXPECT_EQ(pool.Available(), 4u);
}

// Many producers, one consumer, a ring far smaller than the traffic: every value
// put must come out exactly once. Values are 8-byte counters put one per Put();
// the capacity and every Take() size are multiples of 8, so a value is never
// split between two producers' Put()s.
TEST(EntropyPoolTest, ConcurrentProducersEveryValueReceivedExactlyOnce) {
  static constexpr std::uint64_t kProducers = 4;
  static constexpr std::uint64_t kValuesPerProducer = 20000;
  static constexpr std::size_t kValueBytes = sizeof(std::uint64_t);
  Interrupt stop;
  EntropyPool pool(37 * kValueBytes);

  // Lets the consumer give up instead of hanging if a producer lost bytes.
  std::atomic<std::uint64_t> producers_done{0};
  std::vector<std::thread> producers;
  for (std::uint64_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&pool, &stop, &producers_done, p] {
      for (std::uint64_t i = 0; i < kValuesPerProducer; ++i) {
        const std::uint64_t value = p * kValuesPerProducer + i;
        std::array<std::uint8_t, kValueBytes> bytes{};
        std::memcpy(bytes.data(), &value, kValueBytes);
        EXPECT_EQ(pool.Put(bytes, stop), kValueBytes);
      }
      ++producers_done;
    });
  }

  std::vector<int> times_seen(kProducers * kValuesPerProducer, 0);
  std::vector<std::uint64_t> last_from(kProducers, 0);
  std::vector<bool> any_from(kProducers, false);
  bool in_order_per_producer = true;
  std::size_t received = 0;
  std::array<std::uint8_t, 13 * kValueBytes> out{};
  std::size_t round = 0;
  while (received < times_seen.size()) {
    // Vary the take size (8..104 bytes) so head_ lands everywhere in the ring.
    const std::size_t ask = (round++ % 13 + 1) * kValueBytes;
    const std::size_t got = pool.Take(std::span(out.data(), ask));
    ASSERT_EQ(got % kValueBytes, 0u);
    for (std::size_t off = 0; off < got; off += kValueBytes) {
      std::uint64_t value = 0;
      std::memcpy(&value, out.data() + off, kValueBytes);
      ASSERT_LT(value, times_seen.size());
      ++times_seen[value];
      const std::uint64_t p = value / kValuesPerProducer;
      if (any_from[p] && value <= last_from[p]) in_order_per_producer = false;
      any_from[p] = true;
      last_from[p] = value;
      ++received;
    }
    if (got == 0) {
      if (producers_done == kProducers && pool.Available() == 0) break;
      std::this_thread::yield();
    }
  }
  for (auto& producer : producers) producer.join();
  EXPECT_EQ(received, times_seen.size());

  EXPECT_TRUE(std::all_of(times_seen.begin(), times_seen.end(), [](int n) { return n == 1; }));
  EXPECT_TRUE(in_order_per_producer);
  EXPECT_EQ(pool.Available(), 0u);
}

// One producer, so the byte stream keeps its order: odd capacity and odd chunk
// sizes on both sides put the wrap point everywhere, including inside a Put().
TEST(EntropyPoolTest, SingleProducerStreamSurvivesArbitraryChunking) {
  constexpr std::size_t kTotal = 200000;
  Interrupt stop;
  EntropyPool pool(97);
  std::vector<std::uint8_t> sent(kTotal);
  for (std::size_t i = 0; i < kTotal; ++i) {
    sent[i] = static_cast<std::uint8_t>(i * 131 + i / 251);
  }

  std::atomic<bool> producer_done{false};
  std::thread producer([&] {
    std::size_t offset = 0;
    for (std::size_t round = 0; offset < kTotal; ++round) {
      const std::size_t chunk = std::min(kTotal - offset, round % 300 + 1);  // Up to 3x capacity.
      EXPECT_EQ(pool.Put(std::span(sent).subspan(offset, chunk), stop), chunk);
      offset += chunk;
    }
    producer_done = true;
  });

  std::vector<std::uint8_t> received;
  received.reserve(kTotal);
  std::array<std::uint8_t, 150> out{};
  for (std::size_t round = 0; received.size() < kTotal; ++round) {
    const std::size_t got = pool.Take(std::span(out.data(), round % 150 + 1));
    received.insert(received.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(got));
    if (got == 0) {
      if (producer_done && pool.Available() == 0) break;
      std::this_thread::yield();
    }
  }
  producer.join();
  EXPECT_TRUE(received == sent);
  EXPECT_EQ(pool.Available(), 0u);
}

}  // namespace
}  // namespace rngmux
