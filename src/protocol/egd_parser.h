#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace rngmux {

// Largest read one EGD request can ask for (the count is one byte).
inline constexpr std::size_t kMaxEgdRequestBytes = 255;

enum class EgdCommand : std::uint8_t {
  kEntropyAvailable = 0x00,  // reply: u32 big-endian, bits available
  kReadNonBlocking = 0x01,   // 01 NN -> MM + MM bytes
  kReadBlocking = 0x02,      // 02 NN -> exactly NN bytes
  kWriteEntropy = 0x03,      // 03 HH LL NN + NN bytes -> no reply
  kGetPid = 0x04,            // 04 -> LL + LL ASCII digits
};

struct EgdRequest {
  EgdCommand command = EgdCommand::kEntropyAvailable;
  std::uint8_t count = 0;          // NN for 0x01, 0x02 and 0x03 (payload length)
  std::uint16_t entropy_bits = 0;  // HHLL for 0x03
};

// Incremental EGD request parser. It does no I/O and never allocates: feed it
// whatever bytes arrived, in any split, and it returns one step at a time.
// The 0x03 payload is consumed and dropped here (its bytes are never stored);
// the request is reported once the whole payload has been read.
//
//   EgdParser parser;
//   while (!input.empty()) {
//     auto step = parser.Next(input);
//     input = input.subspan(step.consumed);
//     if (step.outcome == EgdParser::Outcome::kRequest) handle(step.request);
//     if (step.outcome == EgdParser::Outcome::kBadCommand) close();
//   }
//
// Each call returns at most one request, so requests pipelined in one buffer come
// out in order, one per call. kNeedMore always consumes the whole input.
//
// After kBadCommand the stream cannot be resynchronised; the parser stays in the
// bad state and every later call returns kBadCommand consuming nothing.
class EgdParser {
 public:
  enum class Outcome {
    kNeedMore,    // all input consumed, no complete request yet
    kRequest,     // `request` is complete; `consumed` bytes of input were used
    kBadCommand,  // `bad_byte` is not an EGD command; it is not consumed (`consumed` == 0)
  };
  struct Step {
    Outcome outcome = Outcome::kNeedMore;
    std::size_t consumed = 0;
    EgdRequest request;
    std::uint8_t bad_byte = 0;
  };

  Step Next(std::span<const std::uint8_t> input);

  // True between requests (no partial request buffered).
  bool idle() const { return state_ == State::kCommand; }

 private:
  enum class State { kCommand, kCount, kBitsHigh, kBitsLow, kPayloadCount, kPayload, kBad };
  State state_ = State::kCommand;
  EgdRequest pending_;
  std::size_t payload_left_ = 0;
  std::uint8_t bad_byte_ = 0;
};

}  // namespace rngmux
