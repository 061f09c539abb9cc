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

namespace rngmux {
namespace {

struct Outcome {
  HttpRequestParser::Result result;
  std::string method;
  std::string path;
  std::string error;
  bool operator==(const Outcome&) const = default;
};

void Check(bool condition) {
  if (!condition) std::abort();
}

Outcome Finish(const HttpRequestParser& parser, HttpRequestParser::Result result) {
  const bool complete = result == HttpRequestParser::Result::kComplete;
  return {result, complete ? parser.method() : "", complete ? parser.path() : "", parser.error()};
}

Outcome Chunked(std::span<const char> input, std::span<const std::uint8_t> sizes, bool whole) {
  HttpRequestParser parser;
  if (whole) return Finish(parser, parser.Feed(input));
  HttpRequestParser::Result result = HttpRequestParser::Result::kNeedMore;
  std::size_t offset = 0;
  std::size_t i = 0;
  while (offset < input.size()) {
    std::size_t n = sizes.empty() ? 1 : 1 + sizes[i++ % sizes.size()] % 64;
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
  const Outcome whole = Chunked(input, {}, true);
  Check(whole == Chunked(input, {}, false));
  Check(whole == Chunked(input, sizes, false));
  switch (whole.result) {
    case HttpRequestParser::Result::kComplete:
      Check(!whole.method.empty() && !whole.path.empty() && whole.path[0] == '/');
      Check(whole.path.find('?') == std::string::npos);
      Check(whole.error.empty());
      break;
    case HttpRequestParser::Result::kBad:
      Check(!whole.error.empty());
      break;
    case HttpRequestParser::Result::kNeedMore:
      Check(input.size() <= HttpRequestParser::kMaxHeadBytes);
      break;
  }
  return 0;
}
