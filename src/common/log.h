#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace rngmux {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Process-wide log threshold; set once at startup before threads start.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "debug", "info", "warning", "error".
bool ParseLogLevel(std::string_view text, LogLevel* level);

// Writes one line to stderr: "<UTC timestamp> <level> <message>". Thread-safe.
void LogLine(LogLevel level, std::string_view message);

namespace log_detail {
template <typename... Args>
std::string Concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace log_detail

// LOG_INFO("connected to ", endpoint); arguments are streamed together.
#define RNGMUX_LOG(level, ...)                                                \
  do {                                                                        \
    if (static_cast<int>(level) >= static_cast<int>(::rngmux::GetLogLevel())) \
      ::rngmux::LogLine(level, ::rngmux::log_detail::Concat(__VA_ARGS__));    \
  } while (0)
#define LOG_DEBUG(...) RNGMUX_LOG(::rngmux::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) RNGMUX_LOG(::rngmux::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARNING(...) RNGMUX_LOG(::rngmux::LogLevel::kWarning, __VA_ARGS__)
#define LOG_ERROR(...) RNGMUX_LOG(::rngmux::LogLevel::kError, __VA_ARGS__)

}  // namespace rngmux
