#include "vhost/split_virtqueue.h"

#include <gtest/gtest.h>

#include <cstring>

#include "vhost/fake_guest_ring.h"

namespace rngmux {
namespace {

constexpr std::uint16_t kNext = 1;
constexpr std::uint16_t kWrite = 2;
constexpr std::uint16_t kIndirect = 4;
constexpr std::uint64_t kData = FakeGuestRing::kGuestBase + FakeGuestRing::kDataOffset;

class SplitVirtqueueTest : public ::testing::Test {
 protected:
  FakeGuestRing ring_{4};
  SplitVirtqueue vq_;
  SplitVirtqueue::Chain chain_;
  std::string error_;

  SplitVirtqueue::PopResult Pop() { return vq_.Pop(ring_.memory(), &chain_, &error_); }
  void ExpectBad(const std::string& error) {
    ASSERT_TRUE(vq_.Start(ring_.layout(), 0, false));
    EXPECT_EQ(Pop(), SplitVirtqueue::PopResult::kBad);
    EXPECT_EQ(error_, error);
  }
};

TEST_F(SplitVirtqueueTest, OneWritableBuffer) {
  ASSERT_TRUE(vq_.Start(ring_.layout(), 0, false));
  EXPECT_EQ(Pop(), SplitVirtqueue::PopResult::kEmpty);
  ring_.SetDesc(2, kData, 64, kWrite, 0);
  ring_.Offer(2);
  ASSERT_EQ(Pop(), SplitVirtqueue::PopResult::kChain) << error_;
  EXPECT_EQ(chain_.head, 2);
  EXPECT_EQ(chain_.capacity, 64u);
  ASSERT_EQ(chain_.segments.size(), 1u);
  EXPECT_EQ(chain_.segments[0].host, ring_.at(FakeGuestRing::kDataOffset));
  EXPECT_EQ(Pop(), SplitVirtqueue::PopResult::kEmpty);
  EXPECT_TRUE(vq_.Push(2, 17));
  EXPECT_EQ(ring_.UsedIdx(), 1);
  EXPECT_EQ(ring_.Used(0), std::make_pair(2u, 17u));
}

TEST_F(SplitVirtqueueTest, ChainAndIndirect) {
  ASSERT_TRUE(vq_.Start(ring_.layout(), 0, false));
  ring_.SetDesc(0, kData, 8, kWrite | kNext, 1);
  ring_.SetDesc(1, kData + 100, 8, kWrite, 0);
  ring_.Offer(0);
  ASSERT_EQ(Pop(), SplitVirtqueue::PopResult::kChain) << error_;
  EXPECT_EQ(chain_.segments.size(), 2u);
  EXPECT_EQ(chain_.capacity, 16u);
  // An indirect table of two in guest memory at kData + 0x1000.
  std::uint8_t* table = ring_.at(FakeGuestRing::kDataOffset + 0x1000);
  ring_.SetDesc(0, kData, 4, kWrite | kNext, 1, table);
  ring_.SetDesc(1, kData + 8, 4, kWrite, 0, table);
  ring_.SetDesc(3, kData + 0x1000, 32, kIndirect, 0);
  ring_.Offer(3);
  ASSERT_EQ(Pop(), SplitVirtqueue::PopResult::kChain) << error_;
  EXPECT_EQ(chain_.head, 3);
  EXPECT_EQ(chain_.capacity, 8u);
}

TEST_F(SplitVirtqueueTest, HeadOutOfRange) {
  ring_.Offer(4);
  ExpectBad("head descriptor 4 >= ring size 4");
}

TEST_F(SplitVirtqueueTest, Loop) {
  ring_.SetDesc(0, kData, 8, kWrite | kNext, 1);
  ring_.SetDesc(1, kData, 8, kWrite | kNext, 0);
  ring_.Offer(0);
  ExpectBad("descriptor chain from 0 is longer than the ring (4): a loop?");
}

TEST_F(SplitVirtqueueTest, NextOutOfRange) {
  ring_.SetDesc(0, kData, 8, kWrite | kNext, 9);
  ring_.Offer(0);
  ExpectBad("next descriptor 9 >= table size 4");
}

TEST_F(SplitVirtqueueTest, ReadableDescriptor) {
  ring_.SetDesc(0, kData, 8, 0, 0);
  ring_.Offer(0);
  ExpectBad("device-readable descriptor in a virtio-rng chain");
}

TEST_F(SplitVirtqueueTest, BufferOutsideMemory) {
  ring_.SetDesc(0, kData + FakeGuestRing::kBytes, 8, kWrite, 0);
  ring_.Offer(0);
  ExpectBad("buffer at guest address 0x114000 (+8) is not inside one memory region");
}

TEST_F(SplitVirtqueueTest, BufferAddressOverflow) {
  ring_.SetDesc(0, ~0ull - 3, 8, kWrite, 0);
  ring_.Offer(0);
  ASSERT_TRUE(vq_.Start(ring_.layout(), 0, false));
  EXPECT_EQ(Pop(), SplitVirtqueue::PopResult::kBad);
}

TEST_F(SplitVirtqueueTest, BufferStraddlingRegionEnd) {
  ring_.SetDesc(0, FakeGuestRing::kGuestBase + FakeGuestRing::kBytes - 4, 8, kWrite, 0);
  ring_.Offer(0);
  ASSERT_TRUE(vq_.Start(ring_.layout(), 0, false));
  EXPECT_EQ(Pop(), SplitVirtqueue::PopResult::kBad);
}

TEST_F(SplitVirtqueueTest, IndirectBadLength) {
  ring_.SetDesc(0, kData, 24, kIndirect, 0);
  ring_.Offer(0);
  ExpectBad("indirect table of 24 bytes");
}

TEST_F(SplitVirtqueueTest, IndirectOutOfRange) {
  ring_.SetDesc(0, 0x10, 32, kIndirect, 0);
  ring_.Offer(0);
  ExpectBad("indirect table at 0x10 (+32) is outside guest memory");
}

TEST_F(SplitVirtqueueTest, NestedIndirect) {
  std::uint8_t* table = ring_.at(FakeGuestRing::kDataOffset);
  ring_.SetDesc(0, kData, 32, kIndirect, 0, table);
  ring_.SetDesc(0, kData, 32, kIndirect, 0);
  ring_.Offer(0);
  ExpectBad("nested indirect descriptor table");
}

TEST_F(SplitVirtqueueTest, IndirectWithNext) {
  ring_.SetDesc(0, kData, 32, kIndirect | kNext, 1);
  ring_.Offer(0);
  ExpectBad("indirect descriptor with NEXT set");
}

TEST_F(SplitVirtqueueTest, OversizedIndirectChain) {
  std::uint8_t* table = ring_.at(FakeGuestRing::kDataOffset);
  for (std::uint16_t i = 0; i < 8; ++i) ring_.SetDesc(i, kData, 1, kWrite | kNext, i + 1, table);
  ring_.SetDesc(0, kData, 16 * 9, kIndirect, 0);
  ring_.Offer(0);
  ExpectBad("descriptor chain from 0 is longer than the ring (4): a loop?");
}

TEST_F(SplitVirtqueueTest, AvailIndexJump) {
  ring_.SetAvailIdx(5);
  ExpectBad("avail index jumped from 0 to 5 in a ring of 4");
}

TEST_F(SplitVirtqueueTest, EventIdx) {
  ASSERT_TRUE(vq_.Start(ring_.layout(), 0, true));
  EXPECT_EQ(Pop(), SplitVirtqueue::PopResult::kEmpty);
  EXPECT_EQ(ring_.AvailEvent(), 0);  // armed for the next buffer
  ring_.SetDesc(0, kData, 8, kWrite, 0);
  ring_.Offer(0);
  ring_.SetUsedEvent(0);
  ASSERT_EQ(Pop(), SplitVirtqueue::PopResult::kChain);
  EXPECT_EQ(Pop(), SplitVirtqueue::PopResult::kEmpty);
  EXPECT_EQ(ring_.AvailEvent(), 1);
  EXPECT_TRUE(vq_.Push(0, 8));  // used_event 0: signal when used passes 0
  ring_.Offer(0);
  ASSERT_EQ(Pop(), SplitVirtqueue::PopResult::kChain);
  ring_.SetUsedEvent(5);  // the driver wants a signal only much later
  EXPECT_FALSE(vq_.Push(0, 8));
}

TEST_F(SplitVirtqueueTest, NoInterruptFlag) {
  ASSERT_TRUE(vq_.Start(ring_.layout(), 0, false));
  ring_.SetDesc(0, kData, 8, kWrite, 0);
  ring_.Offer(0);
  ring_.SetAvailFlags(1);
  ASSERT_EQ(Pop(), SplitVirtqueue::PopResult::kChain);
  EXPECT_FALSE(vq_.Push(0, 8));
}

TEST_F(SplitVirtqueueTest, RestartResumesFromUsedIndex) {
  // A restarted backend is told base 3, but only 2 buffers were used: the third is
  // still the driver's and must be taken again.
  ring_.SetUsedIdx(2);
  ring_.SetAvailIdx(2);
  ring_.SetDesc(1, kData, 8, kWrite, 0);
  ring_.Offer(1);
  EXPECT_FALSE(vq_.Start(ring_.layout(), 3, false));
  EXPECT_EQ(vq_.next_avail(), 2);
  ASSERT_EQ(Pop(), SplitVirtqueue::PopResult::kChain);
  EXPECT_EQ(chain_.head, 1);
  vq_.Unpop(1);
  EXPECT_EQ(vq_.next_avail(), 2);
}

}  // namespace
}  // namespace rngmux
