// libFuzzer target for ControlRequestParser. Feeds the input whole, byte by byte and
// in chunks whose sizes come from the input, and traps unless the three agree on the
// result, the command and the error, and a complete request names a known command.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "admin/control_request.h"

namespace rngmux {
namespace {

struct Outcome {
  ControlRequestParser::Result result;
  ControlCommand command;
  std::string error;
  bool operator==(const Outcome&) const = default;
};

void Check(bool condition) {
  if (!condition) std::abort();
}

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
  ControlRequestParser::Result result = ControlRequestParser::Result::kNeedMore;
  std::size_t offset = 0;
  std::size_t i = 0;
  while (offset < input.size()) {
    std::size_t n = sizes.empty() ? 1 : 1 + sizes[i++ % sizes.size()] % 16;
    if (n > input.size() - offset) n = input.size() - offset;
    result = parser.Feed(input.subspan(offset, n));
    offset += n;
  }
  return Finish(parser, result);
}

}  // namespace
}  // namespace rngmux

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rngmux;
  const std::size_t split = size > 0 ? data[0] % 8 : 0;
  const std::size_t header = size > 0 ? 1 + (split < size - 1 ? split : size - 1) : 0;
  std::span<const std::uint8_t> sizes(data + (size > 0 ? 1 : 0), header > 0 ? header - 1 : 0);
  std::span<const char> input(reinterpret_cast<const char*>(data) + header, size - header);
  const Outcome whole = Whole(input);
  Check(whole == Chunked(input, {}));
  Check(whole == Chunked(input, sizes));
  if (whole.result == ControlRequestParser::Result::kComplete) {
    Check(whole.error.empty());
  } else if (whole.result == ControlRequestParser::Result::kBad) {
    Check(!whole.error.empty());
  } else {
    // Still waiting: no newline seen, and never more than the limit held.
    Check(input.size() <= ControlRequestParser::kMaxControlRequestBytes);
  }
  // Feeding more after a final answer changes nothing.
  if (whole.result != ControlRequestParser::Result::kNeedMore) {
    ControlRequestParser parser;
    parser.Feed(input);
    Check(parser.Feed(input) == whole.result);
  }
  return 0;
}
