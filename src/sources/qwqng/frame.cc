#include "sources/qwqng/frame.h"

#include <bit>

namespace rngmux::qwqng {
namespace {

// A serial is 8 characters today; leave room without inviting abuse.
constexpr std::size_t kMaxSerialBytes = 64;

}  // namespace

std::size_t MaxPayload(std::uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello:
      return kMaxSerialBytes;
    case FrameType::kData:
      return kMaxReadBytes;
    case FrameType::kLog:
      return 1 + kMaxTextBytes;
    case FrameType::kStats:
      return kRuntimeInfoFloats * 4;
    case FrameType::kFatal:
      return kMaxTextBytes;
  }
  return 0;
}

std::array<std::uint8_t, kFrameHeaderBytes> EncodeFrameHeader(FrameType type, std::size_t size) {
  return {kFrameMagic, static_cast<std::uint8_t>(type), static_cast<std::uint8_t>(size & 0xff),
          static_cast<std::uint8_t>(size >> 8)};
}

FrameStep NextFrame(std::span<const std::uint8_t> input) {
  FrameStep step;
  // Judge each header byte as soon as it arrives, so a corrupt stream is reported
  // at once instead of after waiting for a payload that will never come.
  if (input.empty()) return step;
  if (input[0] != kFrameMagic) {
    step.outcome = FrameStep::Outcome::kBad;
    step.error = "bad frame magic";
    return step;
  }
  if (input.size() < 2) return step;
  const std::size_t max = MaxPayload(input[1]);
  if (max == 0) {
    step.outcome = FrameStep::Outcome::kBad;
    step.error = "unknown frame type";
    return step;
  }
  if (input.size() < kFrameHeaderBytes) return step;
  const std::size_t size = input[2] | (std::size_t{input[3]} << 8);
  const auto type = static_cast<FrameType>(input[1]);
  const bool empty_allowed = type == FrameType::kHello || type == FrameType::kFatal;
  if (size > max || (size == 0 && !empty_allowed) || (type == FrameType::kStats && size != max)) {
    step.outcome = FrameStep::Outcome::kBad;
    step.error = "bad frame length";
    return step;
  }
  if (input.size() < kFrameHeaderBytes + size) return step;
  step.outcome = FrameStep::Outcome::kFrame;
  step.consumed = kFrameHeaderBytes + size;
  step.type = type;
  step.payload = input.subspan(kFrameHeaderBytes, size);
  return step;
}

std::string EncodeLogPayload(WorkerLogLevel level, std::string_view text) {
  std::string payload(1, static_cast<char>(level));
  payload.append(text.substr(0, kMaxTextBytes));
  return payload;
}

std::optional<LogPayload> DecodeLogPayload(std::span<const std::uint8_t> payload) {
  if (payload.empty()) return std::nullopt;
  const auto level = static_cast<WorkerLogLevel>(payload[0]);
  switch (level) {
    case WorkerLogLevel::kDebug:
    case WorkerLogLevel::kInfo:
    case WorkerLogLevel::kWarning:
    case WorkerLogLevel::kError:
      return LogPayload{level, std::string(payload.begin() + 1, payload.end())};
  }
  return std::nullopt;
}

std::array<std::uint8_t, kRuntimeInfoFloats * 4> EncodeRuntimeInfo(
    const std::array<float, kRuntimeInfoFloats>& values) {
  std::array<std::uint8_t, kRuntimeInfoFloats * 4> out{};
  for (std::size_t i = 0; i < kRuntimeInfoFloats; ++i) {
    const auto bits = std::bit_cast<std::uint32_t>(values[i]);
    for (std::size_t b = 0; b < 4; ++b) out[i * 4 + b] = static_cast<std::uint8_t>(bits >> (8 * b));
  }
  return out;
}

std::optional<std::array<float, kRuntimeInfoFloats>> DecodeRuntimeInfo(
    std::span<const std::uint8_t> payload) {
  if (payload.size() != kRuntimeInfoFloats * 4) return std::nullopt;
  std::array<float, kRuntimeInfoFloats> values{};
  for (std::size_t i = 0; i < kRuntimeInfoFloats; ++i) {
    std::uint32_t bits = 0;
    for (std::size_t b = 0; b < 4; ++b) bits |= std::uint32_t{payload[i * 4 + b]} << (8 * b);
    values[i] = std::bit_cast<float>(bits);
  }
  return values;
}

}  // namespace rngmux::qwqng
