#include "protocol/egd_datagram.h"

#include <gtest/gtest.h>

#include <vector>

namespace rngmux {
namespace {

using Bytes = std::vector<std::uint8_t>;
using Outcome = EgdDatagram::Outcome;
constexpr std::size_t kPidReply = 6;  // "\x05" + five digits

TEST(EgdDatagramTest, QemuRequest) {
  const EgdDatagram d = ParseEgdDatagram(Bytes{0x02, 0x40}, kPidReply);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d.requests.size(), 1u);
  EXPECT_EQ(d.requests[0].command, EgdCommand::kReadBlocking);
  EXPECT_EQ(d.requests[0].count, 0x40);
  EXPECT_EQ(d.reply_bytes, 64u);
}

// A 2-byte request can never be worth more than 255 bytes; the bound of every
// command is its defined reply size.
TEST(EgdDatagramTest, ReplyBoundPerCommand) {
  EXPECT_EQ(ParseEgdDatagram(Bytes{0x02, 0xff}, kPidReply).reply_bytes, 255u);
  EXPECT_EQ(ParseEgdDatagram(Bytes{0x01, 0xff}, kPidReply).reply_bytes, 256u);
  EXPECT_EQ(ParseEgdDatagram(Bytes{0x00}, kPidReply).reply_bytes, 4u);
  EXPECT_EQ(ParseEgdDatagram(Bytes{0x04}, kPidReply).reply_bytes, kPidReply);
  EXPECT_EQ(ParseEgdDatagram(Bytes{0x03, 0x00, 0x10, 0x02, 'a', 'b'}, kPidReply).reply_bytes, 0u);
  EXPECT_EQ(ParseEgdDatagram(Bytes{0x02, 0x00}, kPidReply).reply_bytes, 0u);
}

TEST(EgdDatagramTest, SeveralRequestsInOrder) {
  const EgdDatagram d = ParseEgdDatagram(Bytes{0x00, 0x01, 0x10, 0x02, 0x20, 0x04}, kPidReply);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d.requests.size(), 4u);
  EXPECT_EQ(d.requests[0].command, EgdCommand::kEntropyAvailable);
  EXPECT_EQ(d.requests[1].command, EgdCommand::kReadNonBlocking);
  EXPECT_EQ(d.requests[2].command, EgdCommand::kReadBlocking);
  EXPECT_EQ(d.requests[3].command, EgdCommand::kGetPid);
  EXPECT_EQ(d.reply_bytes, 4u + 17u + 32u + kPidReply);
}

TEST(EgdDatagramTest, RepliesBoundedByOneDatagram) {
  // 16 x 02 ff asks for 4080 bytes: allowed. One more byte's worth is not.
  Bytes ok;
  for (int i = 0; i < 16; ++i) ok.insert(ok.end(), {0x02, 0xff});
  ok.insert(ok.end(), {0x02, 0x10});
  EXPECT_EQ(ParseEgdDatagram(ok, kPidReply).reply_bytes, 4096u);
  EXPECT_TRUE(ParseEgdDatagram(ok, kPidReply).ok());
  ok.back() = 0x11;
  const EgdDatagram d = ParseEgdDatagram(ok, kPidReply);
  EXPECT_EQ(d.outcome, Outcome::kAsksTooMuch);
  EXPECT_TRUE(d.requests.empty());
  EXPECT_EQ(d.Problem(), "datagram asks for 4097 reply bytes (at most 4096)");
}

TEST(EgdDatagramTest, MalformedDatagrams) {
  const EgdDatagram bad = ParseEgdDatagram(Bytes{0x02, 0x40, 0x16, 0x03}, kPidReply);
  EXPECT_EQ(bad.outcome, Outcome::kBadCommand);
  EXPECT_EQ(bad.bad_byte, 0x16);
  EXPECT_TRUE(bad.requests.empty());  // nothing of a bad datagram is answered
  EXPECT_EQ(bad.Problem(), "unknown EGD command 0x16");

  const EgdDatagram cut = ParseEgdDatagram(Bytes{0x02, 0x40, 0x02}, kPidReply);
  EXPECT_EQ(cut.outcome, Outcome::kIncomplete);
  EXPECT_TRUE(cut.requests.empty());
  EXPECT_EQ(cut.Problem(), "incomplete EGD request at the end of a datagram");
  EXPECT_EQ(ParseEgdDatagram(Bytes{0x03, 0x00, 0x08, 0x05, 'a'}, kPidReply).outcome,
            Outcome::kIncomplete);

  const EgdDatagram big = ParseEgdDatagram(Bytes(kMaxEgdDatagramBytes + 1, 0x00), kPidReply);
  EXPECT_EQ(big.outcome, Outcome::kTooLong);
  EXPECT_EQ(big.Problem(), "datagram longer than 4096 bytes");

  const EgdDatagram empty = ParseEgdDatagram(Bytes{}, kPidReply);
  EXPECT_EQ(empty.outcome, Outcome::kEmpty);
  EXPECT_FALSE(empty.ok());
  EXPECT_EQ(empty.Problem(), "");
}

TEST(EgdDatagramTest, LongestAcceptedDatagramOfCheapRequests) {
  // 4096 bytes of 0x03 requests with no payload ask for nothing at all.
  Bytes writes;
  for (int i = 0; i < 1024; ++i) writes.insert(writes.end(), {0x03, 0x00, 0x00, 0x00});
  const EgdDatagram d = ParseEgdDatagram(writes, kPidReply);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.requests.size(), 1024u);
  EXPECT_EQ(d.reply_bytes, 0u);
}

}  // namespace
}  // namespace rngmux
