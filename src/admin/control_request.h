#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace rngmux {

// The control socket's requests: one line naming what the client wants.
enum class ControlCommand { kStatus, kStats, kReload };

// "status", "stats" or "reload".
const char* ControlCommandName(ControlCommand command);

// Parses the one request line a control client sends, fed as bytes arrive; does no
// I/O. The line is a command name ended by "\n" (a "\r" before it is allowed), at most
// kMaxControlRequestBytes with its end. Anything else is bad, with one of these texts:
//   request line longer than 64 bytes
//   request has a byte that is not printable ASCII (0x01)
//   unknown request "frobnicate" (expected status, stats or reload)
// Bytes after the line are ignored: one connection carries one request.
//
//   ControlRequestParser parser;
//   switch (parser.Feed(bytes)) {
//     case ControlRequestParser::Result::kNeedMore: read again
//     case ControlRequestParser::Result::kComplete: answer parser.command()
//     case ControlRequestParser::Result::kBad: log parser.error(), close
//   }
class ControlRequestParser {
 public:
  static constexpr std::size_t kMaxControlRequestBytes = 64;
  enum class Result { kNeedMore, kComplete, kBad };

  // Feeding after kComplete or kBad returns the same result again.
  Result Feed(std::span<const char> bytes);
  ControlCommand command() const { return command_; }
  const std::string& error() const { return error_; }

 private:
  Result Finish();

  Result result_ = Result::kNeedMore;
  std::string line_;
  ControlCommand command_ = ControlCommand::kStatus;
  std::string error_;
};

}  // namespace rngmux
