// libFuzzer target for the QNG worker's frame decoder (what rngmux reads from the
// worker's pipe). Decodes the input whole and in pieces whose sizes come from the
// input, the way the source appends what arrives to what is left, and traps unless
// both give the same frames, every frame re-encodes to exactly the bytes it was
// read from, and payload readers accept only well-formed payloads.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sources/qwqng/frame.h"

namespace rngmux::qwqng {
namespace {

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

struct Decoded {
  std::vector<std::vector<std::uint8_t>> frames;  // header + payload, as read
  bool bad = false;
  bool operator==(const Decoded&) const = default;
};

// Consumes every complete frame at the start of `buffer`; returns false on kBad.
bool Drain(std::vector<std::uint8_t>& buffer, Decoded& out) {
  std::size_t pos = 0;
  while (true) {
    const std::span<const std::uint8_t> input(buffer.data() + pos, buffer.size() - pos);
    const FrameStep step = NextFrame(input);
    if (step.outcome == FrameStep::Outcome::kNeedMore) {
      Check(step.consumed == 0);
      break;
    }
    if (step.outcome == FrameStep::Outcome::kBad) {
      Check(!step.error.empty());
      out.bad = true;
      return false;
    }
    Check(step.consumed == kFrameHeaderBytes + step.payload.size());
    Check(step.consumed <= input.size());
    Check(step.payload.data() == input.data() + kFrameHeaderBytes);
    Check(!step.payload.empty() || step.type != FrameType::kData);
    Check(step.payload.size() <= MaxPayload(static_cast<std::uint8_t>(step.type)));
    const auto header = EncodeFrameHeader(step.type, step.payload.size());
    Check(std::equal(header.begin(), header.end(), input.begin()));
    if (step.type == FrameType::kLog) {
      const auto log = DecodeLogPayload(step.payload);
      if (log) {
        const std::string encoded = EncodeLogPayload(log->level, log->text);
        Check(encoded.size() == step.payload.size());
        for (std::size_t i = 0; i < encoded.size(); ++i) {
          Check(static_cast<std::uint8_t>(encoded[i]) == step.payload[i]);
        }
      }
    } else if (step.type == FrameType::kStats) {
      const auto info = DecodeRuntimeInfo(step.payload);
      Check(info.has_value() == (step.payload.size() == kRuntimeInfoFloats * 4));
    }
    out.frames.emplace_back(input.begin(),
                            input.begin() + static_cast<std::ptrdiff_t>(step.consumed));
    pos += step.consumed;
  }
  buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(pos));
  return true;
}

Decoded Whole(std::span<const std::uint8_t> data) {
  Decoded out;
  std::vector<std::uint8_t> buffer(data.begin(), data.end());
  Drain(buffer, out);
  return out;
}

Decoded InPieces(std::span<const std::uint8_t> data) {
  std::uint32_t state = 2166136261u;
  for (std::uint8_t byte : data) state = (state ^ byte) * 16777619u;
  if (state == 0) state = 1;
  Decoded out;
  std::vector<std::uint8_t> buffer;
  std::size_t pos = 0;
  while (pos < data.size()) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    const std::size_t size = std::min<std::size_t>(state % 64, data.size() - pos);
    buffer.insert(buffer.end(), data.begin() + static_cast<std::ptrdiff_t>(pos),
                  data.begin() + static_cast<std::ptrdiff_t>(pos + size));
    pos += size;
    if (!Drain(buffer, out)) break;
  }
  return out;
}

}  // namespace
}  // namespace rngmux::qwqng

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rngmux::qwqng;
  const std::span<const std::uint8_t> input(data, size);
  const Decoded whole = Whole(input);
  Check(whole == InPieces(input));
  return 0;
}
