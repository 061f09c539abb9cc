#include "cli/process_cpu.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

namespace rngmux {
namespace {

// Fields after "PID (comm) ", counted from 0 (the state): proc(5).
constexpr int kPpidField = 1;
constexpr int kUtimeField = 11;
constexpr int kCstimeField = 14;

Result<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::FromErrno(path, errno);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::uint64_t TicksOf(const ProcStatTimes& t, bool with_reaped) {
  return t.utime + t.stime + (with_reaped ? t.cutime + t.cstime : 0);
}

}  // namespace

std::optional<ProcStatTimes> ParseProcStat(std::string_view text) {
  const std::size_t close = text.rfind(')');
  if (close == std::string_view::npos || text.find('(') == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view rest = text.substr(close + 1);
  ProcStatTimes out;
  std::uint64_t* const times[] = {&out.utime, &out.stime, &out.cutime, &out.cstime};
  for (int field = 0; field <= kCstimeField; ++field) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    const std::size_t end = std::min(rest.find_first_of(" \n"), rest.size());
    if (end == 0) return std::nullopt;
    const std::string_view word = rest.substr(0, end);
    rest.remove_prefix(end);
    if (field != kPpidField && field < kUtimeField) continue;
    std::uint64_t value = 0;
    const auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), value);
    if (ec != std::errc() || ptr != word.data() + word.size()) return std::nullopt;
    if (field == kPpidField) {
      out.ppid = static_cast<int>(value);
    } else {
      *times[field - kUtimeField] = value;
    }
  }
  return out;
}

Result<double> ProcessTreeCpuSeconds(int pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  auto text = ReadSmallFile(path);
  if (!text.ok()) return text.status();
  auto own = ParseProcStat(*text);
  if (!own) return Status::Error(path + ": not a stat line");
  std::uint64_t ticks = TicksOf(*own, true);
  std::unique_ptr<DIR, int (*)(DIR*)> proc(opendir("/proc"), closedir);
  if (!proc) return Status::FromErrno("/proc", errno);
  while (const dirent* entry = readdir(proc.get())) {
    int child = 0;
    const std::string_view name = entry->d_name;
    const auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), child);
    if (ec != std::errc() || ptr != name.data() + name.size() || child == pid) continue;
    auto child_text = ReadSmallFile("/proc/" + std::string(name) + "/stat");
    if (!child_text.ok()) continue;  // gone meanwhile: its parent's cutime has it
    const auto times = ParseProcStat(*child_text);
    if (times && times->ppid == pid) ticks += TicksOf(*times, true);
  }
  return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace rngmux
