// libFuzzer target for HttpRequestParser. Feeds the input whole, byte by byte and in
// chunks whose sizes come from the input, and traps unless the three agree on the
// result, the method, the path and the error, and a complete request's path starts
// with '/' and holds no query.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "admin/http_request.h"
#include "common/chunked_fuzz_input.h"

namespace rngmux {
namespace {

struct Outcome {
  HttpRequestParser::Result result;
  std::string method;
  std::string path;
  std::string error;
  bool operator==(const Outcome&) const = default;
};

Outcome Finish(const HttpRequestParser& parser, HttpRequestParser::Result result) {
  const bool complete = result == HttpRequestParser::Result::kComplete;
  return {result, complete ? parser.method() : "", complete ? parser.path() : "", parser.error()};
}

Outcome Chunked(std::span<const char> input, std::span<const std::uint8_t> sizes, bool whole) {
  HttpRequestParser parser;
  if (whole) return Finish(parser, parser.Feed(input));
  return Finish(parser,
                FeedInChunks(parser, input, sizes, 64, HttpRequestParser::Result::kNeedMore));
}

}  // namespace
}  // namespace rngmux

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rngmux;
  const auto [sizes, input] = ChunkedFuzzInput::Split(data, size);
  const Outcome whole = Chunked(input, {}, true);
  FuzzCheck(whole == Chunked(input, {}, false));
  FuzzCheck(whole == Chunked(input, sizes, false));
  switch (whole.result) {
    case HttpRequestParser::Result::kComplete:
      FuzzCheck(!whole.method.empty() && !whole.path.empty() && whole.path[0] == '/');
      FuzzCheck(whole.path.find('?') == std::string::npos);
      FuzzCheck(whole.error.empty());
      break;
    case HttpRequestParser::Result::kBad:
      FuzzCheck(!whole.error.empty());
      break;
    case HttpRequestParser::Result::kNeedMore:
      FuzzCheck(input.size() <= HttpRequestParser::kMaxHeadBytes);
      break;
  }
  return 0;
}
