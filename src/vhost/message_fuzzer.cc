// libFuzzer target for the vhost-user message parser. The first byte of each step
// says how many descriptors "came with" the chunk, the next how long the chunk is,
// so splits and fd counts are explored as well as the bytes. Checked: the parser
// never consumes more than it was given, never wants 0 bytes unless bad, stays bad
// once bad, and a message it accepts has a payload size that fits its type.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "vhost/message.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rngmux::VhostUserParser parser;
  std::span<const std::uint8_t> input(data, size);
  bool bad = false;
  std::size_t fds = 0;
  while (input.size() >= 2) {
    fds += input[0] % 3;
    std::size_t chunk = input[1];
    input = input.subspan(2);
    if (chunk > input.size()) chunk = input.size();
    std::span<const std::uint8_t> piece = input.first(chunk);
    input = input.subspan(chunk);
    // Bounded: each call consumes at least one byte or ends the piece.
    for (int guard = 0; guard < 1024 && !piece.empty(); ++guard) {
      const std::size_t wanted = parser.wanted();
      if (!bad && wanted == 0) std::abort();
      const auto step = parser.Next(piece, fds);
      if (step.consumed > piece.size()) std::abort();
      if (bad && step.outcome != rngmux::VhostUserParser::Outcome::kBad) std::abort();
      if (step.outcome == rngmux::VhostUserParser::Outcome::kBad) {
        if (step.error.empty()) std::abort();
        bad = true;
        break;
      }
      if (step.outcome == rngmux::VhostUserParser::Outcome::kMessage) {
        if (step.message.size > rngmux::kMaxVhostUserPayloadBytes) std::abort();
        if (step.message.expected_fds() != fds) std::abort();
        if (step.message.region_count > rngmux::kMaxVhostUserRegions) std::abort();
        fds = 0;
      }
      if (step.consumed == 0 && step.outcome != rngmux::VhostUserParser::Outcome::kMessage) break;
      piece = piece.subspan(step.consumed);
    }
    if (bad) break;
  }
  return 0;
}
