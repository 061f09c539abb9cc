#include "admin/http_request.h"

#include <cstdio>
#include <string_view>

namespace rngmux {
namespace {

// RFC 9110 token characters (methods, header names).
bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace

HttpRequestParser::Result HttpRequestParser::Bad(std::string error) {
  error_ = std::move(error);
  result_ = Result::kBad;
  return result_;
}

HttpRequestParser::Result HttpRequestParser::Feed(std::span<const char> bytes) {
  for (char c : bytes) {
    if (result_ != Result::kNeedMore) break;
    if (++consumed_ > kMaxHeadBytes) {
      return Bad("request head longer than " + std::to_string(kMaxHeadBytes) + " bytes");
    }
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') {
      if (!line_.empty() && line_.back() == '\r') line_.pop_back();
      const std::string line = std::move(line_);
      line_.clear();
      if (Line(line) != Result::kNeedMore) break;
      continue;
    }
    if ((byte < 0x20 && c != '\r' && c != '\t') || byte == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned>(byte));
      return Bad(std::string("request has a byte that is not allowed (") + hex + ")");
    }
    line_ += c;
  }
  return result_;
}

HttpRequestParser::Result HttpRequestParser::Line(const std::string& line) {
  if (line.find('\r') != std::string::npos) return Bad("malformed request line");
  if (!have_request_line_) {
    // RFC 9112 2.2: a server should ignore empty lines before the request line.
    if (line.empty()) return result_;
    const std::size_t first = line.find(' ');
    const std::size_t second =
        first == std::string::npos ? std::string::npos : line.find(' ', first + 1);
    if (second == std::string::npos || line.find(' ', second + 1) != std::string::npos) {
      return Bad("malformed request line");
    }
    const std::string method = line.substr(0, first);
    const std::string target = line.substr(first + 1, second - first - 1);
    const std::string version = line.substr(second + 1);
    if (method.empty() || target.empty() || target[0] != '/') {
      return Bad("malformed request line");
    }
    for (char c : method) {
      if (!IsTokenChar(c)) return Bad("malformed request line");
    }
    for (char c : target) {
      if (static_cast<unsigned char>(c) > 0x7e || c == '\t') return Bad("malformed request line");
    }
    if (version != "HTTP/1.1" && version != "HTTP/1.0") {
      if (version.rfind("HTTP/", 0) != 0) return Bad("malformed request line");
      return Bad("unsupported HTTP version \"" + version + "\"");
    }
    method_ = method;
    path_ = target.substr(0, target.find('?'));
    have_request_line_ = true;
    return result_;
  }
  if (line.empty()) {
    result_ = Result::kComplete;
    return result_;
  }
  // "Name: value": a token, then a colon with no space before it.
  const std::size_t colon = line.find(':');
  if (colon == std::string::npos || colon == 0) return Bad("malformed header line");
  for (std::size_t i = 0; i < colon; ++i) {
    if (!IsTokenChar(line[i])) return Bad("malformed header line");
  }
  return result_;
}

}  // namespace rngmux
