#include "protocol/egd_parser.h"

#include <algorithm>

namespace rngmux {
namespace {

bool IsKnownCommand(std::uint8_t byte) {
  return byte <= static_cast<std::uint8_t>(EgdCommand::kGetPid);
}

}  // namespace

EgdParser::Step EgdParser::Next(std::span<const std::uint8_t> input) {
  Step step;
  if (state_ == State::kBad) {
    step.outcome = Outcome::kBadCommand;
    step.bad_byte = bad_byte_;
    return step;
  }

  std::size_t pos = 0;
  // Completes the pending request; the caller's loop hands it out one at a time
  // so that pipelined requests are answered strictly in order.
  auto finish = [&]() {
    step.outcome = Outcome::kRequest;
    step.consumed = pos;
    step.request = pending_;
    pending_ = EgdRequest{};
    state_ = State::kCommand;
    return step;
  };

  while (pos < input.size()) {
    switch (state_) {
      case State::kCommand: {
        const std::uint8_t byte = input[pos];
        if (!IsKnownCommand(byte)) {
          // The bad byte is left unconsumed: nothing after it can be interpreted.
          state_ = State::kBad;
          bad_byte_ = byte;
          step.outcome = Outcome::kBadCommand;
          step.consumed = pos;
          step.bad_byte = byte;
          return step;
        }
        ++pos;
        pending_ = EgdRequest{};
        pending_.command = static_cast<EgdCommand>(byte);
        switch (pending_.command) {
          case EgdCommand::kEntropyAvailable:
          case EgdCommand::kGetPid:
            return finish();
          case EgdCommand::kReadNonBlocking:
          case EgdCommand::kReadBlocking:
            state_ = State::kCount;
            break;
          case EgdCommand::kWriteEntropy:
            state_ = State::kBitsHigh;
            break;
        }
        break;
      }
      case State::kCount:
        pending_.count = input[pos++];
        return finish();
      case State::kBitsHigh:
        pending_.entropy_bits = static_cast<std::uint16_t>(input[pos++] << 8);
        state_ = State::kBitsLow;
        break;
      case State::kBitsLow:
        pending_.entropy_bits = static_cast<std::uint16_t>(pending_.entropy_bits | input[pos++]);
        state_ = State::kPayloadCount;
        break;
      case State::kPayloadCount:
        pending_.count = input[pos++];
        payload_left_ = pending_.count;
        if (payload_left_ == 0) return finish();
        state_ = State::kPayload;
        break;
      case State::kPayload: {
        const std::size_t take = std::min(payload_left_, input.size() - pos);
        pos += take;
        payload_left_ -= take;
        if (payload_left_ == 0) return finish();
        break;
      }
      case State::kBad:
        break;  // Handled before the loop; the state cannot change to kBad inside it.
    }
  }

  step.outcome = Outcome::kNeedMore;
  step.consumed = pos;
  return step;
}

}  // namespace rngmux
