#include "pool/share_group.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <vector>

#include "common/interrupt.h"
#include "pool/entropy_pool.h"
#include "support/fake_clock.h"

namespace rngmux {
namespace {

using std::chrono::milliseconds;

// A connection that wants bytes until it has `want` of them.
class Member : public Consumer {
 public:
  std::size_t Wanted() const override { return want_ - got_; }
  void Deliver(std::span<const std::uint8_t> bytes) override {
    EXPECT_LE(bytes.size(), Wanted());
    got_ += bytes.size();
  }
  void Ask(std::size_t n) { want_ += n; }
  std::size_t got() const { return got_; }

 private:
  std::size_t want_ = 0;
  std::size_t got_ = 0;
};

// A member that counts how often its demand is asked.
class CountedMember : public Member {
 public:
  std::size_t Wanted() const override {
    ++asked;
    return Member::Wanted();
  }
  mutable std::size_t asked = 0;
};

struct Fixture {
  Fixture() : pool(1 << 20), share(pool, clock) {}

  std::unique_ptr<ShareGroup> Group(ShareGroup::Limits limits = {}) {
    return std::make_unique<ShareGroup>(
        "g", limits, share, clock, [] {}, [this](Clock::TimePoint when) { wakes.push_back(when); });
  }
  void Fill(std::size_t n) {
    std::vector<std::uint8_t> bytes(n, 0x5a);
    Interrupt never;
    ASSERT_EQ(pool.Put(bytes, never), n);
  }

