#include "vhost/message.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace rngmux {
namespace {

std::vector<std::uint8_t> Message(std::uint32_t request, std::uint32_t flags,
                                  const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> out(12 + payload.size());
  const std::uint32_t size = static_cast<std::uint32_t>(payload.size());
  std::memcpy(out.data(), &request, 4);
  std::memcpy(out.data() + 4, &flags, 4);
  std::memcpy(out.data() + 8, &size, 4);
  if (!payload.empty()) std::memcpy(out.data() + 12, payload.data(), payload.size());
  return out;
}

std::vector<std::uint8_t> U64(std::uint64_t v) {
  std::vector<std::uint8_t> out(8);
  std::memcpy(out.data(), &v, 8);
  return out;
}

std::vector<std::uint8_t> State(std::uint32_t index, std::uint32_t num) {
  std::vector<std::uint8_t> out(8);
  std::memcpy(out.data(), &index, 4);
  std::memcpy(out.data() + 4, &num, 4);
  return out;
}

TEST(VhostUserParserTest, HeaderOnlyRequest) {
  VhostUserParser parser;
  EXPECT_EQ(parser.wanted(), 12u);
  const auto bytes = Message(1, 1, {});
  const auto step = parser.Next(bytes, 0);
  ASSERT_EQ(step.outcome, VhostUserParser::Outcome::kMessage) << step.error;
  EXPECT_EQ(step.consumed, 12u);
  EXPECT_EQ(step.message.request, 1u);
  EXPECT_TRUE(parser.idle());
}

TEST(VhostUserParserTest, ByteByByteWithNeedReply) {
  VhostUserParser parser;
  const auto bytes = Message(8, 1 | kVhostUserFlagNeedReply, State(0, 4));
  for (std::size_t i = 0; i + 1 < bytes.size(); ++i) {
    const auto step = parser.Next(std::span(bytes).subspan(i, 1), 0);
    ASSERT_EQ(step.outcome, VhostUserParser::Outcome::kNeedMore);
    ASSERT_EQ(step.consumed, 1u);
  }
  EXPECT_EQ(parser.wanted(), 1u);
  const auto step = parser.Next(std::span(bytes).last(1), 0);
  ASSERT_EQ(step.outcome, VhostUserParser::Outcome::kMessage) << step.error;
  EXPECT_EQ(step.message.state_num, 4u);
  EXPECT_TRUE(step.message.need_reply());
}

TEST(VhostUserParserTest, KickWithAndWithoutFd) {
  VhostUserParser parser;
  auto step = parser.Next(Message(12, 1, U64(0)), 1);
  ASSERT_EQ(step.outcome, VhostUserParser::Outcome::kMessage) << step.error;
  EXPECT_EQ(step.message.expected_fds(), 1u);
  step = parser.Next(Message(12, 1, U64(kVhostUserVringNoFd)), 0);
  ASSERT_EQ(step.outcome, VhostUserParser::Outcome::kMessage) << step.error;
}

TEST(VhostUserParserTest, MemTable) {
  std::vector<std::uint8_t> payload(8 + 32);
  const std::uint32_t count = 1;
  std::memcpy(payload.data(), &count, 4);
  const std::uint64_t region[4] = {0x1000, 0x2000, 0x7f0000000000, 0};
  std::memcpy(payload.data() + 8, region, 32);
  VhostUserParser parser;
  const auto step = parser.Next(Message(5, 1 | kVhostUserFlagNeedReply, payload), 1);
  ASSERT_EQ(step.outcome, VhostUserParser::Outcome::kMessage) << step.error;
  EXPECT_EQ(step.message.region_count, 1u);
  EXPECT_EQ(step.message.regions[0].memory_size, 0x2000u);
  EXPECT_EQ(step.message.regions[0].userspace_addr, 0x7f0000000000u);
}

struct BadCase {
  const char* name;
  std::vector<std::uint8_t> bytes;
  std::size_t fds;
  const char* error;
};

TEST(VhostUserParserTest, BadMessages) {
  std::vector<std::uint8_t> mem_count_mismatch(8 + 32);
  const std::uint32_t two = 2;
  std::memcpy(mem_count_mismatch.data(), &two, 4);
  const std::vector<BadCase> cases = {
      {"no version", Message(1, 0, {}), 0, "GET_FEATURES: flags 0x0 carry no version 1"},
      {"reply flag", Message(1, 1 | kVhostUserFlagReply, {}), 0,
       "GET_FEATURES: a request marked as a reply"},
      {"unknown", Message(99, 1, {}), 0, "unsupported request 99"},
      {"log fd", Message(7, 1, {}), 0, "unsupported SET_LOG_FD"},
      {"wrong size", Message(8, 1, std::vector<std::uint8_t>(4)), 0,
       "SET_VRING_NUM: payload of 4 bytes, expected 8"},
      {"huge size", Message(5, 1, std::vector<std::uint8_t>(300)), 0,
       "SET_MEM_TABLE: payload of 300 bytes"},
      {"region count", Message(5, 1, mem_count_mismatch), 2,
       "SET_MEM_TABLE: 2 regions in 40 bytes"},
      {"fd where none belongs", Message(3, 1, {}), 1,
       "SET_OWNER: came with 1 file descriptors, expected 0"},
      {"kick without its fd", Message(13, 1, U64(0)), 0,
       "SET_VRING_CALL: came with 0 file descriptors, expected 1"},
  };
  for (const BadCase& c : cases) {
    VhostUserParser parser;
    const auto step = parser.Next(c.bytes, c.fds);
    EXPECT_EQ(step.outcome, VhostUserParser::Outcome::kBad) << c.name;
    EXPECT_EQ(step.error, c.error) << c.name;
    // Stays bad.
    EXPECT_EQ(parser.Next(Message(1, 1, {}), 0).outcome, VhostUserParser::Outcome::kBad);
  }
}

TEST(VhostUserReplyTest, Layout) {
  const VhostUserReply reply = MakeU64Reply(1, 0x170000000ull);
  ASSERT_EQ(reply.size, 20u);
  EXPECT_EQ(std::vector<std::uint8_t>(reply.view().begin(), reply.view().end()),
            Message(1, 1 | kVhostUserFlagReply, U64(0x170000000ull)));
  const VhostUserReply state = MakeStateReply(11, 0, 7);
  EXPECT_EQ(std::vector<std::uint8_t>(state.view().begin(), state.view().end()),
            Message(11, 1 | kVhostUserFlagReply, State(0, 7)));
}

}  // namespace
}  // namespace rngmux
