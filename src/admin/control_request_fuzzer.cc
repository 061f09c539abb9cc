// libFuzzer target for ControlRequestParser. Feeds the input whole, byte by byte and
// in chunks whose sizes come from the input, and traps unless the three agree on the
// result, the command and the error, and a complete request names a known command.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "admin/control_request.h"
#include "common/chunked_fuzz_input.h"

namespace rngmux {
namespace {

struct Outcome {
  ControlRequestParser::Result result;
  ControlCommand command;
  std::string error;
  bool operator==(const Outcome&) const = default;
};

Outcome Finish(const ControlRequestParser& parser, ControlRequestParser::Result result) {
  return {result,
          result == ControlRequestParser::Result::kComplete ? parser.command()
                                                            : ControlCommand::kStatus,
          parser.error()};
}

Outcome Whole(std::span<const char> input) {
  ControlRequestParser parser;
  return Finish(parser, parser.Feed(input));
}

Outcome Chunked(std::span<const char> input, std::span<const std::uint8_t> sizes) {
  ControlRequestParser parser;
  return Finish(parser,
                FeedInChunks(parser, input, sizes, 16, ControlRequestParser::Result::kNeedMore));
}

}  // namespace
}  // namespace rngmux

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rngmux;
  const auto [sizes, input] = ChunkedFuzzInput::Split(data, size);
  const Outcome whole = Whole(input);
  FuzzCheck(whole == Chunked(input, {}));
  FuzzCheck(whole == Chunked(input, sizes));
  if (whole.result == ControlRequestParser::Result::kComplete) {
    FuzzCheck(whole.error.empty());
  } else if (whole.result == ControlRequestParser::Result::kBad) {
    FuzzCheck(!whole.error.empty());
  } else {
    // Still waiting: no newline seen, and never more than the limit held.
    FuzzCheck(input.size() <= ControlRequestParser::kMaxControlRequestBytes);
  }
  // Feeding more after a final answer changes nothing.
  if (whole.result != ControlRequestParser::Result::kNeedMore) {
    ControlRequestParser parser;
    parser.Feed(input);
    FuzzCheck(parser.Feed(input) == whole.result);
  }
  return 0;
}
