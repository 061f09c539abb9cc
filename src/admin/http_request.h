#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace rngmux {

// Parses the head of an HTTP/1.x request (the request line and the header lines, up
// to the empty line) for the metrics endpoint, fed as bytes arrive; does no I/O.
// Only the method and the path are kept: the endpoint answers GET and HEAD of one
// path, and closes every connection after one answer, so headers are checked for
// form only and a body is never read.
//
// Bad requests, with these texts:
//   request head longer than 8192 bytes
//   malformed request line
//   unsupported HTTP version "HTTP/2.0"
//   malformed header line
//   request has a byte that is not allowed (0x00)
//
//   HttpRequestParser parser;
//   if (parser.Feed(bytes) == HttpRequestParser::Result::kComplete)
//     Answer(parser.method(), parser.path());
class HttpRequestParser {
 public:
  static constexpr std::size_t kMaxHeadBytes = 8192;
  enum class Result { kNeedMore, kComplete, kBad };

  // Feeding after kComplete or kBad returns the same result again.
  Result Feed(std::span<const char> bytes);
  const std::string& method() const { return method_; }
  // The target without its query ("/metrics" for "/metrics?x=1").
  const std::string& path() const { return path_; }
  const std::string& error() const { return error_; }

 private:
  // One line without its "\r\n" (or bare "\n").
  Result Line(const std::string& line);
  Result Bad(std::string error);

  Result result_ = Result::kNeedMore;
  std::size_t consumed_ = 0;
  bool have_request_line_ = false;
  std::string line_;
  std::string method_;
  std::string path_;
  std::string error_;
};

}  // namespace rngmux
