#include "common/log.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace rngmux {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_log_mutex;

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}

// syslog(3) priorities: LOG_DEBUG 7, LOG_INFO 6, LOG_WARNING 4, LOG_ERR 3.
int SyslogPriority(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return 7;
    case LogLevel::kInfo:
      return 6;
    case LogLevel::kWarning:
      return 4;
    case LogLevel::kError:
      return 3;
  }
  return 6;
}

bool ParseUnsigned(std::string_view text, std::uint64_t* value) {
  if (text.empty() || text.size() > 20) return false;
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;
    v = v * 10 + digit;
  }
  *value = v;
  return true;
}

// Decided once, at the first line: stderr does not change under a running daemon.
bool StderrIsJournalOnce() {
  static const bool journal = [] {
    const char* env = std::getenv("JOURNAL_STREAM");
    struct stat st {};
    if (env == nullptr || fstat(2, &st) != 0) return false;
    return JournalStreamMatches(env, static_cast<std::uint64_t>(st.st_dev),
                                static_cast<std::uint64_t>(st.st_ino));
  }();
  return journal;
}
}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }

bool ParseLogLevel(std::string_view text, LogLevel* level) {
  for (LogLevel candidate :
       {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError}) {
    if (text == LevelName(candidate)) {
      *level = candidate;
      return true;
    }
  }
  return false;
}

bool JournalStreamMatches(std::string_view journal_stream, std::uint64_t device,
                          std::uint64_t inode) {
  const std::size_t colon = journal_stream.find(':');
  if (colon == std::string_view::npos) return false;
  std::uint64_t want_device = 0;
  std::uint64_t want_inode = 0;
  return ParseUnsigned(journal_stream.substr(0, colon), &want_device) &&
         ParseUnsigned(journal_stream.substr(colon + 1), &want_inode) && want_device == device &&
         want_inode == inode;
}

std::string FormatLogLine(LogLevel level, std::string_view message, bool journal,
                          std::chrono::system_clock::time_point now) {
  using namespace std::chrono;
  std::string line;
  line.reserve(message.size() + 48);
  if (journal) {
    // The journal stamps each line itself and reads the priority from the prefix.
    line += '<';
    line += static_cast<char>('0' + SyslogPriority(level));
    line += '>';
  } else {
    const std::time_t seconds = system_clock::to_time_t(now);
    const auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    char stamp[48];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    char fraction[8];
    std::snprintf(fraction, sizeof fraction, ".%03dZ ", static_cast<int>(millis));
    line += stamp;
    line += fraction;
  }
  line += "rngmux ";
  line += LevelName(level);
  line += ": ";
  line += message;
  line += '\n';
  return line;
}

void LogLine(LogLevel level, std::string_view message) {
  const std::string line =
      FormatLogLine(level, message, StderrIsJournalOnce(), std::chrono::system_clock::now());
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace rngmux
