#include "admin/control_request.h"

#include <cstdio>

namespace rngmux {

const char* ControlCommandName(ControlCommand command) {
  switch (command) {
    case ControlCommand::kStatus:
      return "status";
    case ControlCommand::kStats:
      return "stats";
    case ControlCommand::kReload:
      return "reload";
  }
  return "?";
}

ControlRequestParser::Result ControlRequestParser::Feed(std::span<const char> bytes) {
  for (char c : bytes) {
    if (result_ != Result::kNeedMore) break;
    if (line_.size() >= kMaxControlRequestBytes) {
      error_ = "request line longer than " + std::to_string(kMaxControlRequestBytes) + " bytes";
      result_ = Result::kBad;
      break;
    }
    if (c == '\n') {
      result_ = Finish();
      break;
    }
    const auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && c != '\r') || byte > 0x7e) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned>(byte));
      error_ = std::string("request has a byte that is not printable ASCII (") + hex + ")";
      result_ = Result::kBad;
      break;
    }
    line_ += c;
  }
  return result_;
}

ControlRequestParser::Result ControlRequestParser::Finish() {
  std::string_view line = line_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.find('\r') != std::string_view::npos) {
    error_ = "request has a byte that is not printable ASCII (0x0d)";
    return Result::kBad;
  }
  for (ControlCommand command :
       {ControlCommand::kStatus, ControlCommand::kStats, ControlCommand::kReload}) {
    if (line == ControlCommandName(command)) {
      command_ = command;
      return Result::kComplete;
    }
  }
  error_ = "unknown request \"" + std::string(line) + "\" (expected status, stats or reload)";
  return Result::kBad;
}

}  // namespace rngmux
