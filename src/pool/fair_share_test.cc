#include "pool/fair_share.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/interrupt.h"
#include "pool/entropy_pool.h"

namespace rngmux {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kTick{10};

// Byte i of the stream every CountingSource produces: little-endian 64-bit
// counters, so each delivered byte can be traced to its place in the stream.
std::uint8_t StreamByte(std::uint64_t i) {
  return static_cast<std::uint8_t>((i / 8) >> (8 * (i % 8)));
}

// A slow hardware source: as the fake clock advances it owes bytes at a fixed rate
// and puts them into the pool when asked.
class CountingSource {
 public:
  CountingSource(const Clock& clock, std::uint64_t bytes_per_second)
      : clock_(clock), bytes_per_second_(bytes_per_second), start_(clock.Now()) {}

  void Produce(EntropyPool& pool) {
    const auto elapsed_ms = std::chrono::duration_cast<milliseconds>(clock_.Now() - start_).count();
    const std::uint64_t due = static_cast<std::uint64_t>(elapsed_ms) * bytes_per_second_ / 1000;
    std::vector<std::uint8_t> bytes;
    for (; produced_ < due; ++produced_) bytes.push_back(StreamByte(produced_));
    // The pool is sized so that a test never blocks here.
    ASSERT_LE(pool.Available() + bytes.size(), pool.capacity());
    ASSERT_EQ(pool.Put(bytes, never_), bytes.size());
  }
  std::uint64_t produced() const { return produced_; }

 private:
  const Clock& clock_;
  std::uint64_t bytes_per_second_;
  Clock::TimePoint start_;
  std::uint64_t produced_ = 0;
  Interrupt never_;
};

// Every byte any consumer got, in delivery order. Since the pool is FIFO and only
// FairShare takes from it, this must equal the start of the source's stream.
using DeliveryLog = std::vector<std::uint8_t>;

class TestConsumer : public Consumer {
 public:
  explicit TestConsumer(DeliveryLog* log) : log_(log) {}

  std::size_t Wanted() const override { return unlimited_ ? kUnlimited : wanted_; }
  void Deliver(std::span<const std::uint8_t> bytes) override {
    EXPECT_LE(bytes.size(), Wanted());
    EXPECT_FALSE(bytes.empty());
    log_->insert(log_->end(), bytes.begin(), bytes.end());
    received_ += bytes.size();
    if (!unlimited_) wanted_ -= std::min(wanted_, bytes.size());
    if (on_deliver_) on_deliver_();
  }

  void Ask(std::size_t bytes) { wanted_ += bytes; }
  void AskForever() { unlimited_ = true; }
  void OnDeliver(std::function<void()> hook) { on_deliver_ = std::move(hook); }
  std::size_t received() const { return received_; }

 private:
  static constexpr std::size_t kUnlimited = std::size_t{1} << 30;
  DeliveryLog* log_;
  std::size_t wanted_ = 0;
  bool unlimited_ = false;
  std::size_t received_ = 0;
  std::function<void()> on_deliver_;
};

// The event loop in miniature: time passes, the source adds what it owes, and the
// pool is pumped.
struct Simulation {
  explicit Simulation(std::uint64_t bytes_per_second, std::size_t pool_capacity = 1 << 20)
      : pool(pool_capacity), share(pool), source(clock, bytes_per_second) {}

  std::size_t Tick() {
    clock.Advance(kTick);
    source.Produce(pool);
    return share.Pump();
  }

  // Nothing lost, nothing duplicated, nothing reordered.
  void ExpectConservation() const {
    EXPECT_EQ(log.size() + pool.Available(), source.produced());
    bool matches = true;
    for (std::size_t i = 0; i < log.size() && matches; ++i) matches = log[i] == StreamByte(i);
    EXPECT_TRUE(matches) << "delivered bytes are not the pool's stream, in order";
  }

