// libFuzzer target for UDP request datagrams. The input is a run of datagrams, each
// a 2-byte little-endian length and then up to that many bytes (lengths beyond
// kMaxEgdDatagramBytes are kept, to exercise kTooLong); the first byte is the length
// of the PID reply. Every datagram is parsed by ParseEgdDatagram and, as the oracle,
// by the stream parser (EgdParser) over the same bytes; traps unless they agree and
// an accepted datagram never asks for more than one reply datagram's worth.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "protocol/egd_datagram.h"
#include "protocol/egd_parser.h"

namespace rngmux {
namespace {

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

void CheckOne(std::span<const std::uint8_t> payload, std::size_t pid_reply_bytes) {
  const EgdDatagram datagram = ParseEgdDatagram(payload, pid_reply_bytes);
  if (!datagram.ok()) {
    Check(datagram.requests.empty());
    if (datagram.outcome != EgdDatagram::Outcome::kEmpty) Check(!datagram.Problem().empty());
  }
  if (payload.empty()) {
    Check(datagram.outcome == EgdDatagram::Outcome::kEmpty);
    return;
  }
  if (payload.size() > kMaxEgdDatagramBytes) {
    Check(datagram.outcome == EgdDatagram::Outcome::kTooLong);
    return;
  }

  // The oracle: the stream parser over the same bytes.
  EgdParser parser;
  std::vector<EgdRequest> requests;
  std::span<const std::uint8_t> rest = payload;
  bool bad = false;
  std::uint8_t bad_byte = 0;
  for (std::size_t guard = 0; !rest.empty() && guard <= payload.size(); ++guard) {
    const EgdParser::Step step = parser.Next(rest);
    if (step.outcome == EgdParser::Outcome::kBadCommand) {
      bad = true;
      bad_byte = step.bad_byte;
      break;
    }
    rest = rest.subspan(step.consumed);
    if (step.outcome == EgdParser::Outcome::kNeedMore) break;
    requests.push_back(step.request);
  }
  const bool complete = !bad && parser.idle();
  std::size_t reply_bytes = 0;
  for (const EgdRequest& request : requests) {
    reply_bytes += MaxEgdReplyBytes(request, pid_reply_bytes);
  }

  switch (datagram.outcome) {
    case EgdDatagram::Outcome::kBadCommand:
      Check(bad && datagram.bad_byte == bad_byte);
      break;
    case EgdDatagram::Outcome::kIncomplete:
      Check(!bad && !complete);
      break;
    case EgdDatagram::Outcome::kAsksTooMuch:
      Check(complete && reply_bytes > kMaxEgdDatagramBytes);
      break;
    case EgdDatagram::Outcome::kRequests:
      Check(complete && reply_bytes <= kMaxEgdDatagramBytes);
      Check(datagram.reply_bytes == reply_bytes);
      Check(datagram.requests.size() == requests.size());
      for (std::size_t i = 0; i < requests.size(); ++i) {
        Check(datagram.requests[i].command == requests[i].command);
        Check(datagram.requests[i].count == requests[i].count);
        Check(datagram.requests[i].entropy_bits == requests[i].entropy_bits);
      }
      break;
    case EgdDatagram::Outcome::kEmpty:
    case EgdDatagram::Outcome::kTooLong:
      Check(false);
      break;
  }
}

}  // namespace
}  // namespace rngmux

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t pid_reply_bytes = data[0];
  std::span<const std::uint8_t> rest(data + 1, size - 1);
  while (rest.size() >= 2) {
    const std::size_t length =
        std::min<std::size_t>(rest[0] | (std::size_t{rest[1]} << 8), rest.size() - 2);
    rngmux::CheckOne(rest.subspan(2, length), pid_reply_bytes);
    rest = rest.subspan(2 + length);
  }
  return 0;
}
