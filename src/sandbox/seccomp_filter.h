#pragma once

#include <string>
#include <string_view>

namespace rngmux {

// What a system call outside the allow-list does: kill the whole process (on), be
// logged by the kernel's audit and go on (log: for finding what a filter misses,
// `dmesg | grep 'type=1326'`), or no filter at all (off).
enum class SeccompMode { kOff, kOn, kLog };

// "on", "off", "log" -> the mode; false for anything else.
bool ParseSeccompMode(std::string_view text, SeccompMode* mode);
const char* SeccompModeName(SeccompMode mode);

// Which allow-list to load.
enum class SeccompProfile {
  // rngmux serve after start-up: its event loop, source threads, reopening of file
  // sources, and starting the QNG worker (which inherits this filter, so what the
  // worker does before its own filter is in it too).
  kDaemon,
  // The QNG worker once its device is open: reads, its frame pipe, libusb's event
  // thread, and opening (never creating) device files.
  kQngWorker,
  // kQngWorker plus what the libqwqng test double does with its control files
  // (lock, remove). Chosen only when the double says it is loaded.
  kQngWorkerWithTestDouble,
};

// Loads the allow-list for `profile` into every thread of the calling process
// (SCMP_FLTATR_CTL_TSYNC), with no_new_privs set. Nothing for kOff. Returns "" on
// success, else one line naming what failed ("seccomp_load: Invalid argument").
// A loaded filter cannot be removed; later filters only narrow it.
std::string LoadSeccompFilter(SeccompProfile profile, SeccompMode mode);

}  // namespace rngmux
