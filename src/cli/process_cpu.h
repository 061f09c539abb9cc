#pragma once

// The CPU time a process has used, read from /proc, for `rngmux bench --pid`: the load
// generator reports what the server under test spent beside what it spent itself.

#include <cstdint>
#include <optional>
#include <string_view>

#include "common/status.h"

namespace rngmux {

// The fields of /proc/PID/stat that CPU accounting needs; times in clock ticks.
struct ProcStatTimes {
  int ppid = 0;
  std::uint64_t utime = 0, stime = 0;    // the process's own threads
  std::uint64_t cutime = 0, cstime = 0;  // children it has waited for
};

// Parses the text of /proc/PID/stat (no I/O). The command name may hold spaces and
// parentheses, so fields are counted from the last ')'. nullopt if the text is not a
// stat line.
std::optional<ProcStatTimes> ParseProcStat(std::string_view text);

// CPU seconds (user + system) used so far by `pid` (all its threads and the children it
// has reaped) plus every live child of it (a socat that forks a child per connection).
// The difference of two readings is what the process tree used in between: a child
// that exits and is reaped meanwhile moves from the live sum into the parent's cutime.
// Children of children count only once reaped. Errors name the /proc file:
// "/proc/123/stat: No such file or directory".
Result<double> ProcessTreeCpuSeconds(int pid);

}  // namespace rngmux
