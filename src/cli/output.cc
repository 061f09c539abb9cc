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

void PrintJsonReport(const JsonReport& report) {
  const std::string text = report.dump(-1, ' ', false, JsonReport::error_handler_t::replace);
  std::fputs((text + "\n").c_str(), stdout);
}

}  // namespace rngmux