  FakeClock clock;
  EntropyPool pool;
  FairShare share;
  CountingSource source;
  DeliveryLog log;
};

double JainIndex(const std::vector<double>& shares) {
  double sum = 0;
  double sum_of_squares = 0;
  for (double x : shares) {
    sum += x;
    sum_of_squares += x * x;
  }
  return sum_of_squares == 0 ? 0
                             : sum * sum / (static_cast<double>(shares.size()) * sum_of_squares);
}

TEST(FairShareTest, EqualUnlimitedDemandsGetEqualShares) {
  struct Case {
    std::uint64_t bytes_per_second;
    std::size_t consumers;
  };
  // Supply per tick below, near and far above consumers * kMinQuantum.
  for (const Case c : {Case{10'000, 3}, Case{100'000, 5}, Case{123'457, 7}, Case{3'000'000, 6}}) {
    SCOPED_TRACE("bytes/s=" + std::to_string(c.bytes_per_second) +
                 " consumers=" + std::to_string(c.consumers));
    Simulation sim(c.bytes_per_second);
    std::vector<std::unique_ptr<TestConsumer>> consumers;
    for (std::size_t i = 0; i < c.consumers; ++i) {
      consumers.push_back(std::make_unique<TestConsumer>(&sim.log));
      consumers.back()->AskForever();
      sim.share.Activate(consumers.back().get());
    }
    for (int tick = 0; tick < 1000; ++tick) sim.Tick();

    std::vector<double> shares;
    for (const auto& consumer : consumers) {
      shares.push_back(static_cast<double>(consumer->received()));
    }
    EXPECT_GE(JainIndex(shares), 0.99);
    // Everything produced was handed out except the last turn's leftovers.
    EXPECT_LE(sim.pool.Available(), c.bytes_per_second / 100);
    sim.ExpectConservation();
  }
}

TEST(FairShareTest, JainIndexDetectsAnUnfairSplit) {
  EXPECT_DOUBLE_EQ(JainIndex({5, 5, 5}), 1.0);
  EXPECT_NEAR(JainIndex({1, 0, 0, 0}), 0.25, 1e-12);
}

TEST(FairShareTest, GreedyConsumerCannotStarveSmallRequestsWhenSupplyIsAmple) {
  Simulation sim(100'000);  // 1000 bytes per tick: room for the greedy one and 64 more.
  TestConsumer greedy(&sim.log);
  TestConsumer small(&sim.log);
  greedy.AskForever();
  sim.share.Activate(&greedy);  // First in line: the worst case for `small`.

  for (int tick = 0; tick < 200; ++tick) {
    small.Ask(64);
    sim.share.Activate(&small);
    const std::size_t before = small.received();
    sim.Tick();
    ASSERT_EQ(small.received(), before + 64) << "tick " << tick;
  }
  EXPECT_GT(greedy.received(), 200u * (1000 - 64) - 1000);
  sim.ExpectConservation();
}

TEST(FairShareTest, GreedyConsumerCannotStarveSmallRequestsWhenSupplyIsScarce) {
  constexpr std::size_t kBytesPerTick = 100;  // Less than one quantum per tick.
  Simulation sim(kBytesPerTick * 100);
  TestConsumer greedy(&sim.log);
  TestConsumer small(&sim.log);
  greedy.AskForever();
  sim.share.Activate(&greedy);

  std::size_t requests_served = 0;
  for (int request = 0; request < 100; ++request) {
    small.Ask(64);
    sim.share.Activate(&small);
    const std::size_t target = small.received() + 64;
    int ticks = 0;
    while (small.received() < target && ticks < 50) {
      sim.Tick();
      ++ticks;
    }
    // At worst the greedy consumer finishes one turn (one quantum) first.
    ASSERT_LE(static_cast<std::size_t>(ticks) * kBytesPerTick,
              FairShare::kMinQuantum + 64 + kBytesPerTick)
        << "request " << request;
    ++requests_served;
  }
  EXPECT_EQ(requests_served, 100u);
  sim.ExpectConservation();
}

TEST(FairShareTest, SmallDemandsGetExactlyWhatTheyAsk) {
  Simulation sim(1'000'000);
  std::vector<std::unique_ptr<TestConsumer>> consumers;
  const std::vector<std::size_t> asks = {1, 10, 64, 255, 256, 257, 1000, 5000};
  for (std::size_t ask : asks) {
    consumers.push_back(std::make_unique<TestConsumer>(&sim.log));
    consumers.back()->Ask(ask);
    sim.share.Activate(consumers.back().get());
  }
  sim.Tick();  // 10'000 bytes: more than the sum of the asks.
  for (std::size_t i = 0; i < asks.size(); ++i) EXPECT_EQ(consumers[i]->received(), asks[i]);
  EXPECT_EQ(sim.share.active_count(), 0u);  // Satisfied consumers leave the list.

  sim.Tick();
  for (std::size_t i = 0; i < asks.size(); ++i) EXPECT_EQ(consumers[i]->received(), asks[i]);
  sim.ExpectConservation();
}

TEST(FairShareTest, ActivateIsIdempotent) {
  Simulation sim(0);
  TestConsumer consumer(&sim.log);
  consumer.Ask(10);
  sim.share.Activate(&consumer);
  sim.share.Activate(&consumer);
  EXPECT_EQ(sim.share.active_count(), 1u);
  sim.share.Remove(&consumer);
  sim.share.Remove(&consumer);  // Removing an inactive consumer is harmless.
  EXPECT_EQ(sim.share.active_count(), 0u);
}

TEST(FairShareTest, PumpWithEmptyPoolKeepsConsumersWaiting) {
  Simulation sim(0);
  TestConsumer consumer(&sim.log);
  consumer.Ask(10);
  sim.share.Activate(&consumer);
  EXPECT_EQ(sim.Tick(), 0u);
  EXPECT_EQ(sim.share.active_count(), 1u);
}

TEST(FairShareTest, ConsumerWantingNothingLeavesWithoutDelivery) {
  Simulation sim(100'000);
  TestConsumer idle(&sim.log);
  sim.share.Activate(&idle);
  EXPECT_EQ(sim.Tick(), 0u);
  EXPECT_EQ(idle.received(), 0u);
  EXPECT_EQ(sim.share.active_count(), 0u);
  EXPECT_EQ(sim.pool.Available(), 1000u);
}

TEST(FairShareTest, RemovedConsumerGetsNothingMore) {
  Simulation sim(50'000);
  TestConsumer a(&sim.log);
  TestConsumer b(&sim.log);
  TestConsumer c(&sim.log);
  for (TestConsumer* consumer : {&a, &b, &c}) {
    consumer->AskForever();
    sim.share.Activate(consumer);
  }
  for (int tick = 0; tick < 50; ++tick) sim.Tick();
  const std::size_t b_before = b.received();
  const std::size_t a_before = a.received();
  EXPECT_GT(b_before, 0u);
  sim.share.Remove(&b);
  EXPECT_EQ(sim.share.active_count(), 2u);
  for (int tick = 0; tick < 50; ++tick) sim.Tick();
  EXPECT_EQ(b.received(), b_before);
  EXPECT_GT(a.received(), a_before);
  sim.ExpectConservation();
}

// A session that closes while being served: it removes itself and is destroyed
// inside Deliver(). Under ASan any later touch by Pump() is a use-after-free.
class ClosingConsumer : public Consumer {
 public:
  ClosingConsumer(FairShare* share, DeliveryLog* log, std::size_t* received)
      : share_(share), log_(log), received_(received) {}
  std::size_t Wanted() const override { return 1 << 20; }
  void Deliver(std::span<const std::uint8_t> bytes) override {
    log_->insert(log_->end(), bytes.begin(), bytes.end());
    *received_ += bytes.size();
    share_->Remove(this);
    delete this;
  }

 private:
  FairShare* share_;
  DeliveryLog* log_;
  std::size_t* received_;
};

TEST(FairShareTest, ConsumerRemovingAndDestroyingItselfInDeliverIsSafe) {
  Simulation sim(100'000);
  TestConsumer before(&sim.log);
  TestConsumer after(&sim.log);
  before.AskForever();
  after.AskForever();
  std::size_t closed_received = 0;
  sim.share.Activate(&before);
  sim.share.Activate(new ClosingConsumer(&sim.share, &sim.log, &closed_received));
  sim.share.Activate(&after);

  sim.Tick();
  EXPECT_GT(closed_received, 0u);
  EXPECT_EQ(sim.share.active_count(), 2u);
  const std::size_t closed_total = closed_received;
  for (int tick = 0; tick < 10; ++tick) sim.Tick();
  EXPECT_EQ(closed_received, closed_total);
  EXPECT_GT(after.received(), 0u);
  sim.ExpectConservation();
}

TEST(FairShareTest, ConsumerRemovingAnotherInDeliverIsSafe) {
  Simulation sim(100'000);
  TestConsumer killer(&sim.log);
  auto victim = std::make_unique<TestConsumer>(&sim.log);
  TestConsumer bystander(&sim.log);
  for (TestConsumer* consumer : {&killer, victim.get(), &bystander}) {
    consumer->AskForever();
    sim.share.Activate(consumer);
  }
  killer.OnDeliver([&] {
    if (victim) {
      sim.share.Remove(victim.get());
      victim.reset();
    }
  });
  for (int tick = 0; tick < 10; ++tick) sim.Tick();
  EXPECT_EQ(victim, nullptr);
  EXPECT_EQ(sim.share.active_count(), 2u);
  EXPECT_GT(bystander.received(), 0u);
  sim.ExpectConservation();
}

TEST(FairShareTest, DeliverMayActivateOthersAndNestedPumpIsANoOp) {
  Simulation sim(100'000);
  TestConsumer first(&sim.log);
  TestConsumer late(&sim.log);
  first.Ask(100);
  late.Ask(100);
  std::size_t nested_result = 1;
  first.OnDeliver([&] {
    sim.share.Activate(&late);
    sim.share.Activate(&first);  // Already active: must not be listed twice.
    nested_result = sim.share.Pump();
  });
  sim.share.Activate(&first);
  EXPECT_EQ(sim.Tick(), 200u);
  EXPECT_EQ(nested_result, 0u);
  EXPECT_EQ(first.received(), 100u);
  EXPECT_EQ(late.received(), 100u);
  EXPECT_EQ(sim.share.active_count(), 0u);
  sim.ExpectConservation();
}

TEST(FairShareTest, RemoveThenReactivateInsideDeliverKeepsOneEntry) {
  Simulation sim(100'000);
  TestConsumer consumer(&sim.log);
  consumer.Ask(300);
  bool first_delivery = true;
  consumer.OnDeliver([&] {
    if (!first_delivery) return;
    first_delivery = false;
    sim.share.Remove(&consumer);
    sim.share.Activate(&consumer);
  });
  sim.share.Activate(&consumer);
  sim.Tick();
  EXPECT_EQ(consumer.received(), 300u);
  EXPECT_EQ(sim.share.active_count(), 0u);
  sim.ExpectConservation();
}

// Deliver() that puts bytes straight back keeps the pool from ever emptying, and
// Wanted() never drops: Pump() must still return.
class RefillingConsumer : public Consumer {
 public:
  explicit RefillingConsumer(EntropyPool* pool) : pool_(pool) {}
  std::size_t Wanted() const override { return std::size_t{1} << 40; }
  void Deliver(std::span<const std::uint8_t> bytes) override {
    delivered_ += bytes.size();
    EXPECT_EQ(pool_->Put(bytes, never_), bytes.size());
  }
  std::size_t delivered() const { return delivered_; }

 private:
  EntropyPool* pool_;
  Interrupt never_;
  std::size_t delivered_ = 0;
};

TEST(FairShareTest, PumpIsBoundedWhenThePoolNeverEmpties) {
  EntropyPool pool(4096);
  FairShare share(pool);
  Interrupt never;
  const std::vector<std::uint8_t> bytes(4096, 7);
  ASSERT_EQ(pool.Put(bytes, never), bytes.size());
  RefillingConsumer consumer(&pool);
  share.Activate(&consumer);
  const std::size_t delivered = share.Pump();
  EXPECT_GT(delivered, 0u);
  EXPECT_LE(delivered, pool.capacity());
  EXPECT_EQ(consumer.delivered(), delivered);
  EXPECT_EQ(share.active_count(), 1u);
}

}  // namespace
}  // namespace rngmux
