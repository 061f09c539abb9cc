#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace rngmux {

// The two systemd interfaces rngmux speaks, from their documented environment
// variables: the notify protocol (sd_notify(3): one datagram to $NOTIFY_SOCKET) and
// socket activation (sd_listen_fds(3): $LISTEN_PID, $LISTEN_FDS, $LISTEN_FDNAMES).
// systemd lists both as stable interfaces. They are implemented here rather than
// through libsystemd, which would load itself and six more libraries (compressors,
// libgcrypt, libcap) into a daemon that guards entropy: about 1 MB of resident memory and 2 ms
// of start-up for three functions (BENCHMARKS.md, "Start-up and idle memory").

// The first descriptor systemd passes (SD_LISTEN_FDS_START).
inline constexpr int kSystemdListenFdsStart = 3;

// Sends `message` ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET: an absolute path or, with
// a leading '@', a name in the abstract namespace. Returns false with nothing sent when
// the variable is unset or empty; an error when it names something else or the send
// fails.
Result<bool> SystemdNotify(std::string_view message);

// The watchdog interval from $WATCHDOG_USEC, when it is set to a positive number and
// $WATCHDOG_PID is unset or this process; nullopt otherwise.
std::optional<std::chrono::microseconds> SystemdWatchdogInterval();

// The descriptors passed by socket activation, (fd, name) from kSystemdListenFdsStart
// on, when $LISTEN_PID is this process; the name is "" where $LISTEN_FDNAMES gives none.
// Unsets the three variables so that no child sees them. An error for a malformed
// $LISTEN_FDS; nothing passed is an empty list.
Result<std::vector<std::pair<int, std::string>>> SystemdListenFds();

}  // namespace rngmux
