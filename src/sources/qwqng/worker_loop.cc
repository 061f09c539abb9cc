#include "sources/qwqng/worker_loop.h"

#include <sys/uio.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <limits>

#include "common/number_text.h"
#include "sources/qwqng/usb_sysfs.h"

namespace rngmux::qwqng {
namespace {

std::span<const std::uint8_t> AsBytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

}  // namespace

std::string DescribeCode(std::uint32_t code) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08X", static_cast<unsigned>(code));
  const char* name = nullptr;
  switch (code) {
    case kSOk:
      name = "S_OK";
      break;
    case kQngSOk:
      name = "QNG_S_OK";
      break;
    case kQngGeneralFailure:
      name = "QNG_E_GENERAL_FAILURE";
      break;
    case kQngIoError:
      name = "QNG_E_IO_ERROR";
      break;
    case kQngIoTimeout:
      name = "QNG_E_IO_TIMEOUT";
      break;
    case kQngArrayOversized:
      name = "QNG_E_IO_ARRAY_OVERSIZED";
      break;
    case kQngStatsException:
      name = "QNG_E_STATS_EXCEPTION";
      break;
    case kQngStatsUnsupported:
      name = "QNG_E_STATS_UNSUPPORTED";
      break;
    case kQngDiagxUnsupported:
      name = "QNG_E_DIAGX_UNSUPPORTED";
      break;
    case kQngDeviceNotOpened:
      name = "QNG_E_DEVICE_NOT_OPENED";
      break;
  }
  return name ? std::string(name) + " (" + hex + ")" : std::string(hex);
}

bool FdFrameSink::Send(FrameType type, std::span<const std::uint8_t> payload) {
  const auto header = EncodeFrameHeader(type, payload.size());
  iovec parts[2] = {{const_cast<std::uint8_t*>(header.data()), header.size()},
                    {const_cast<std::uint8_t*>(payload.data()), payload.size()}};
  std::size_t left = header.size() + payload.size();
  int first = 0;
  while (left > 0) {
    const ssize_t n = writev(fd_, parts + first, 2 - first);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;  // EPIPE: rngmux closed its end
    }
    auto written = static_cast<std::size_t>(n);
    left -= written;
    while (first < 2 && written >= parts[first].iov_len) {
      written -= parts[first].iov_len;
      parts[first].iov_len = 0;
      ++first;
    }
    if (first < 2) {
      parts[first].iov_base = static_cast<std::uint8_t*>(parts[first].iov_base) + written;
      parts[first].iov_len -= written;
    }
  }
  return true;
}

bool SendLog(FrameSink& sink, WorkerLogLevel level, std::string_view text) {
  const std::string payload = EncodeLogPayload(level, text);
  return sink.Send(FrameType::kLog, AsBytes(payload));
}

bool SendFatal(FrameSink& sink, std::string_view text) {
  return sink.Send(FrameType::kFatal, AsBytes(text.substr(0, kMaxTextBytes)));
}

std::optional<WorkerOptions> ParseWorkerArgs(const std::vector<std::string>& args,
                                             std::string* error) {
  WorkerOptions options;
  bool have_fd = false;
  for (const std::string& arg : args) {
    const std::size_t equals = arg.find('=');
    const std::string key = arg.substr(0, equals);
    const std::string_view value =
        equals == std::string::npos ? std::string_view() : std::string_view(arg).substr(equals + 1);
    bool value_ok = true;
    using Pid = decltype(options.parent_pid);
    if (key == "--fd") {
      const auto fd = ParseNumber(value, 0, std::numeric_limits<int>::max());
      if (fd) options.fd = *fd;
      have_fd = fd.has_value();
      if (!fd) value_ok = false;
    } else if (key == "--sysfs" && !value.empty()) {
      options.sysfs_root = std::string(value);
    } else if (key == "--parent-pid") {
      const auto pid = ParseNumber<Pid>(value, 1, std::numeric_limits<Pid>::max());
      if (pid) options.parent_pid = *pid;
      value_ok = pid.has_value();
    } else if (key == "--seccomp") {
      options.seccomp = std::string(value);
      value_ok = value == "on" || value == "off" || value == "log";
    } else if (key == "--stats-interval-ms") {
      const auto ms = ParseNumber<long>(value, 1, std::numeric_limits<long>::max());
      if (ms) options.stats_interval = std::chrono::milliseconds(*ms);
      value_ok = ms.has_value();
    } else {
      value_ok = false;
    }
    if (!value_ok) {
      *error = "bad argument \"" + arg + "\"";
      return std::nullopt;
    }
  }
  if (!have_fd) {
    *error = "missing --fd=N";
    return std::nullopt;
  }
  return options;
}

