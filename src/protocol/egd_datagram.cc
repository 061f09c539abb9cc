#include "protocol/egd_datagram.h"

#include <cstdio>

namespace rngmux {

std::size_t MaxEgdReplyBytes(const EgdRequest& request, std::size_t pid_reply_bytes) {
  switch (request.command) {
    case EgdCommand::kEntropyAvailable:
      return 4;
    case EgdCommand::kReadNonBlocking:
      return 1 + std::size_t{request.count};
    case EgdCommand::kReadBlocking:
      return request.count;
    case EgdCommand::kWriteEntropy:
      return 0;
    case EgdCommand::kGetPid:
      return pid_reply_bytes;
  }
  return 0;
}

std::string EgdDatagram::Problem() const {
  switch (outcome) {
    case Outcome::kRequests:
    case Outcome::kEmpty:
      return "";
    case Outcome::kTooLong:
      return "datagram longer than " + std::to_string(kMaxEgdDatagramBytes) + " bytes";
    case Outcome::kBadCommand: {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", bad_byte);
      return std::string("unknown EGD command ") + hex;
    }
    case Outcome::kIncomplete:
      return "incomplete EGD request at the end of a datagram";
    case Outcome::kAsksTooMuch:
      return "datagram asks for " + std::to_string(reply_bytes) + " reply bytes (at most " +
             std::to_string(kMaxEgdDatagramBytes) + ")";
  }
  return "";
}

EgdDatagram ParseEgdDatagram(std::span<const std::uint8_t> payload, std::size_t pid_reply_bytes) {
  EgdDatagram out;
  if (payload.empty()) return out;
  if (payload.size() > kMaxEgdDatagramBytes) {
    out.outcome = EgdDatagram::Outcome::kTooLong;
    return out;
  }
  EgdParser parser;
  while (!payload.empty()) {
    const EgdParser::Step step = parser.Next(payload);
    payload = payload.subspan(step.consumed);
    if (step.outcome == EgdParser::Outcome::kBadCommand) {
      out.outcome = EgdDatagram::Outcome::kBadCommand;
      out.bad_byte = step.bad_byte;
      out.requests.clear();
      return out;
    }
    if (step.outcome == EgdParser::Outcome::kRequest) {
      out.requests.push_back(step.request);
      out.reply_bytes += MaxEgdReplyBytes(step.request, pid_reply_bytes);
    }
  }
  if (!parser.idle()) {
    out.outcome = EgdDatagram::Outcome::kIncomplete;
    out.requests.clear();
    return out;
  }
  if (out.reply_bytes > kMaxEgdDatagramBytes) {
    out.outcome = EgdDatagram::Outcome::kAsksTooMuch;
    out.requests.clear();
    return out;
  }
  out.outcome = EgdDatagram::Outcome::kRequests;
  return out;
}

}  // namespace rngmux
