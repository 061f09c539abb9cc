#include "sources/qwqng/frame.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace rngmux::qwqng {
namespace {

std::vector<std::uint8_t> Frame(FrameType type, const std::string& payload) {
  std::vector<std::uint8_t> bytes(kFrameHeaderBytes + payload.size());
  const auto header = EncodeFrameHeader(type, payload.size());
  std::copy(header.begin(), header.end(), bytes.begin());
  std::copy(payload.begin(), payload.end(), bytes.begin() + kFrameHeaderBytes);
  return bytes;
}

std::string Text(std::span<const std::uint8_t> bytes) { return {bytes.begin(), bytes.end()}; }

TEST(FrameTest, HeaderLayout) {
  const auto header = EncodeFrameHeader(FrameType::kData, 8192);
  EXPECT_EQ(header, (std::array<std::uint8_t, 4>{'Q', 'D', 0x00, 0x20}));
}

TEST(FrameTest, DecodesConsecutiveFrames) {
  std::vector<std::uint8_t> stream = Frame(FrameType::kHello, "QWR4M004");
  const auto data = Frame(FrameType::kData, "abc");
  stream.insert(stream.end(), data.begin(), data.end());

  FrameStep step = NextFrame(stream);
  ASSERT_EQ(step.outcome, FrameStep::Outcome::kFrame);
  EXPECT_EQ(step.type, FrameType::kHello);
  EXPECT_EQ(Text(step.payload), "QWR4M004");
  EXPECT_EQ(step.consumed, 12u);

  step = NextFrame(std::span(stream).subspan(12));
  ASSERT_EQ(step.outcome, FrameStep::Outcome::kFrame);
  EXPECT_EQ(step.type, FrameType::kData);
  EXPECT_EQ(Text(step.payload), "abc");
  EXPECT_EQ(step.consumed, 7u);

  EXPECT_EQ(NextFrame(std::span(stream).subspan(19)).outcome, FrameStep::Outcome::kNeedMore);
}

TEST(FrameTest, EveryTruncationNeedsMore) {
  const auto frame = Frame(FrameType::kData, std::string(100, 'x'));
  for (std::size_t size = 0; size < frame.size(); ++size) {
    const FrameStep step = NextFrame(std::span(frame).first(size));
    EXPECT_EQ(step.outcome, FrameStep::Outcome::kNeedMore) << size;
    EXPECT_EQ(step.consumed, 0u);
  }
  EXPECT_EQ(NextFrame(frame).outcome, FrameStep::Outcome::kFrame);
}

TEST(FrameTest, LargestDataFrame) {
  const auto frame = Frame(FrameType::kData, std::string(kMaxReadBytes, 'x'));
  const FrameStep step = NextFrame(frame);
  ASSERT_EQ(step.outcome, FrameStep::Outcome::kFrame);
  EXPECT_EQ(step.payload.size(), kMaxReadBytes);
}

TEST(FrameTest, RejectsCorruptStreamsAtTheFirstBadByte) {
  const std::vector<std::uint8_t> bad_magic = {'X'};
  EXPECT_EQ(NextFrame(bad_magic).outcome, FrameStep::Outcome::kBad);
  EXPECT_EQ(NextFrame(bad_magic).error, "bad frame magic");

  const std::vector<std::uint8_t> bad_type = {'Q', 'Z'};
  EXPECT_EQ(NextFrame(bad_type).outcome, FrameStep::Outcome::kBad);
  EXPECT_EQ(NextFrame(bad_type).error, "unknown frame type");

  const std::vector<std::uint8_t> too_long = {'Q', 'D', 0x01, 0x20};  // 8193
  EXPECT_EQ(NextFrame(too_long).outcome, FrameStep::Outcome::kBad);
  EXPECT_EQ(NextFrame(too_long).error, "bad frame length");

  const std::vector<std::uint8_t> empty_data = {'Q', 'D', 0, 0};
  EXPECT_EQ(NextFrame(empty_data).outcome, FrameStep::Outcome::kBad);

  const std::vector<std::uint8_t> short_stats = {'Q', 'S', 4, 0};
  EXPECT_EQ(NextFrame(short_stats).outcome, FrameStep::Outcome::kBad);
}

TEST(FrameTest, EmptyHelloAndFatalAreAllowed) {
  EXPECT_EQ(NextFrame(Frame(FrameType::kFatal, "")).outcome, FrameStep::Outcome::kFrame);
  EXPECT_EQ(NextFrame(Frame(FrameType::kHello, "")).outcome, FrameStep::Outcome::kFrame);
}

TEST(FrameTest, LogPayloadRoundTrip) {
  const std::string payload = EncodeLogPayload(WorkerLogLevel::kWarning, "Reset()");
  const auto frame = Frame(FrameType::kLog, payload);
  const FrameStep step = NextFrame(frame);
  ASSERT_EQ(step.outcome, FrameStep::Outcome::kFrame);
  const std::optional<LogPayload> log = DecodeLogPayload(step.payload);
  ASSERT_TRUE(log.has_value());
  EXPECT_EQ(log->level, WorkerLogLevel::kWarning);
  EXPECT_EQ(log->text, "Reset()");

  const std::vector<std::uint8_t> bad_level = {'?', 'x'};
  EXPECT_FALSE(DecodeLogPayload(bad_level).has_value());
  EXPECT_FALSE(DecodeLogPayload({}).has_value());
}

TEST(FrameTest, LongLogTextIsCutToFit) {
  const std::string payload = EncodeLogPayload(WorkerLogLevel::kInfo, std::string(5000, 'x'));
  EXPECT_EQ(payload.size(), 1 + kMaxTextBytes);
  EXPECT_EQ(NextFrame(Frame(FrameType::kLog, payload)).outcome, FrameStep::Outcome::kFrame);
}

TEST(FrameTest, RuntimeInfoRoundTrip) {
  std::array<float, kRuntimeInfoFloats> values{};
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = 0.5f * static_cast<float>(i) - 1;
  const auto payload = EncodeRuntimeInfo(values);
  EXPECT_EQ(payload[0], 0x00);  // -1.0f = 0xbf800000, little-endian
  EXPECT_EQ(payload[3], 0xbf);
  const auto decoded = DecodeRuntimeInfo(payload);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, values);
  EXPECT_FALSE(DecodeRuntimeInfo(std::span(payload).first(8)).has_value());
}

}  // namespace
}  // namespace rngmux::qwqng
