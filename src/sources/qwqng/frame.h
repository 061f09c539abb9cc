#pragma once

// The pipe protocol between rngmux and its QNG worker process. The worker writes
// frames; rngmux only reads. Both sides are built from this one file, so the
// protocol has no version: a worker always comes from the same build as rngmux.
//
// A frame is a 4-byte header and a payload:
//   byte 0     kFrameMagic ('Q'), to catch a stream that is out of step
//   byte 1     FrameType
//   bytes 2-3  payload length, little-endian, at most MaxPayload(type)

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace rngmux::qwqng {

inline constexpr std::uint8_t kFrameMagic = 'Q';
inline constexpr std::size_t kFrameHeaderBytes = 4;
// libqwqng refuses reads above 8192 bytes (and poisons its session when asked).
inline constexpr std::size_t kMaxReadBytes = 8192;
inline constexpr std::size_t kMaxTextBytes = 2048;
// QWQNG::RuntimeInfo() fills 17 floats: [0] the device's statistics status, then
// its per-channel statistics.
inline constexpr std::size_t kRuntimeInfoFloats = 17;

enum class FrameType : std::uint8_t {
  kHello = 'H',  // the device is open; payload: its serial (DeviceID())
  kData = 'D',   // bytes from a read that returned success; 1 to kMaxReadBytes
  kLog = 'L',    // payload: a LogLevelByte, then text
  kStats = 'S',  // RuntimeInfo(): kRuntimeInfoFloats IEEE-754 floats, little-endian
  kFatal = 'F',  // why the worker is about to exit; payload: text
};

// The level byte of a kLog payload.
enum class WorkerLogLevel : std::uint8_t {
  kDebug = 'D',
  kInfo = 'I',
  kWarning = 'W',
  kError = 'E',
};

// Largest payload a frame of `type` may carry; 0 for an unknown type.
std::size_t MaxPayload(std::uint8_t type);

// The header for a payload of `size` bytes, which must be valid for `type`.
std::array<std::uint8_t, kFrameHeaderBytes> EncodeFrameHeader(FrameType type, std::size_t size);

// One step of decoding, in the manner of the EGD parser: no I/O, no allocation,
// no state. The caller keeps unconsumed input and appends what arrives next.
struct FrameStep {
  enum class Outcome {
    kNeedMore,  // no complete frame at the start of input; nothing consumed
    kFrame,     // type/payload are valid; `consumed` bytes of input were used
    kBad,       // the stream is corrupt (error says how); it cannot be resynchronised
  };
  Outcome outcome = Outcome::kNeedMore;
  std::size_t consumed = 0;
  FrameType type = FrameType::kData;
  std::span<const std::uint8_t> payload;  // points into input
  std::string_view error;                 // static text, for kBad
};
FrameStep NextFrame(std::span<const std::uint8_t> input);

// Payload builders and readers for the frames that are not raw bytes.
std::string EncodeLogPayload(WorkerLogLevel level, std::string_view text);
struct LogPayload {
  WorkerLogLevel level;
  std::string text;
};
std::optional<LogPayload> DecodeLogPayload(std::span<const std::uint8_t> payload);

std::array<std::uint8_t, kRuntimeInfoFloats * 4> EncodeRuntimeInfo(
    const std::array<float, kRuntimeInfoFloats>& values);
std::optional<std::array<float, kRuntimeInfoFloats>> DecodeRuntimeInfo(
    std::span<const std::uint8_t> payload);

}  // namespace rngmux::qwqng
