#include "pool/fair_share.h"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/interrupt.h"
#include "pool/entropy_pool.h"
#include "support/fake_clock.h"

namespace rngmux {
namespace {

using std::chrono::microseconds;
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
  explicit Simulation(std::uint64_t bytes_per_second, std::size_t pool_capacity = 1 << 20,
                      Clock::Duration grace = milliseconds(50))
      : pool(pool_capacity), share(pool, clock, grace), source(clock, bytes_per_second) {}

  std::size_t Tick(Clock::Duration step = kTick) {
    clock.Advance(step);
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
  // The greedy one gets the rest, less a tick's worth and what stays set aside for
  // `small`, which asks every 10 ms, within its grace period.
  EXPECT_LE(sim.share.reserve_of(&small), FairShare::kMaxReserve);
  EXPECT_GT(greedy.received(), 200u * (1000 - 64) - 1000 - FairShare::kMaxReserve);
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

// QEMU's rng-egd without a lead keeps one request in flight: it sends 02 40, waits
// for the 64 bytes and sends the next 02 40 a fraction of a millisecond later. So
// when the slow source's bytes arrive, it has usually just been served and is not
// waiting, while a client that pipelines 02 FF always is. It must still get about
// half of the bytes, not 64 per arrival.
TEST(FairShareTest, OneRequestAtATimeClientGetsItsShareBesidePipeliningClient) {
  struct Case {
    std::uint64_t bytes_per_second;
    Clock::Duration step;  // bytes arrive in lumps of bytes_per_second * step
  };
  for (const Case c : {Case{20'480, milliseconds(200)},  // 4096-byte blocks: the daemon's case
                       Case{20'000, kTick},              // 200 bytes: less than a quantum
                       Case{100'000, kTick}}) {          // 1000 bytes
    SCOPED_TRACE("bytes/s=" + std::to_string(c.bytes_per_second) +
                 " step=" + std::to_string(c.step.count()) + "ns");
    Simulation sim(c.bytes_per_second);
    TestConsumer pipelining(&sim.log);
    TestConsumer one_at_a_time(&sim.log);
    pipelining.AskForever();
    sim.share.Activate(&pipelining);
    one_at_a_time.Ask(64);
    sim.share.Activate(&one_at_a_time);

    std::size_t requests = 0;
    for (int tick = 0; tick < 300; ++tick) {
      sim.Tick(c.step);
      // Each answered request is followed by the next one 100 us later, until one
      // has to wait for the source.
      for (int i = 0; i < 10'000 && one_at_a_time.Wanted() == 0; ++i) {
        sim.clock.Advance(microseconds(100));
        one_at_a_time.Ask(64);
        sim.share.Activate(&one_at_a_time);
        sim.share.Pump();
        ++requests;
      }
    }
    const auto strict = static_cast<double>(one_at_a_time.received());
    const auto greedy = static_cast<double>(pipelining.received());
    EXPECT_GE(strict / (strict + greedy), 0.4) << strict << " vs " << greedy;
    EXPECT_GE(JainIndex({strict, greedy}), 0.95) << strict << " vs " << greedy;
    EXPECT_GT(requests, 100u);
    sim.ExpectConservation();
  }
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
  sim.Tick();  // 10'000 bytes: more than the sum of the asks, a quantum of 1250 each.
  // Asks within the quantum are met at once. The satisfied consumers set the rest of
  // their quantum aside for a while, so the 5000-byte ask gets one quantum now ...
  for (std::size_t i = 0; i + 1 < asks.size(); ++i) EXPECT_EQ(consumers[i]->received(), asks[i]);
  EXPECT_GE(consumers.back()->received(), 10'000u / asks.size());
  // ... and the rest a few ticks later, as bytes keep coming.
  for (int tick = 0; tick < 5 && consumers.back()->received() < asks.back(); ++tick) sim.Tick();
  for (std::size_t i = 0; i < asks.size(); ++i) EXPECT_EQ(consumers[i]->received(), asks[i]);
  EXPECT_EQ(sim.share.active_count(), 0u);  // Satisfied consumers stop waiting,
  EXPECT_GT(sim.share.idle_count(), 0u);    // stay listed for the grace period
  sim.Tick(milliseconds(50));
  EXPECT_EQ(sim.share.idle_count(), 0u);      // and then leave,
  EXPECT_EQ(sim.share.reserved_bytes(), 0u);  // releasing what they had set aside.

  sim.Tick();
  for (std::size_t i = 0; i < asks.size(); ++i) EXPECT_EQ(consumers[i]->received(), asks[i]);
  sim.ExpectConservation();
}

// A greedy consumer and one that was just served 64 of the 1000 bytes of a tick:
// the latter keeps the rest of its quantum (436 bytes) set aside.
struct ReserveFixture {
  explicit ReserveFixture(std::size_t pool_capacity = 1 << 20) : sim(100'000, pool_capacity) {
    greedy.AskForever();
    sim.share.Activate(&greedy);
    strict.Ask(64);
    sim.share.Activate(&strict);
    sim.Tick();
  }
  Simulation sim;
  TestConsumer greedy{&sim.log};
  TestConsumer strict{&sim.log};
};

TEST(FairShareTest, ServedConsumerKeepsTheRestOfItsQuantumSetAside) {
  ReserveFixture f;
  EXPECT_EQ(f.strict.received(), 64u);
  EXPECT_EQ(f.greedy.received(), 500u);
  EXPECT_EQ(f.sim.share.reserve_of(&f.strict), 500u - 64u);
  EXPECT_EQ(f.sim.share.reserved_bytes(), 500u - 64u);
  EXPECT_EQ(f.sim.pool.Available(), 500u - 64u);  // The greedy one took every free byte.
  EXPECT_EQ(f.sim.share.active_count(), 1u);
  EXPECT_EQ(f.sim.share.idle_count(), 1u);
  f.sim.ExpectConservation();
}

TEST(FairShareTest, ReturningConsumerIsServedFromItsReserveFirst) {
  ReserveFixture f;
  const std::size_t greedy_before = f.greedy.received();
  for (int request = 0; request < 6; ++request) {
    f.sim.clock.Advance(microseconds(100));
    f.strict.Ask(64);
    f.sim.share.Activate(&f.strict);
    EXPECT_EQ(f.sim.share.Pump(), 64u);  // No new bytes: these come from the reserve.
  }
  EXPECT_EQ(f.strict.received(), 7u * 64u);
  EXPECT_EQ(f.greedy.received(), greedy_before);
  EXPECT_EQ(f.sim.share.reserve_of(&f.strict), 500u - 7u * 64u);
  // The 52 bytes left do not cover the next request: it takes them and waits for
  // the rest in turn.
  f.strict.Ask(64);
  f.sim.share.Activate(&f.strict);
  EXPECT_EQ(f.sim.share.Pump(), 52u);
  EXPECT_EQ(f.sim.share.reserved_bytes(), 0u);
  EXPECT_EQ(f.sim.share.active_count(), 2u);
  f.sim.Tick();
  EXPECT_EQ(f.strict.received(), 8u * 64u);
  f.sim.ExpectConservation();
}

TEST(FairShareTest, ReserveIsReleasedAfterGraceWhenConsumerStopsAsking) {
  ReserveFixture f;
  const std::size_t reserve = f.sim.share.reserve_of(&f.strict);
  ASSERT_GT(reserve, 0u);
  // Within the grace period the bytes stay set aside while the greedy one waits.
  f.sim.clock.Advance(milliseconds(40));
  EXPECT_EQ(f.sim.share.Pump(), 0u);
  EXPECT_EQ(f.sim.share.reserve_of(&f.strict), reserve);
  // After it, the next pump drops the idle consumer and hands its bytes out.
  f.sim.clock.Advance(milliseconds(10));
  const std::size_t greedy_before = f.greedy.received();
  EXPECT_EQ(f.sim.share.Pump(), reserve);
  EXPECT_EQ(f.greedy.received(), greedy_before + reserve);
  EXPECT_EQ(f.strict.received(), 64u);
  EXPECT_EQ(f.sim.share.reserved_bytes(), 0u);
  EXPECT_EQ(f.sim.share.idle_count(), 0u);
  EXPECT_EQ(f.sim.pool.Available(), 0u);
  // Asking again later, it is a newcomer and is served in turn.
  f.strict.Ask(64);
  f.sim.share.Activate(&f.strict);
  f.sim.Tick();
  EXPECT_EQ(f.strict.received(), 128u);
  f.sim.ExpectConservation();
}

TEST(FairShareTest, ActivateAfterGraceReleasesTheStaleReserve) {
  ReserveFixture f;
  f.sim.clock.Advance(milliseconds(60));
  f.strict.Ask(64);
  f.sim.share.Activate(&f.strict);  // Too late: listed afresh, without a reserve.
  EXPECT_EQ(f.sim.share.reserved_bytes(), 0u);
  EXPECT_EQ(f.sim.share.active_count(), 2u);
  f.sim.share.Pump();  // The released bytes are split in turn, not given back whole.
  EXPECT_EQ(f.strict.received(), 128u);
  EXPECT_GT(f.greedy.received(), 500u);
  f.sim.ExpectConservation();
}

TEST(FairShareTest, RemovedConsumersReserveIsReleasedAtOnce) {
  ReserveFixture f;
  const std::size_t reserve = f.sim.share.reserve_of(&f.strict);
  ASSERT_GT(reserve, 0u);
  f.sim.share.Remove(&f.strict);
  EXPECT_EQ(f.sim.share.reserved_bytes(), 0u);
  EXPECT_EQ(f.sim.share.reserve_of(&f.strict), 0u);
  EXPECT_EQ(f.sim.share.idle_count(), 0u);
  const std::size_t greedy_before = f.greedy.received();
  EXPECT_EQ(f.sim.share.Pump(), reserve);  // No time has passed.
  EXPECT_EQ(f.greedy.received(), greedy_before + reserve);
  f.sim.ExpectConservation();
}

TEST(FairShareTest, ReservesShrinkWhenBytesLeaveThePoolByAnotherPath) {
  ReserveFixture f;
  ASSERT_EQ(f.sim.pool.Available(), 436u);
  // A 0x01 read takes straight from the pool, reserved or not.
  auto take_directly = [&](std::size_t n) {
    std::vector<std::uint8_t> out(n);
    out.resize(f.sim.pool.Take(out));
    f.sim.log.insert(f.sim.log.end(), out.begin(), out.end());
  };
  take_directly(300);
  EXPECT_EQ(f.sim.share.Pump(), 0u);  // Nothing free for the greedy one ...
  EXPECT_LE(f.sim.share.reserved_bytes(), f.sim.pool.Available());  // ... nor promised twice.
  EXPECT_GE(f.sim.share.reserved_bytes(), 135u);
  take_directly(1000);
  EXPECT_EQ(f.sim.share.Pump(), 0u);
  EXPECT_EQ(f.sim.share.reserved_bytes(), 0u);
  // The returning consumer finds no reserve and is served in turn.
  f.strict.Ask(64);
  f.sim.share.Activate(&f.strict);
  f.sim.Tick();
  EXPECT_EQ(f.strict.received(), 128u);
  f.sim.ExpectConservation();
}

TEST(FairShareTest, ReservesStayWithinTheirCapsAndNeverFillThePool) {
  {
    SCOPED_TRACE("one consumer");
    Simulation sim(1'000'000);  // 10'000 bytes per tick: a quantum of 5000.
    TestConsumer greedy(&sim.log);
    TestConsumer strict(&sim.log);
    greedy.AskForever();
    sim.share.Activate(&greedy);
    for (int tick = 0; tick < 20; ++tick) {
      strict.Ask(64);
      sim.share.Activate(&strict);
      sim.Tick();
      ASSERT_EQ(sim.share.reserve_of(&strict), FairShare::kMaxReserve);
    }
    EXPECT_EQ(strict.received(), 20u * 64u);
    sim.ExpectConservation();
  }
  {
    SCOPED_TRACE("in all");
    constexpr std::size_t kCapacity = 16 * 1024;
    // 8000 bytes per tick. The source asserts that each tick's bytes fit: reserves
    // must leave producers room.
    Simulation sim(800'000, kCapacity);
    TestConsumer greedy(&sim.log);
    greedy.AskForever();
    sim.share.Activate(&greedy);
    std::vector<std::unique_ptr<TestConsumer>> intermittent;
    for (int i = 0; i < 6; ++i) intermittent.push_back(std::make_unique<TestConsumer>(&sim.log));
    bool total_cap_reached = false;
    for (int tick = 0; tick < 200; ++tick) {
      for (const auto& consumer : intermittent) {
        if (tick % 2 == 0) {  // Every 20 ms: within the grace period.
          consumer->Ask(64);
          sim.share.Activate(consumer.get());
        }
      }
      sim.Tick();
      std::size_t sum = 0;
      for (const auto& consumer : intermittent) {
        ASSERT_LE(sim.share.reserve_of(consumer.get()), FairShare::kMaxReserve);
        sum += sim.share.reserve_of(consumer.get());
      }
      ASSERT_EQ(sim.share.reserved_bytes(), sum);
      ASSERT_LE(sim.share.reserved_bytes(), kCapacity / 2);
      // Everything else went to the waiting consumer: reserves alone stay.
      ASSERT_EQ(sim.pool.Available(), sim.share.reserved_bytes());
      total_cap_reached = total_cap_reached || sim.share.reserved_bytes() == kCapacity / 2;
    }
    EXPECT_TRUE(total_cap_reached);
    for (const auto& consumer : intermittent) EXPECT_EQ(consumer->received(), 100u * 64u);
    sim.ExpectConservation();
  }
}

TEST(FairShareTest, ZeroGraceMeansNoReserves) {
  Simulation sim(100'000, 1 << 20, Clock::Duration::zero());
  TestConsumer greedy(&sim.log);
  TestConsumer strict(&sim.log);
  greedy.AskForever();
  sim.share.Activate(&greedy);
  strict.Ask(64);
  sim.share.Activate(&strict);
  sim.Tick();
  EXPECT_EQ(strict.received(), 64u);
  EXPECT_EQ(greedy.received(), 1000u - 64u);  // Plain DRR: satisfied consumers leave.
  EXPECT_EQ(sim.share.reserved_bytes(), 0u);
  EXPECT_EQ(sim.share.idle_count(), 0u);
  EXPECT_EQ(sim.share.active_count(), 1u);
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
  // 10'000 bytes: `first` sets at most kMaxReserve of its quantum aside, which leaves
  // free bytes for `late` in the same pump.
  Simulation sim(1'000'000);
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

// Asks for `per_request` bytes `requests` times (re-asking from inside Deliver once a
// request is met) and, on delivery number `close_on`, removes and destroys itself.
class ReturningClosingConsumer : public Consumer {
 public:
  ReturningClosingConsumer(FairShare* share, DeliveryLog* log, int close_on)
      : share_(share), log_(log), close_on_(close_on) {}
  std::size_t Wanted() const override { return wanted_; }
  void Deliver(std::span<const std::uint8_t> bytes) override {
    EXPECT_LE(bytes.size(), wanted_);
    log_->insert(log_->end(), bytes.begin(), bytes.end());
    wanted_ -= bytes.size();
    if (++deliveries_ == close_on_) {
      share_->Remove(this);
      delete this;
    }
  }
  void Ask(std::size_t n) {
    wanted_ += n;
    share_->Activate(this);
  }

 private:
  FairShare* share_;
  DeliveryLog* log_;
  int close_on_;
  int deliveries_ = 0;
  std::size_t wanted_ = 0;
};

TEST(FairShareTest, ConsumerServedFromItsReserveMayRemoveAndDestroyItself) {
  Simulation sim(100'000);
  TestConsumer greedy(&sim.log);
  greedy.AskForever();
  sim.share.Activate(&greedy);
  auto* closing = new ReturningClosingConsumer(&sim.share, &sim.log, 2);
  closing->Ask(64);
  sim.Tick();
  const std::size_t reserve = sim.share.reserved_bytes();
  ASSERT_EQ(reserve, 500u - 64u);
  const std::size_t greedy_before = greedy.received();
  closing->Ask(64);  // Served from its reserve; it goes away inside Deliver().
  // Under ASan, any later touch is a use-after-free. What it leaves set aside goes
  // to the greedy one in the same pump.
  EXPECT_EQ(sim.share.Pump(), reserve);
  EXPECT_EQ(greedy.received(), greedy_before + reserve - 64u);
  EXPECT_EQ(sim.share.reserved_bytes(), 0u);
  EXPECT_EQ(sim.share.idle_count(), 0u);
  EXPECT_EQ(sim.share.active_count(), 1u);
  sim.ExpectConservation();
}

TEST(FairShareTest, IdleConsumersMayBeRemovedOrExpireInsideDeliver) {
  Simulation sim(100'000);
  TestConsumer greedy(&sim.log);
  auto victim = std::make_unique<TestConsumer>(&sim.log);
  TestConsumer stale(&sim.log);
  TestConsumer newcomer(&sim.log);
  greedy.AskForever();
  sim.share.Activate(&greedy);
  for (TestConsumer* consumer : {victim.get(), &stale}) {
    consumer->Ask(64);
    sim.share.Activate(consumer);
  }
  sim.Tick();
  ASSERT_EQ(sim.share.idle_count(), 2u);
  ASSERT_GT(sim.share.reserve_of(victim.get()), 0u);
  ASSERT_GT(sim.share.reserve_of(&stale), 0u);
  bool fired = false;
  greedy.OnDeliver([&] {
    if (fired) return;
    fired = true;
    sim.share.Remove(victim.get());  // Idle, with a reserve: released at once.
    victim.reset();
    sim.clock.Advance(milliseconds(60));  // `stale` is now past its grace period;
    newcomer.Ask(64);
    sim.share.Activate(&newcomer);  // this Activate() drops it, mid-pump.
    EXPECT_EQ(sim.share.reserved_bytes(), 0u);
  });
  sim.Tick();
  EXPECT_TRUE(fired);
  EXPECT_EQ(sim.share.reserve_of(&stale), 0u);
  EXPECT_EQ(newcomer.received(), 64u);
  for (int tick = 0; tick < 10; ++tick) sim.Tick();
  EXPECT_EQ(stale.received(), 64u);
  EXPECT_EQ(sim.share.active_count(), 1u);
  EXPECT_EQ(sim.share.idle_count(), 0u);  // `newcomer` expired too, by now.
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

namespace rngmux {
namespace {

class WeightedConsumer : public TestConsumer {
 public:
  WeightedConsumer(DeliveryLog* log, std::size_t weight) : TestConsumer(log), weight_(weight) {}
  std::size_t Weight() const override { return weight_; }

 private:
  std::size_t weight_;
};

TEST(FairShareWeightTest, WeightsSplitAShortSupplyInProportion) {
  Simulation sim(20'000);
  WeightedConsumer light(&sim.log, 1);
  WeightedConsumer heavy(&sim.log, 3);
  light.AskForever();
  heavy.AskForever();
  sim.share.Activate(&light);
  sim.share.Activate(&heavy);
  for (int i = 0; i < 500; ++i) sim.Tick();
  const double ratio =
      static_cast<double>(heavy.received()) / static_cast<double>(light.received());
  EXPECT_NEAR(ratio, 3.0, 0.15) << "heavy=" << heavy.received() << " light=" << light.received();
  sim.ExpectConservation();
}

// A client that only sends 01 FF must not get ahead of one waiting on 02 requests:
// under contention its non-blocking reads get what its turns set aside.
TEST(FairShareImmediateTest, NonBlockingReadsGetNoMoreThanTheirShare) {
  Simulation sim(20'000);
  TestConsumer waiting(&sim.log);
  waiting.AskForever();
  sim.share.Activate(&waiting);
  TestConsumer reader(&sim.log);  // Wanted() == 0: it never blocks
  std::size_t reader_got = 0;
  std::array<std::uint8_t, 255> buffer{};
  for (int i = 0; i < 500; ++i) {
    sim.clock.Advance(kTick);
    sim.source.Produce(sim.pool);
    // Several 01 FF per tick, before and after the pump.
    for (int j = 0; j < 4; ++j) reader_got += sim.share.TakeImmediate(&reader, buffer);
    sim.share.Pump();
  }
  const double total = static_cast<double>(reader_got + waiting.received());
  EXPECT_GT(waiting.received(), 0.45 * total) << "reader=" << reader_got;
  EXPECT_GT(reader_got, 0.3 * total) << "the reader's share was not set aside for it";
}

// A guest (one 02 40 in flight) takes a moment to send its next request after each
// reply. A client spinning on 01 FF meanwhile must not take the bytes that arrive in
// that moment: the guest is listed as idle, and a non-blocking read that finds free
// bytes sets the idle consumers' parts aside, as a round of Pump() would have done.
TEST(FairShareImmediateTest, NonBlockingReaderCannotTakeABrieflyAbsentGuestsShare) {
  Simulation sim(10'000);
  TestConsumer guest(&sim.log);
  TestConsumer reader(&sim.log);  // Wanted() == 0: it never blocks
  std::size_t reader_got = 0;
  std::array<std::uint8_t, 255> buffer{};
  guest.Ask(64);
  sim.share.Activate(&guest);
  int asks_again_in = -1;  // ticks until the guest's next request; -1: one is in flight
  for (int tick = 0; tick < 4000; ++tick) {
    sim.clock.Advance(milliseconds(1));
    sim.source.Produce(sim.pool);
    for (int j = 0; j < 4; ++j) reader_got += sim.share.TakeImmediate(&reader, buffer);
    if (asks_again_in == 0) {
      guest.Ask(64);
      sim.share.Activate(&guest);
      asks_again_in = -1;
    } else if (asks_again_in > 0) {
      --asks_again_in;
    }
    sim.share.Pump();
    if (asks_again_in < 0 && guest.Wanted() == 0) asks_again_in = 3;  // 3 ms to react
  }
  const double total = static_cast<double>(reader_got + guest.received());
  EXPECT_GT(guest.received(), 0.45 * total) << "reader=" << reader_got;
  EXPECT_GT(reader_got, 0.45 * total);
  EXPECT_GT(total, 0.9 * static_cast<double>(sim.source.produced()));
}

TEST(FairShareImmediateTest, UncontendedNonBlockingReadsTakeWhatIsThere) {
  Simulation sim(10'000);
  TestConsumer reader(&sim.log);
  sim.clock.Advance(milliseconds(100));
  sim.source.Produce(sim.pool);
  std::array<std::uint8_t, 255> buffer{};
  EXPECT_EQ(sim.share.TakeImmediate(&reader, buffer), 255u);
}

}  // namespace
}  // namespace rngmux
