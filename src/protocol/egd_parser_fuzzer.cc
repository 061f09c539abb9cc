// libFuzzer target for EgdParser. Feeds the same input whole, byte by byte and in
// chunks whose sizes come from the input, and traps unless all three agree with
// each other and with a direct, non-incremental reading of the EGD grammar. The
// input is also parsed as one UDP datagram, which must agree with the same reading
// and never let through requests worth more than one reply datagram.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "protocol/egd_datagram.h"
#include "protocol/egd_parser.h"

namespace rngmux {
namespace {

struct Event {
  bool bad = false;
  EgdCommand command = EgdCommand::kEntropyAvailable;
  std::uint8_t count = 0;
  std::uint16_t entropy_bits = 0;
  std::uint8_t bad_byte = 0;
  std::size_t end_offset = 0;  // stream offset just past the request, or of the bad byte

  bool operator==(const Event&) const = default;
};

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

class Recorder {
 public:
  // Feeds one chunk, draining it the way a session does. Returns false once the
  // parser has reported kBadCommand.
  bool Feed(std::span<const std::uint8_t> chunk) {
    while (true) {
      const EgdParser::Step step = parser_.Next(chunk);
      Check(step.consumed <= chunk.size());
      offset_ += step.consumed;
      switch (step.outcome) {
        case EgdParser::Outcome::kNeedMore:
          Check(step.consumed == chunk.size());
          return true;
        case EgdParser::Outcome::kRequest:
          Check(step.consumed > 0);
          Check(parser_.idle());
          events_.push_back(Event{false, step.request.command, step.request.count,
                                  step.request.entropy_bits, 0, offset_});
          chunk = chunk.subspan(step.consumed);
          if (chunk.empty()) return true;
          break;
        case EgdParser::Outcome::kBadCommand:
          Check(step.consumed == 0);
          Check(!parser_.idle());
          events_.push_back(Event{true, {}, 0, 0, step.bad_byte, offset_});
          CheckStaysBad(chunk, step.bad_byte);
          return false;
      }
    }
  }

  const std::vector<Event>& events() const { return events_; }

 private:
  void CheckStaysBad(std::span<const std::uint8_t> rest, std::uint8_t bad_byte) {
    for (std::span<const std::uint8_t> later :
         {rest, rest.subspan(rest.empty() ? 0 : 1), std::span<const std::uint8_t>()}) {
      const EgdParser::Step again = parser_.Next(later);
      Check(again.outcome == EgdParser::Outcome::kBadCommand);
      Check(again.consumed == 0);
      Check(again.bad_byte == bad_byte);
    }
  }

  EgdParser parser_;
  std::vector<Event> events_;
  std::size_t offset_ = 0;
};

std::vector<Event> FeedWhole(std::span<const std::uint8_t> data) {
  Recorder recorder;
  recorder.Feed(data);
  return recorder.events();
}

std::vector<Event> FeedByteByByte(std::span<const std::uint8_t> data) {
  Recorder recorder;
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (!recorder.Feed(data.subspan(i, 1))) break;
  }
  return recorder.events();
}

// Chunk sizes 0..31 drawn from an xorshift generator seeded by the data, so the
// fuzzer explores split points (including empty feeds) by mutating the input.
std::vector<Event> FeedInDataDrivenChunks(std::span<const std::uint8_t> data) {
  std::uint32_t state = 2166136261u;
  for (std::uint8_t byte : data) state = (state ^ byte) * 16777619u;
  if (state == 0) state = 1;
  Recorder recorder;
  std::size_t pos = 0;
  while (true) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    const std::size_t size = std::min<std::size_t>(state % 32, data.size() - pos);
    if (!recorder.Feed(data.subspan(pos, size))) break;
    pos += size;
    if (pos == data.size()) break;
  }
  return recorder.events();
}

// The grammar read directly off the whole buffer, as the oracle.
std::vector<Event> Reference(std::span<const std::uint8_t> data) {
  std::vector<Event> events;
  std::size_t pos = 0;
  while (pos < data.size()) {
    const std::uint8_t command = data[pos];
    Event event;
    std::size_t length = 0;
    if (command == 0x00 || command == 0x04) {
      length = 1;
    } else if (command == 0x01 || command == 0x02) {
      if (data.size() - pos < 2) break;
      event.count = data[pos + 1];
      length = 2;
    } else if (command == 0x03) {
      if (data.size() - pos < 4) break;
      event.entropy_bits = static_cast<std::uint16_t>(data[pos + 1] << 8 | data[pos + 2]);
      event.count = data[pos + 3];
      length = 4 + std::size_t{event.count};
      if (data.size() - pos < length) break;
    } else {
      event.bad = true;
      event.bad_byte = command;
      event.end_offset = pos;
      events.push_back(event);
      break;
    }
    event.command = static_cast<EgdCommand>(command);
    pos += length;
    event.end_offset = pos;
    events.push_back(event);
  }
  return events;
}

void CheckDatagram(std::span<const std::uint8_t> input, const std::vector<Event>& events) {
  constexpr std::size_t kPidReply = 8;
  const EgdDatagram datagram = ParseEgdDatagram(input, kPidReply);
  const bool has_bad = !events.empty() && events.back().bad;
  const bool whole =
      !has_bad && (events.empty() ? input.empty() : events.back().end_offset == input.size());
  switch (datagram.outcome) {
    case EgdDatagram::Outcome::kEmpty:
      Check(input.empty());
      break;
    case EgdDatagram::Outcome::kTooLong:
      Check(input.size() > kMaxEgdDatagramBytes);
      break;
    case EgdDatagram::Outcome::kBadCommand:
      Check(input.size() <= kMaxEgdDatagramBytes && has_bad);
      Check(datagram.bad_byte == events.back().bad_byte);
      break;
    case EgdDatagram::Outcome::kIncomplete:
      Check(input.size() <= kMaxEgdDatagramBytes && !has_bad && !whole);
      break;
    case EgdDatagram::Outcome::kAsksTooMuch:
      Check(whole && datagram.reply_bytes > kMaxEgdDatagramBytes);
      break;
    case EgdDatagram::Outcome::kRequests: {
      Check(whole && !input.empty() && input.size() <= kMaxEgdDatagramBytes);
      Check(datagram.requests.size() == events.size());
      std::size_t reply_bytes = 0;
      for (std::size_t i = 0; i < events.size(); ++i) {
        Check(datagram.requests[i].command == events[i].command);
        Check(datagram.requests[i].count == events[i].count);
        reply_bytes += MaxEgdReplyBytes(datagram.requests[i], kPidReply);
      }
      Check(reply_bytes == datagram.reply_bytes && reply_bytes <= kMaxEgdDatagramBytes);
      break;
    }
  }
  if (!datagram.ok()) Check(datagram.requests.empty());
}

}  // namespace
}  // namespace rngmux

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rngmux;
  const std::span<const std::uint8_t> input(data, size);
  const std::vector<Event> whole = FeedWhole(input);
  Check(whole == Reference(input));
  Check(whole == FeedByteByByte(input));
  Check(whole == FeedInDataDrivenChunks(input));
  CheckDatagram(input, whole);
  return 0;
}