int RunWorker(const std::function<std::unique_ptr<QngDevice>()>& open, FrameSink& sink,
              const Clock& clock, const WorkerOptions& options) {
  // Said before the constructor, which can block for seconds: rngmux counts the
  // silence from here.
  if (!SendLog(sink, WorkerLogLevel::kInfo, "opening the QNG device")) return kExitDaemonGone;
  const std::unique_ptr<QngDevice> device = open();
  const std::string id = device->DeviceId();
  if (id.empty()) {
    SendFatal(sink, "no QNG device found, or another process has it open: " + device->StatusText());
    return kExitNoDevice;
  }
  const std::optional<UsbDevice> usb = FindQngBySerial(options.sysfs_root, id);
  if (!sink.Send(FrameType::kHello, AsBytes(id))) return kExitDaemonGone;
  SendLog(sink, WorkerLogLevel::kInfo,
          "device " + id + " open" + (usb ? " at " + usb->path : std::string()) + ": " +
              device->StatusText());
  if (!usb) {
    SendLog(sink, WorkerLogLevel::kWarning,
            "device " + id + " is not listed under " + options.sysfs_root +
                "/bus/usb/devices, so its presence cannot be checked: any read error ends "
                "this worker instead of a Reset()");
  }

  // Only third-generation devices keep statistics; asking an older one makes
  // STATS_UNSUPPORTED the sticky status and costs a Reset().
  bool stats_on = IsGen3QngSerial(id);
  Clock::TimePoint next_stats = clock.Now();
  std::array<std::uint8_t, kMaxReadBytes> block{};
  unsigned failures = 0;  // recovery rounds since the last good read

  const auto gone = [&](const std::string& what) {
    SendFatal(sink, what + "; device " + id +
                        " is gone from sysfs (unplugged?): exiting so that a new worker opens "
                        "it when it is back");
    return kExitUnplugged;
  };

  for (;;) {
    if (stats_on && clock.Now() >= next_stats) {
      next_stats = clock.Now() + options.stats_interval;
      std::array<float, kRuntimeInfoFloats> info{};
      const std::uint32_t code = device->RuntimeInfo(info);
      if (IsSuccess(code)) {
        if (!sink.Send(FrameType::kStats, EncodeRuntimeInfo(info))) return kExitDaemonGone;
      } else {
        // The failed call may have set the sticky status; the next read sees it
        // and goes through the recovery below.
        stats_on = false;
        SendLog(sink, WorkerLogLevel::kWarning,
                "RuntimeInfo: " + device->StatusText() + " " + DescribeCode(code) +
                    "; device statistics will not be read again");
      }
    }

    const std::uint32_t code = device->RandBytes(block);
    if (IsSuccess(code)) {
      failures = 0;
      const bool sent = sink.Send(FrameType::kData, block);
      explicit_bzero(block.data(), block.size());
      if (!sent) return kExitDaemonGone;
      continue;
    }
    // The library may fill the buffer and still report the (sticky) error.
    explicit_bzero(block.data(), block.size());
    const std::string what = "RandBytes: " + device->StatusText() + " " + DescribeCode(code);
    if (!usb) {
      SendFatal(sink, what + "; not calling Reset() on a device that sysfs does not show");
      return kExitUnrecoverable;
    }
    if (!StillPresent(*usb)) return gone(what);
    if (code == kQngArrayOversized || code == kQngDeviceNotOpened) {
      SendFatal(sink, what + "; Reset() does not cure this");
      return kExitUnrecoverable;
    }
    if (++failures > options.max_recoveries) {
      SendFatal(sink, what + "; still failing after " + std::to_string(options.max_recoveries) +
                          " rounds of recovery");
      return kExitUnrecoverable;
    }
    // A timeout or the device's own health test leaves stale bytes buffered:
    // Clear() drops them. Only Reset() lifts the sticky error status.
    const bool drop_stale = code == kQngIoTimeout || code == kQngStatsException;
    if (!SendLog(sink, WorkerLogLevel::kWarning,
                 what + (drop_stale ? "; Clear() and Reset()" : "; Reset()"))) {
      return kExitDaemonGone;
    }
    if (drop_stale) device->Clear();
    if (!StillPresent(*usb)) return gone(what);
    const std::uint32_t reset = device->Reset();
    if (!IsSuccess(reset)) {
      SendFatal(sink, "Reset: " + device->StatusText() + " " + DescribeCode(reset));
      return kExitUnrecoverable;
    }
    SendLog(sink, WorkerLogLevel::kInfo,
            "Reset: " + device->StatusText() + "; device " + device->DeviceId() + " reading again");
  }
}

}  // namespace rngmux::qwqng
