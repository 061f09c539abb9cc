#pragma once

#include <chrono>
#include <cstdint>
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

// Writes one line to stderr: "<UTC timestamp> rngmux <level>: <message>". When stderr
// is the systemd journal (JOURNAL_STREAM names stderr's device and inode), the line is
// "<N>rngmux <level>: <message>" instead: N is the syslog priority (debug 7, info 6,
// warning 4, error 3) and the journal adds the time. Thread-safe.
void LogLine(LogLevel level, std::string_view message);

// The line LogLine writes (with its '\n'); `journal` picks the journal form.
std::string FormatLogLine(LogLevel level, std::string_view message, bool journal,
                          std::chrono::system_clock::time_point now);
// True when `journal_stream` (JOURNAL_STREAM's value, "DEVICE:INODE" in decimal)
// names the file with this device and inode number.
bool JournalStreamMatches(std::string_view journal_stream, std::uint64_t device,
                          std::uint64_t inode);

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
