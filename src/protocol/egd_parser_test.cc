#include "protocol/egd_parser.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <vector>

namespace rngmux {
namespace {

using Bytes = std::vector<std::uint8_t>;
using Outcome = EgdParser::Outcome;

// What the parser reported, without the split-dependent `consumed` counts.
struct Event {
  bool bad = false;
  EgdRequest request;
  std::uint8_t bad_byte = 0;

  bool operator==(const Event& other) const {
    return bad == other.bad && bad_byte == other.bad_byte &&
           request.command == other.request.command && request.count == other.request.count &&
           request.entropy_bits == other.request.entropy_bits;
  }
};

void PrintTo(const Event& event, std::ostream* os) {
  if (event.bad) {
    *os << "bad(" << int{event.bad_byte} << ")";
  } else {
    *os << "req(" << int{static_cast<std::uint8_t>(event.request.command)} << ", count "
        << int{event.request.count} << ", bits " << event.request.entropy_bits << ")";
  }
}

Event Req(EgdCommand command, std::uint8_t count = 0, std::uint16_t bits = 0) {
  Event event;
  event.request.command = command;
  event.request.count = count;
  event.request.entropy_bits = bits;
  return event;
}

Event Bad(std::uint8_t byte) {
  Event event;
  event.bad = true;
  event.bad_byte = byte;
  return event;
}

// Feeds one chunk the way a session does, appending what comes out. Stops at the
// first kBadCommand. Checks the per-call contract on the way.
void Feed(EgdParser& parser, std::span<const std::uint8_t> input, std::vector<Event>& events) {
  while (true) {
    const EgdParser::Step step = parser.Next(input);
    ASSERT_LE(step.consumed, input.size());
    switch (step.outcome) {
      case Outcome::kNeedMore:
        ASSERT_EQ(step.consumed, input.size());
        return;
      case Outcome::kRequest:
        ASSERT_TRUE(parser.idle());
        events.push_back(Event{false, step.request, 0});
        input = input.subspan(step.consumed);
        if (input.empty()) return;
        break;
      case Outcome::kBadCommand:
        ASSERT_EQ(step.consumed, 0u);
        events.push_back(Bad(step.bad_byte));
        return;
    }
  }
}

// Like a session, stops feeding after the first kBadCommand (it closes the connection).
std::vector<Event> ParseInChunks(const Bytes& input, const std::vector<std::size_t>& cuts) {
  EgdParser parser;
  std::vector<Event> events;
  std::size_t start = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(input.size());
  for (std::size_t end : ends) {
    Feed(parser, std::span(input).subspan(start, end - start), events);
    if (!events.empty() && events.back().bad) break;
    start = end;
  }
  return events;
}

std::vector<Event> ParseWhole(const Bytes& input) { return ParseInChunks(input, {}); }

std::vector<Event> ParseByteByByte(const Bytes& input) {
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < input.size(); ++i) cuts.push_back(i);
  return ParseInChunks(input, cuts);
}

TEST(EgdParserTest, EntropyAvailable) {
  EgdParser parser;
  const Bytes input = {0x00};
  const auto step = parser.Next(input);
  EXPECT_EQ(step.outcome, Outcome::kRequest);
  EXPECT_EQ(step.consumed, 1u);
  EXPECT_EQ(step.request.command, EgdCommand::kEntropyAvailable);
  EXPECT_TRUE(parser.idle());
}

TEST(EgdParserTest, ReadNonBlocking) {
  EXPECT_EQ(ParseWhole({0x01, 0x20}), std::vector{Req(EgdCommand::kReadNonBlocking, 0x20)});
}

TEST(EgdParserTest, ReadBlocking) {
  EgdParser parser;
  const Bytes input = {0x02, 0x40};
  const auto step = parser.Next(input);
  EXPECT_EQ(step.outcome, Outcome::kRequest);
  EXPECT_EQ(step.consumed, 2u);
  EXPECT_EQ(step.request.command, EgdCommand::kReadBlocking);
  EXPECT_EQ(step.request.count, 0x40);
}

TEST(EgdParserTest, ReadCountsZeroAndMax) {
  EXPECT_EQ(ParseWhole({0x02, 0x00, 0x01, 0x00, 0x02, 0xFF}),
            (std::vector{Req(EgdCommand::kReadBlocking, 0), Req(EgdCommand::kReadNonBlocking, 0),
                         Req(EgdCommand::kReadBlocking, 255)}));
}

TEST(EgdParserTest, WriteEntropyPayloadIsConsumedAndDropped) {
  EgdParser parser;
  const Bytes input = {0x03, 0x01, 0x02, 0x03, 0xAA, 0xBB, 0xCC, 0x04};
  const auto step = parser.Next(input);
  EXPECT_EQ(step.outcome, Outcome::kRequest);
  EXPECT_EQ(step.consumed, 7u);
  EXPECT_EQ(step.request.command, EgdCommand::kWriteEntropy);
  EXPECT_EQ(step.request.entropy_bits, 0x0102);
  EXPECT_EQ(step.request.count, 3);
  // The payload byte 0xCC must not be mistaken for a command; the next one is 0x04.
  const auto next = parser.Next(std::span(input).subspan(step.consumed));
  EXPECT_EQ(next.outcome, Outcome::kRequest);
  EXPECT_EQ(next.request.command, EgdCommand::kGetPid);
}

TEST(EgdParserTest, WriteEntropyWithEmptyPayload) {
  EXPECT_EQ(
      ParseWhole({0x03, 0xFF, 0xFE, 0x00, 0x00}),
      (std::vector{Req(EgdCommand::kWriteEntropy, 0, 0xFFFE), Req(EgdCommand::kEntropyAvailable)}));
}

TEST(EgdParserTest, WriteEntropyPayloadSplitAcrossManyFeeds) {
  EgdParser parser;
  std::vector<Event> events;
  const Bytes header = {0x03, 0x00, 0x08, 0xFF};
  Feed(parser, header, events);
  EXPECT_TRUE(events.empty());
  EXPECT_FALSE(parser.idle());
  // 255 payload bytes, all of them values that would be bad commands, in 5-byte feeds.
  const Bytes chunk(5, 0x16);
  for (int i = 0; i < 50; ++i) {
    Feed(parser, chunk, events);
    ASSERT_TRUE(events.empty()) << "after feed " << i;
  }
  const Bytes last_and_next = {0x16, 0x16, 0x16, 0x16, 0x16, 0x02, 0x10};
  Feed(parser, last_and_next, events);
  EXPECT_EQ(events, (std::vector{Req(EgdCommand::kWriteEntropy, 255, 8),
                                 Req(EgdCommand::kReadBlocking, 0x10)}));
}

TEST(EgdParserTest, GetPid) {
  EXPECT_EQ(ParseWhole({0x04}), std::vector{Req(EgdCommand::kGetPid)});
}

TEST(EgdParserTest, EmptyInputNeedsMore) {
  EgdParser parser;
  const auto step = parser.Next({});
  EXPECT_EQ(step.outcome, Outcome::kNeedMore);
  EXPECT_EQ(step.consumed, 0u);
  EXPECT_TRUE(parser.idle());
}

TEST(EgdParserTest, PartialRequestNeedsMoreAndIsNotIdle) {
  EgdParser parser;
  const Bytes first = {0x02};
  const auto step = parser.Next(first);
  EXPECT_EQ(step.outcome, Outcome::kNeedMore);
  EXPECT_EQ(step.consumed, 1u);
  EXPECT_FALSE(parser.idle());
  const Bytes second = {0x80};
  const auto done = parser.Next(second);
  EXPECT_EQ(done.outcome, Outcome::kRequest);
  EXPECT_EQ(done.consumed, 1u);
  EXPECT_EQ(done.request.count, 0x80);
  EXPECT_TRUE(parser.idle());
}

const Bytes kMixedStream = {
    0x02, 0x40,                          // blocking read 64
    0x00,                                // entropy available
    0x01, 0x10,                          // non-blocking read 16
    0x03, 0x00, 0x10, 0x02, 0x05, 0xFF,  // write, 16 bits, payload of bad-looking bytes
    0x04,                                // pid
    0x03, 0x12, 0x34, 0x00,              // write, empty payload
    0x02, 0x00,                          // blocking read 0
    0x02, 0xFF,                          // blocking read 255
};

const std::vector<Event> kMixedEvents = {
    Req(EgdCommand::kReadBlocking, 0x40),
    Req(EgdCommand::kEntropyAvailable),
    Req(EgdCommand::kReadNonBlocking, 16),
    Req(EgdCommand::kWriteEntropy, 2, 16),
    Req(EgdCommand::kGetPid),
    Req(EgdCommand::kWriteEntropy, 0, 0x1234),
    Req(EgdCommand::kReadBlocking, 0),
    Req(EgdCommand::kReadBlocking, 255),
};

TEST(EgdParserTest, MixedPipelineInOneBuffer) { EXPECT_EQ(ParseWhole(kMixedStream), kMixedEvents); }

TEST(EgdParserTest, MixedPipelineByteByByte) {
  EXPECT_EQ(ParseByteByByte(kMixedStream), kMixedEvents);
}

TEST(EgdParserTest, MixedPipelineSplitAtEveryPoint) {
  for (std::size_t cut = 0; cut <= kMixedStream.size(); ++cut) {
    EXPECT_EQ(ParseInChunks(kMixedStream, {cut}), kMixedEvents) << "cut at " << cut;
  }
}

TEST(EgdParserTest, MixedPipelineSplitAtEveryPairOfPoints) {
  for (std::size_t a = 0; a <= kMixedStream.size(); ++a) {
    for (std::size_t b = a; b <= kMixedStream.size(); ++b) {
      EXPECT_EQ(ParseInChunks(kMixedStream, {a, b}), kMixedEvents) << "cuts " << a << ", " << b;
    }
  }
}

TEST(EgdParserTest, TenThousandPipelinedReadsInOneBuffer) {
  constexpr std::size_t kRequests = 10'000;
  Bytes input;
  for (std::size_t i = 0; i < kRequests; ++i) {
    input.push_back(0x02);
    input.push_back(0xFF);
  }
  EgdParser parser;
  std::span<const std::uint8_t> rest = input;
  std::size_t requests = 0;
  while (!rest.empty()) {
    const auto step = parser.Next(rest);
    ASSERT_EQ(step.outcome, Outcome::kRequest);
    ASSERT_EQ(step.consumed, 2u);
    ASSERT_EQ(step.request.command, EgdCommand::kReadBlocking);
    ASSERT_EQ(step.request.count, 255);
    rest = rest.subspan(step.consumed);
    ++requests;
  }
  EXPECT_EQ(requests, kRequests);
  EXPECT_TRUE(parser.idle());
}

class EgdParserBadByteTest : public testing::TestWithParam<std::uint8_t> {};

TEST_P(EgdParserBadByteTest, RejectedAtStart) {
  EgdParser parser;
  const Bytes input = {GetParam(), 0x02, 0x40};
  const auto step = parser.Next(input);
  EXPECT_EQ(step.outcome, Outcome::kBadCommand);
  EXPECT_EQ(step.bad_byte, GetParam());
  EXPECT_EQ(step.consumed, 0u);
}

TEST_P(EgdParserBadByteTest, RejectedMidStreamAfterValidRequests) {
  Bytes input = {0x02, 0x40, 0x03, 0x00, 0x08, 0x01, GetParam(), 0x00};
  input.push_back(GetParam());
  input.push_back(0x02);
  input.push_back(0x10);
  const std::vector<Event> expected = {Req(EgdCommand::kReadBlocking, 0x40),
                                       Req(EgdCommand::kWriteEntropy, 1, 8),
                                       Req(EgdCommand::kEntropyAvailable), Bad(GetParam())};
  EXPECT_EQ(ParseWhole(input), expected);
  EXPECT_EQ(ParseByteByByte(input), expected);
  for (std::size_t cut = 0; cut <= input.size(); ++cut) {
    EXPECT_EQ(ParseInChunks(input, {cut}), expected) << "cut at " << cut;
  }
}

TEST_P(EgdParserBadByteTest, BadStateIsSticky) {
  EgdParser parser;
  const Bytes bad = {0x00, GetParam()};
  EXPECT_EQ(parser.Next(bad).outcome, Outcome::kRequest);
  EXPECT_EQ(parser.Next(std::span(bad).subspan(1)).outcome, Outcome::kBadCommand);
  EXPECT_FALSE(parser.idle());
  const Bytes valid = {0x02, 0x40};
  for (const Bytes& later : {valid, Bytes{}}) {
    const auto step = parser.Next(later);
    EXPECT_EQ(step.outcome, Outcome::kBadCommand);
    EXPECT_EQ(step.consumed, 0u);
    EXPECT_EQ(step.bad_byte, GetParam());
  }
}

// 0x05 is the first unassigned command, 0xFF the last, 0x16 what a TLS ClientHello
// starts with when a TLS client reaches a plain EGD endpoint.
INSTANTIATE_TEST_SUITE_P(Bytes, EgdParserBadByteTest,
                         testing::Values(std::uint8_t{0x05}, std::uint8_t{0xFF},
                                         std::uint8_t{0x16}),
                         [](const testing::TestParamInfo<std::uint8_t>& param_info) {
                           return "byte_" + std::to_string(param_info.param);
                         });

TEST(EgdParserTest, EveryByteAboveFourIsBad) {
  for (int byte = 0; byte <= 0xFF; ++byte) {
    EgdParser parser;
    const Bytes input = {static_cast<std::uint8_t>(byte), 0x00, 0x00, 0x00};
    const auto step = parser.Next(input);
    EXPECT_EQ(step.outcome == Outcome::kBadCommand, byte > 4) << "byte " << byte;
  }
}

}  // namespace
}  // namespace rngmux
