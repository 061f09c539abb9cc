#include "vhost/vhost_user_device.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>

#include <cstring>
#include <vector>

#include "common/interrupt.h"
#include "pool/entropy_pool.h"
#include "pool/fair_share.h"
#include "support/fake_clock.h"
#include "vhost/fake_guest_ring.h"

namespace rngmux {
namespace {

constexpr std::uint16_t kWrite = 2;
constexpr std::uint64_t kQemu = FakeGuestRing::kQemuBase;

// Hands out the fake ring's memory for any descriptor.
class FakeMapper final : public RegionMapper {
 public:
  explicit FakeMapper(FakeGuestRing& ring) : ring_(ring) {}
  class View final : public Mapping {
   public:
    explicit View(std::uint8_t* p) : p_(p) {}
    std::uint8_t* region() const override { return p_; }

   private:
    std::uint8_t* p_;
  };
  Result<std::unique_ptr<Mapping>> Map(int, std::uint64_t size, std::uint64_t offset) override {
    if (size + offset > FakeGuestRing::kBytes) return Status::Error("too big");
    ++maps;
    return std::unique_ptr<Mapping>(new View(ring_.at(offset)));
  }
  int maps = 0;

 private:
  FakeGuestRing& ring_;
};

std::vector<UniqueFd> Fds(std::size_t n) {
  std::vector<UniqueFd> fds;
  for (std::size_t i = 0; i < n; ++i) fds.emplace_back(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  return fds;
}

VhostUserMessage Msg(VhostUserRequest request, std::uint32_t flags = 1) {
  VhostUserMessage m;
  m.request = static_cast<std::uint32_t>(request);
  m.flags = flags;
  return m;
}

VhostUserMessage State(VhostUserRequest request, std::uint32_t num) {
  VhostUserMessage m = Msg(request);
  m.state_num = num;
  return m;
}

std::uint64_t ReplyU64(const VhostUserDevice::Outcome& o) {
  EXPECT_TRUE(o.reply.has_value());
  std::uint64_t v = 0;
  if (o.reply) std::memcpy(&v, o.reply->bytes.data() + 12, 8);
  return v;
}

class VhostUserDeviceTest : public ::testing::Test {
 protected:
  FakeGuestRing ring_{4};
  FakeMapper mapper_{ring_};
  VhostUserDevice device_{mapper_};

  VhostUserDevice::Outcome Send(const VhostUserMessage& m, std::size_t fds = 0) {
    return device_.Handle(m, Fds(fds));
  }
  VhostUserMessage MemTable(std::uint32_t flags = 1 | kVhostUserFlagNeedReply) {
    VhostUserMessage m = Msg(VhostUserRequest::kSetMemTable, flags);
    m.region_count = 1;
    m.regions[0] = {FakeGuestRing::kGuestBase, FakeGuestRing::kBytes, kQemu, 0};
    return m;
  }
  VhostUserMessage Addr(std::uint64_t desc_offset = FakeGuestRing::kDescOffset) {
    VhostUserMessage m = Msg(VhostUserRequest::kSetVringAddr);
    m.addr.desc = kQemu + desc_offset;
    m.addr.avail = kQemu + FakeGuestRing::kAvailOffset;
    m.addr.used = kQemu + FakeGuestRing::kUsedOffset;
    return m;
  }
  // The driver-start sequence QEMU 7.2 sends (after negotiation).
  void StartRing(std::uint32_t base = 0) {
    ASSERT_TRUE(Send(MemTable(), 1).status.ok());
    ASSERT_TRUE(Send(State(VhostUserRequest::kSetVringNum, 4)).status.ok());
    ASSERT_TRUE(Send(State(VhostUserRequest::kSetVringBase, base)).status.ok());
    ASSERT_TRUE(Send(Addr()).status.ok());
    ASSERT_TRUE(Send(Msg(VhostUserRequest::kSetVringKick), 1).status.ok());
    ASSERT_TRUE(Send(State(VhostUserRequest::kSetVringEnable, 1)).status.ok());
    ASSERT_TRUE(Send(Msg(VhostUserRequest::kSetVringCall), 1).status.ok());
  }
};

TEST_F(VhostUserDeviceTest, Negotiation) {
  EXPECT_EQ(ReplyU64(Send(Msg(VhostUserRequest::kGetFeatures))), 0x170000000ull);
  EXPECT_EQ(ReplyU64(Send(Msg(VhostUserRequest::kGetProtocolFeatures))), 0x9u);
  EXPECT_FALSE(Send(Msg(VhostUserRequest::kSetProtocolFeatures)).reply);
  EXPECT_EQ(ReplyU64(Send(Msg(VhostUserRequest::kGetQueueNum))), 1u);
  VhostUserMessage features = Msg(VhostUserRequest::kSetFeatures);
  features.u64 = 0x170000000ull;
  EXPECT_TRUE(Send(features).status.ok());
  EXPECT_EQ(device_.acked_features(), 0x170000000ull);
  features.u64 |= VhostUserDevice::kFeatureRingPacked;
  EXPECT_FALSE(Send(features).status.ok());
}

TEST_F(VhostUserDeviceTest, ServesOneBufferWithExactUsedLength) {
  VhostUserMessage protocol = Msg(VhostUserRequest::kSetProtocolFeatures);
  protocol.u64 = VhostUserDevice::kOfferedProtocolFeatures;
  ASSERT_TRUE(Send(protocol).status.ok());
  StartRing();
  ASSERT_TRUE(device_.running());
  bool signal = false;
  ASSERT_TRUE(device_.TakeBuffer(&signal).ok());
  EXPECT_EQ(device_.Wanted(), 0u);
  ring_.SetDesc(1, FakeGuestRing::kGuestBase + FakeGuestRing::kDataOffset, 10, kWrite, 0);
  ring_.Offer(1);
  ASSERT_TRUE(device_.TakeBuffer(&signal).ok());
  EXPECT_EQ(device_.Wanted(), 10u);
  const std::uint8_t bytes[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_TRUE(device_.Fill(bytes));
  EXPECT_EQ(ring_.UsedIdx(), 1);
  EXPECT_EQ(ring_.Used(0), std::make_pair(1u, 10u));
  EXPECT_EQ(std::memcmp(ring_.at(FakeGuestRing::kDataOffset), bytes, 10), 0);
  EXPECT_EQ(device_.Wanted(), 0u);
  EXPECT_EQ(device_.bytes_written(), 10u);
}

TEST_F(VhostUserDeviceTest, BufferIsUsedOnlyOnceFull) {
  // Debian 12's guest kernel hangs on the read after a 33..63-byte fill of its
  // 64-byte buffer, so bytes that come in pieces wait in the buffer until it is full.
  StartRing();
  ring_.SetDesc(2, FakeGuestRing::kGuestBase + FakeGuestRing::kDataOffset, 64, kWrite, 0);
  ring_.Offer(2);
  bool signal = false;
  ASSERT_TRUE(device_.TakeBuffer(&signal).ok());
  std::uint8_t bytes[64];
  for (std::size_t i = 0; i < sizeof bytes; ++i) bytes[i] = static_cast<std::uint8_t>(i + 1);
  EXPECT_FALSE(device_.Fill(std::span(bytes).first(63)));
  EXPECT_EQ(ring_.UsedIdx(), 0);  // not handed back short
  EXPECT_EQ(device_.Wanted(), 1u);
  EXPECT_EQ(device_.buffers_used(), 0u);
  ASSERT_TRUE(device_.TakeBuffer(&signal).ok());  // still held: nothing else is taken
  EXPECT_EQ(device_.Wanted(), 1u);
  EXPECT_TRUE(device_.Fill(std::span(bytes).subspan(63)));
  EXPECT_EQ(ring_.UsedIdx(), 1);
  EXPECT_EQ(ring_.Used(0), std::make_pair(2u, 64u));
  EXPECT_EQ(std::memcmp(ring_.at(FakeGuestRing::kDataOffset), bytes, sizeof bytes), 0);
  EXPECT_EQ(device_.Wanted(), 0u);
  EXPECT_EQ(device_.bytes_written(), 64u);
  EXPECT_EQ(device_.buffers_used(), 1u);
}

TEST_F(VhostUserDeviceTest, PiecesFillAChainAcrossItsSegments) {
  StartRing();
  const std::uint64_t data = FakeGuestRing::kGuestBase + FakeGuestRing::kDataOffset;
  constexpr std::uint16_t kNext = 1;
  ring_.SetDesc(0, data, 16, kWrite | kNext, 1);
  ring_.SetDesc(1, data + 0x100, 48, kWrite, 0);
  ring_.Offer(0);
  bool signal = false;
  ASSERT_TRUE(device_.TakeBuffer(&signal).ok());
  ASSERT_EQ(device_.Wanted(), 64u);
  std::uint8_t bytes[64];
  for (std::size_t i = 0; i < sizeof bytes; ++i) bytes[i] = static_cast<std::uint8_t>(0x80 + i);
  EXPECT_FALSE(device_.Fill(std::span(bytes).first(10)));
  EXPECT_FALSE(device_.Fill(std::span(bytes).subspan(10, 20)));  // crosses into segment 2
  EXPECT_EQ(device_.Wanted(), 34u);
  EXPECT_TRUE(device_.Fill(std::span(bytes).subspan(30)));
  EXPECT_EQ(ring_.UsedIdx(), 1);
  EXPECT_EQ(ring_.Used(0), std::make_pair(0u, 64u));
  EXPECT_EQ(std::memcmp(ring_.at(FakeGuestRing::kDataOffset), bytes, 16), 0);
  EXPECT_EQ(std::memcmp(ring_.at(FakeGuestRing::kDataOffset + 0x100), bytes + 16, 48), 0);
}

// The device as the connection puts it in the fair share: wants what its held
// buffer still takes, and takes the next buffer once one is used.
class DeviceConsumer final : public Consumer {
 public:
  explicit DeviceConsumer(VhostUserDevice& device) : device_(device) {}
  std::size_t Wanted() const override { return device_.Wanted(); }
  void Deliver(std::span<const std::uint8_t> bytes) override {
    if (device_.Fill(bytes)) ++signals;
    bool signal = false;
    EXPECT_TRUE(device_.TakeBuffer(&signal).ok());
  }
  int signals = 0;

 private:
  VhostUserDevice& device_;
};

TEST_F(VhostUserDeviceTest, SlowSourceNeverHandsTheGuestAShortBuffer) {
  // The integration case in miniature: a nearly empty pool gives the device fewer
  // bytes than its buffer takes (63 of 64, then 1), as happens all the time when
  // several guests share a slow source.
  StartRing();
  ring_.SetDesc(0, FakeGuestRing::kGuestBase + FakeGuestRing::kDataOffset, 64, kWrite, 0);
  ring_.Offer(0);
  bool signal = false;
  ASSERT_TRUE(device_.TakeBuffer(&signal).ok());
  FakeClock clock;
  EntropyPool pool(4096);
  FairShare share(pool, clock);
  DeviceConsumer consumer(device_);
  share.Activate(&consumer);
  Interrupt never;
  std::vector<std::uint8_t> bytes(63, 0xa5);
  ASSERT_EQ(pool.Put(bytes, never), 63u);
  EXPECT_EQ(share.Pump(), 63u);
  EXPECT_EQ(ring_.UsedIdx(), 0);
  EXPECT_EQ(consumer.signals, 0);
  EXPECT_EQ(share.active_count(), 1u);  // still waits for its last byte
  bytes.assign(1, 0x5a);
  ASSERT_EQ(pool.Put(bytes, never), 1u);
  EXPECT_EQ(share.Pump(), 1u);
  EXPECT_EQ(ring_.UsedIdx(), 1);
  EXPECT_EQ(ring_.Used(0), std::make_pair(0u, 64u));
  EXPECT_EQ(consumer.signals, 1);
  EXPECT_EQ(ring_.at(FakeGuestRing::kDataOffset)[62], 0xa5);
  EXPECT_EQ(ring_.at(FakeGuestRing::kDataOffset)[63], 0x5a);
}

TEST_F(VhostUserDeviceTest, StopGivesBackTheHeldBuffer) {
  StartRing();
  ring_.SetDesc(0, FakeGuestRing::kGuestBase + FakeGuestRing::kDataOffset, 64, kWrite, 0);
  ring_.Offer(0);
  bool signal = false;
  ASSERT_TRUE(device_.TakeBuffer(&signal).ok());
  ASSERT_EQ(device_.Wanted(), 64u);
  const auto reply = Send(State(VhostUserRequest::kGetVringBase, 0));
  ASSERT_TRUE(reply.reply);
  std::uint32_t base = 99;
  std::memcpy(&base, reply.reply->bytes.data() + 16, 4);
  EXPECT_EQ(base, 0u);  // not 1: the buffer was never filled
  EXPECT_FALSE(device_.running());
  EXPECT_EQ(device_.Wanted(), 0u);
  EXPECT_EQ(device_.kick_fd(), -1);
}

TEST_F(VhostUserDeviceTest, StopGivesBackAPartlyFilledBufferAndRestartsItEmpty) {
  StartRing();
  ring_.SetDesc(0, FakeGuestRing::kGuestBase + FakeGuestRing::kDataOffset, 64, kWrite, 0);
  ring_.Offer(0);
  bool signal = false;
  ASSERT_TRUE(device_.TakeBuffer(&signal).ok());
  const std::uint8_t bytes[40] = {};
  EXPECT_FALSE(device_.Fill(bytes));
  ASSERT_TRUE(Send(State(VhostUserRequest::kSetVringEnable, 0)).status.ok());
  EXPECT_EQ(ring_.UsedIdx(), 0);  // given back, not used short
  ASSERT_TRUE(Send(State(VhostUserRequest::kSetVringEnable, 1)).status.ok());
  ASSERT_TRUE(device_.TakeBuffer(&signal).ok());
  EXPECT_EQ(device_.Wanted(), 64u);  // the same buffer again, from its start
}

TEST_F(VhostUserDeviceTest, RestartedConnectionStartsWithMemTableAndGetsItsAck) {
  // No GET_FEATURES, no SET_OWNER: a new backend behind a running QEMU.
  const auto outcome = Send(MemTable(), 1);
  ASSERT_TRUE(outcome.status.ok());
  EXPECT_EQ(ReplyU64(outcome), 0u);
  // Without SET_PROTOCOL_FEATURES on this connection the kick alone starts the ring.
  ASSERT_TRUE(Send(State(VhostUserRequest::kSetVringNum, 4)).status.ok());
  ASSERT_TRUE(Send(Addr()).status.ok());
  ASSERT_TRUE(Send(Msg(VhostUserRequest::kSetVringKick), 1).status.ok());
  EXPECT_TRUE(device_.running());
}

TEST_F(VhostUserDeviceTest, NeedReplyOnFailureSaysSo) {
  VhostUserMessage num = State(VhostUserRequest::kSetVringNum, 3);
  num.flags |= kVhostUserFlagNeedReply;
  const auto outcome = Send(num);
  EXPECT_FALSE(outcome.status.ok());
  EXPECT_EQ(ReplyU64(outcome), 1u);
}

TEST_F(VhostUserDeviceTest, RingAddressesOutsideMemory) {
  ASSERT_TRUE(Send(MemTable(), 1).status.ok());
  ASSERT_TRUE(Send(State(VhostUserRequest::kSetVringNum, 4)).status.ok());
  ASSERT_TRUE(Send(Addr(FakeGuestRing::kBytes)).status.ok());  // not started yet
  const auto outcome = Send(Msg(VhostUserRequest::kSetVringKick), 1);
  EXPECT_FALSE(outcome.status.ok());
  EXPECT_NE(outcome.status.message().find("are not inside the memory table"), std::string::npos)
      << outcome.status.message();
}

TEST_F(VhostUserDeviceTest, SecondRingIsRefused) {
  VhostUserMessage num = State(VhostUserRequest::kSetVringNum, 4);
  num.state_index = 1;
  EXPECT_EQ(Send(num).status.message(), "SET_VRING_NUM for ring 1 (there is one)");
}

TEST_F(VhostUserDeviceTest, ZeroLengthBufferIsReturnedAtOnce) {
  StartRing();
  ring_.SetDesc(0, FakeGuestRing::kGuestBase + FakeGuestRing::kDataOffset, 0, kWrite, 0);
  ring_.Offer(0);
  bool signal = false;
  ASSERT_TRUE(device_.TakeBuffer(&signal).ok());
  EXPECT_TRUE(signal);
  EXPECT_EQ(ring_.UsedIdx(), 1);
  EXPECT_EQ(ring_.Used(0), std::make_pair(0u, 0u));
}

TEST_F(VhostUserDeviceTest, GuestResetReplaysStart) {
  StartRing();
  ASSERT_TRUE(Send(State(VhostUserRequest::kSetVringEnable, 0)).status.ok());
  ASSERT_TRUE(Send(State(VhostUserRequest::kGetVringBase, 0)).reply);
  ring_.SetUsedIdx(0);
  ring_.SetAvailIdx(0);
  StartRing(0);
  EXPECT_TRUE(device_.running());
  EXPECT_EQ(mapper_.maps, 2);
}

}  // namespace
}  // namespace rngmux
