#include "cli/output.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace rngmux {

bool WriteOutput(std::span<const std::uint8_t> bytes, bool hex) {
  bool ok = true;
  if (hex) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string text;
    text.reserve(bytes.size() * 2 + 1);
    for (std::uint8_t b : bytes) {
      text.push_back(kDigits[b >> 4]);
      text.push_back(kDigits[b & 15]);
    }
    ok = std::fwrite(text.data(), 1, text.size(), stdout) == text.size();
  } else {
    ok = std::fwrite(bytes.data(), 1, bytes.size(), stdout) == bytes.size();
  }
  if (!ok) std::fprintf(stderr, "rngmux: error: stdout: %s\n", std::strerror(errno));
  return ok;
}

bool FinishOutput(bool hex) {
  bool ok = !hex || std::fputc('\n', stdout) != EOF;
  ok = std::fflush(stdout) == 0 && ok;
  if (!ok) std::fprintf(stderr, "rngmux: error: stdout: %s\n", std::strerror(errno));
  return ok;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
      out += buffer;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace rngmux