  FakeClock clock;
  EntropyPool pool;
  FairShare share;
  std::vector<Clock::TimePoint> wakes;
};

// A tenant with many connections gets one share, not one per connection.
TEST(ShareGroupTest, ManyConnectionsOfOneTenantShareOneSlot) {
  Fixture f;
  auto guest = f.Group();
  auto churner = f.Group();
  Member guest_conn;
  std::vector<std::unique_ptr<Member>> churner_conns;
  guest->Join(&guest_conn);
  guest_conn.Ask(1 << 20);
  guest->Activate(&guest_conn);
  for (int i = 0; i < 10; ++i) {
    churner_conns.push_back(std::make_unique<Member>());
    churner->Join(churner_conns.back().get());
    churner_conns.back()->Ask(1 << 20);
    churner->Activate(churner_conns.back().get());
  }
  for (int i = 0; i < 100; ++i) {
    f.Fill(1000);
    f.share.Pump();
  }
  std::size_t churner_total = 0;
  for (const auto& c : churner_conns) churner_total += c->got();
  EXPECT_NEAR(static_cast<double>(guest_conn.got()), static_cast<double>(churner_total),
              0.02 * 100'000);
  // Within the tenant, round-robin: no connection starves another.
  for (const auto& c : churner_conns) EXPECT_GT(c->got(), 2000u);
  for (const auto& c : churner_conns) churner->Leave(c.get());
  guest->Leave(&guest_conn);
}

// A connection that keeps the same demand outstanding (a client that asks again for
// every byte it gets, like 16 pipelined `02 FF`).
class Pipeliner : public Consumer {
 public:
  std::size_t Wanted() const override { return 16 * 255; }
  void Deliver(std::span<const std::uint8_t> bytes) override { got_ += bytes.size(); }
  std::size_t got() const { return got_; }

 private:
  std::size_t got_ = 0;
};

// Eight pipelining connections of one tenant on a slow source (the pool refills in
// pieces, a Deliver() at a time): each gets an equal part, not alternately a whole
// demand and the crumbs left over.
TEST(ShareGroupTest, ConnectionsOfOneTenantSplitSmallChunksEqually) {
  Fixture f;
  auto tenant = f.Group();
  std::vector<std::unique_ptr<Pipeliner>> conns;
  for (int i = 0; i < 8; ++i) {
    conns.push_back(std::make_unique<Pipeliner>());
    tenant->Join(conns.back().get());
    tenant->Activate(conns.back().get());
  }
  for (int i = 0; i < 100; ++i) {
    f.Fill(25000);
    f.share.Pump();
  }
  std::size_t low = SIZE_MAX, high = 0;
  for (const auto& c : conns) {
    low = std::min(low, c->got());
    high = std::max(high, c->got());
  }
  EXPECT_GT(low, 0u);
  EXPECT_LE(high - low, high / 20) << "between " << low << " and " << high << " bytes";
  for (const auto& c : conns) tenant->Leave(c.get());
}

TEST(ShareGroupTest, WeightIsTheGroupsWeight) {
  Fixture f;
  ShareGroup::Limits heavy_limits;
  heavy_limits.weight = 2;
  auto light = f.Group();
  auto heavy = f.Group(heavy_limits);
  EXPECT_EQ(heavy->Weight(), 2u);
  Member a;
  Member b;
  light->Join(&a);
  heavy->Join(&b);
  a.Ask(1 << 20);
  b.Ask(1 << 20);
  light->Activate(&a);
  heavy->Activate(&b);
  for (int i = 0; i < 100; ++i) {
    f.Fill(3000);
    f.share.Pump();
  }
  EXPECT_NEAR(static_cast<double>(b.got()) / static_cast<double>(a.got()), 2.0, 0.05);
  light->Leave(&a);
  heavy->Leave(&b);
}

TEST(ShareGroupTest, RateLimitBoundsBytesAndAsksToBeWoken) {
  Fixture f;
  ShareGroup::Limits limits;
  limits.rate_bytes_per_second = 1000;
  limits.burst_bytes = 4096;
  auto group = f.Group(limits);
  Member m;
  group->Join(&m);
  m.Ask(1 << 20);
  f.Fill(100'000);
  group->Activate(&m);
  f.share.Pump();
  EXPECT_EQ(m.got(), 4096u) << "the burst, no more";
  group->Activate(&m);
  ASSERT_EQ(f.wakes.size(), 1u) << "held back by the rate limit: a wake-up is asked for";
  f.clock.Advance(std::chrono::seconds(2));
  group->Wake();
  f.share.Pump();
  EXPECT_EQ(m.got(), 4096u + 2000u);
  // Over 10 s: at most rate x T + burst.
  for (int i = 0; i < 100; ++i) {
    f.clock.Advance(milliseconds(100));
    group->Wake();
    f.share.Pump();
  }
  EXPECT_LE(m.got(), 4096u + 12'000u);
  EXPECT_GE(m.got(), 4096u + 11'000u);
  // Non-blocking reads are charged to the same bucket.
  std::array<std::uint8_t, 255> buffer{};
  f.clock.Advance(std::chrono::seconds(60));
  std::size_t immediate = 0;
  for (int i = 0; i < 100; ++i) immediate += group->TakeImmediate(buffer);
  EXPECT_LE(immediate, 4096u);
  group->Leave(&m);
}

TEST(ShareGroupTest, OldestIsTheFirstToJoinStill) {
  Fixture f;
  auto group = f.Group();
  Member a;
  Member b;
  Member c;
  group->Join(&a);
  group->Join(&b);
  group->Join(&c);
  EXPECT_EQ(group->members(), 3u);
  EXPECT_EQ(group->Oldest(), &a);
  group->Leave(&a);
  EXPECT_EQ(group->Oldest(), &b);
  group->Leave(&b);
  group->Leave(&c);
  EXPECT_EQ(group->Oldest(), nullptr);
}

// A thousand guests of one tenant, each with one 02 40 waiting: a new request costs
// the group a look at that guest's demand, not a walk over every waiting guest, and
// the group's demand is counted up to what one step of the fair share moves.
TEST(ShareGroupTest, ARequestDoesNotWalkTheWaitingMembers) {
  Fixture f;
  auto group = f.Group();
  std::vector<std::unique_ptr<CountedMember>> guests;
  for (int i = 0; i < 1000; ++i) {
    guests.push_back(std::make_unique<CountedMember>());
    group->Join(guests.back().get());
    guests.back()->Ask(64);
    group->Activate(guests.back().get());
  }
  std::size_t asked_during_setup = 0;
  for (auto& guest : guests) asked_during_setup += guest->asked;
  for (auto& guest : guests) guest->asked = 0;
  CountedMember& last = *guests.back();
  last.Ask(64);
  group->Activate(&last);
  std::size_t asked_after = 0;
  for (int i = 0; i < 999; ++i) asked_after += guests[i]->asked;
  EXPECT_EQ(asked_after, 0u) << "the other 999 guests were asked again";
  EXPECT_LE(asked_during_setup, 1000u) << "each Activate() walked the guests before it";

  EXPECT_EQ(group->Wanted(), ShareGroup::kMaxWanted) << "1000 x 64 bytes, counted up to a step";
  std::size_t asked_for_total = 0;
  for (auto& guest : guests) asked_for_total += guest->asked;
  EXPECT_LE(asked_for_total, ShareGroup::kMaxWanted / 64 + 2);

  // Capped demand loses nothing: every guest is served in full.
  f.Fill(1000 * 64 + 64);
  while (f.share.Pump() > 0) {
  }
  std::size_t served = 0;
  for (auto& guest : guests) served += guest->got();
  EXPECT_EQ(served, 1000u * 64 + 64);
  EXPECT_EQ(group->Wanted(), 0u);
}

}  // namespace
}  // namespace rngmux
