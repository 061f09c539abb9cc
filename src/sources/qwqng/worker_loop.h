#pragma once

// The QNG worker's logic, apart from libqwqng itself: open, read in blocks, turn
// return codes into actions, report over the pipe. worker_main.cc adapts the
// vendor class to QngDevice; tests drive this with a scripted device.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "sources/qwqng/frame.h"

namespace rngmux::qwqng {

// libqwqng's return codes. The library #defines them as long literals but returns
// int, so on LP64 `rc == QNG_E_IO_ERROR` compares a negative int with a positive
// long and is never true. Every code is turned into a uint32_t once, by CodeOf,
// and compared only with these.
inline constexpr std::uint32_t kSOk = 0x00000000;
inline constexpr std::uint32_t kQngSOk = 0x00044400;
inline constexpr std::uint32_t kQngGeneralFailure = 0x80044401;
inline constexpr std::uint32_t kQngIoError = 0x80044402;
inline constexpr std::uint32_t kQngIoTimeout = 0x80044403;
inline constexpr std::uint32_t kQngArrayOversized = 0x80044404;
inline constexpr std::uint32_t kQngStatsException = 0x80044406;
inline constexpr std::uint32_t kQngStatsUnsupported = 0x80044407;
inline constexpr std::uint32_t kQngDiagxUnsupported = 0x80044408;
inline constexpr std::uint32_t kQngDeviceNotOpened = 0x8004440A;

constexpr std::uint32_t CodeOf(int rc) { return static_cast<std::uint32_t>(rc); }
constexpr bool IsSuccess(std::uint32_t code) { return code == kSOk || code == kQngSOk; }
// "QNG_E_IO_ERROR (0x80044402)"; unknown codes show as hex alone.
std::string DescribeCode(std::uint32_t code);

// The calls the worker makes, as libqwqng offers them. Codes come back already
// converted by CodeOf. Single-threaded, like the library wants.
class QngDevice {
 public:
  virtual ~QngDevice() = default;
  virtual std::string DeviceId() = 0;    // "" when nothing is open
  virtual std::string StatusText() = 0;  // the text of the current (sticky) status
  // Fills `out` (at most kMaxReadBytes). On failure the bytes are garbage.
  virtual std::uint32_t RandBytes(std::span<std::uint8_t> out) = 0;
  virtual std::uint32_t Clear() = 0;
  virtual std::uint32_t Reset() = 0;
  virtual std::uint32_t RuntimeInfo(std::array<float, kRuntimeInfoFloats>& out) = 0;
};

// Where frames go. Send returns false once nobody reads them (rngmux is gone).
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  virtual bool Send(FrameType type, std::span<const std::uint8_t> payload) = 0;
};

// Writes frames to a pipe, blocking while it is full (that is the back-pressure
// that keeps the worker from reading far ahead of rngmux).
class FdFrameSink final : public FrameSink {
 public:
  explicit FdFrameSink(int fd) : fd_(fd) {}
  bool Send(FrameType type, std::span<const std::uint8_t> payload) override;

 private:
  int fd_;
};

// Exit statuses of the worker; rngmux reports them, the fatal frame says why.
enum WorkerExit : int {
  kExitDaemonGone = 0,     // the pipe closed: nobody to serve
  kExitUsage = 2,          // bad command line
  kExitNoDevice = 3,       // nothing to open, or it is in use
  kExitUnplugged = 4,      // the open device left sysfs: a new process must open it
  kExitUnrecoverable = 5,  // errors that Clear()/Reset() did not cure
};

struct WorkerOptions {
  int fd = 3;  // where frames go
  std::string sysfs_root = "/sys";
  long parent_pid = 0;  // exit at once if the parent is not this (it died early)
  std::chrono::milliseconds stats_interval{1000};
  unsigned max_recoveries = 3;  // Clear()/Reset() rounds without a good read in between
  std::string seccomp = "off";  // the worker's own filter once the device is open
};

// Parses "--fd=N --sysfs=PATH --parent-pid=PID [--stats-interval-ms=N]
// [--seccomp=on|off|log]".
// Returns nullopt and sets `error` on anything else.
std::optional<WorkerOptions> ParseWorkerArgs(const std::vector<std::string>& args,
                                             std::string* error);

// Opens the device with `open` (which may block for seconds), then reads until
// something ends the worker; returns the exit status. Reads go to a buffer of
// the worker's own, at most kMaxReadBytes at a time, and only reads that return
// success are sent: the buffer is wiped after every read either way.
// Before any Reset() the device must still be in sysfs: after an unplug the
// library's Reset() uses freed memory, so the worker exits instead and rngmux
// starts a new one.
int RunWorker(const std::function<std::unique_ptr<QngDevice>()>& open, FrameSink& sink,
              const Clock& clock, const WorkerOptions& options);

// Small helpers for frames with text, shared with worker_main.cc.
bool SendLog(FrameSink& sink, WorkerLogLevel level, std::string_view text);
bool SendFatal(FrameSink& sink, std::string_view text);

}  // namespace rngmux::qwqng
