#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>

#include "common/log.h"
#include "common/number_text.h"
#include "common/secure_memory.h"
#include "sources/drivers.h"
#include "sources/qwqng/child_process.h"
#include "sources/qwqng/frame.h"
#include "sources/qwqng/usb_sysfs.h"

namespace rngmux {
namespace {

using qwqng::FrameStep;
using qwqng::FrameType;
using qwqng::WorkerLogLevel;

#ifdef RNGMUX_HAVE_QWQNG
constexpr bool kQwqngCompiledIn = true;
#else
constexpr bool kQwqngCompiledIn = false;
#endif

constexpr char kWorkerFileName[] = "rngmux-qwqng-worker";
constexpr int kWorkerFd = 3;
// Long enough for the library's constructor and Reset(), which block for seconds.
constexpr double kDefaultSilenceSeconds = 20;
constexpr double kMinSilenceSeconds = 0.1;
constexpr double kMaxSilenceSeconds = 3600;
// About half a second of the device's output: the worker keeps reading while
// rngmux is busy elsewhere. Best effort; the default pipe is 64 KiB.
constexpr int kPipeBytes = 256 * 1024;
constexpr std::size_t kReceiveBytes = 64 * 1024;
constexpr std::chrono::milliseconds kStopGrace{1000};
// After the pipe closes, how long the worker may take to exit before it is killed.
constexpr std::chrono::milliseconds kExitGrace{2000};

std::string NotCompiledInMessage() {
  return "not compiled in: rebuild rngmux with -DRNGMUX_WITH_QWQNG=ON after installing "
         "libqwqng 1.4 (see README, \"QNG PQ4000KU\")";
}

LogLevel ToLogLevel(WorkerLogLevel level) {
  switch (level) {
    case WorkerLogLevel::kDebug:
      return LogLevel::kDebug;
    case WorkerLogLevel::kInfo:
      return LogLevel::kInfo;
    case WorkerLogLevel::kWarning:
      return LogLevel::kWarning;
    case WorkerLogLevel::kError:
      break;
  }
  return LogLevel::kError;
}

std::string ToText(std::span<const std::uint8_t> payload) {
  return std::string(payload.begin(), payload.end());
}

struct QwqngOptions {
  CommonSourceOptions common;
  std::string worker_path;
  std::string sysfs_root;
  std::chrono::milliseconds silence_timeout;
  std::string seccomp = "off";  // the worker's own filter: off, on or log
};

// The QNG, read through rngmux-qwqng-worker (see worker_main.cc). The worker is
// started lazily by Read and started again by the Read after it ended: its exit,
// crash or silence is a read error, so SourceRunner's back-off paces restarts.
//
// The worker sets PR_SET_PDEATHSIG, which fires when the *thread* that started
// it exits: only the runner's thread starts it, and it outlives every worker.
class QwqngSource final : public Source {
 public:
  QwqngSource(std::string name, QwqngOptions options)
      : name_(std::move(name)), options_(std::move(options)) {}
  ~QwqngSource() override {
    if (worker_) {
      const pid_t pid = worker_->pid();
      const std::string how = worker_->Terminate(SIGTERM, kStopGrace);
      LOG_INFO("source ", name_, ": worker pid ", pid, " stopped (", how, ")");
    }
  }

  const std::string& name() const override { return name_; }
  double claimed_entropy_bits_per_byte() const override {
    return options_.common.entropy_bits_per_byte;
  }
  std::size_t preferred_block_size() const override { return options_.common.block_size; }

  Result<std::size_t> Read(std::span<std::uint8_t> out, const Interrupt& stop) override {
    if (pending_size_ > 0) return TakePending(out);
    if (!worker_) {
      Status started = StartWorker();
      if (!started.ok()) return started;
    }
    auto deadline = std::chrono::steady_clock::now() + options_.silence_timeout;
    for (;;) {
      for (;;) {
        const FrameStep step = qwqng::NextFrame(
            std::span<const std::uint8_t>(received_.data() + decoded_, received_size_ - decoded_));
        if (step.outcome == FrameStep::Outcome::kNeedMore) break;
        if (step.outcome == FrameStep::Outcome::kBad) {
          return EndWorker(SIGKILL, std::chrono::milliseconds(0),
                           "sent a malformed frame (" + std::string(step.error) + ")");
        }
        decoded_ += step.consumed;
        deadline = std::chrono::steady_clock::now() + options_.silence_timeout;
        if (step.type == FrameType::kData) return TakeData(step.payload, out);
        HandleReport(step.type, step.payload);
      }

      // Past the deadline, look at the pipe once more without waiting before calling the
      // worker silent: if this thread was the one held up (a stalled or loaded host),
      // what the worker sent meanwhile is waiting there.
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd fds[2] = {{worker_->fd(), POLLIN, 0}, {stop.fd(), POLLIN, 0}};
      const int ready =
          poll(fds, 2, static_cast<int>(std::clamp<long long>(left.count(), 0, 1 << 30)));
      if (ready < 0) {
        if (errno == EINTR) continue;
        return EndWorker(SIGKILL, std::chrono::milliseconds(0),
                         Status::FromErrno("poll", errno).message());
      }
      if (fds[1].revents != 0) return std::size_t{0};
      if (fds[0].revents == 0) {
        if (left.count() > 0) continue;
        std::ostringstream why;
        why << "sent nothing for "
            << std::chrono::duration<double>(options_.silence_timeout).count() << " s";
        return EndWorker(SIGKILL, std::chrono::milliseconds(0), why.str());
      }

      Compact();
      const ssize_t n =
          read(worker_->fd(), received_.data() + received_size_, received_.size() - received_size_);
      if (n > 0) {
        received_size_ += static_cast<std::size_t>(n);
        continue;
      }
      if (n == 0) return EndWorker(0, kExitGrace, "");
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return EndWorker(SIGKILL, std::chrono::milliseconds(0),
                       Status::FromErrno("read", errno).message());
    }
  }

  std::vector<std::pair<std::string, std::string>> ExtraStats() const override {
    const std::uint64_t starts = worker_starts_;
    std::vector<std::pair<std::string, std::string>> stats = {
        {"worker_pid", std::to_string(worker_pid_.load())},
        {"worker_restarts", std::to_string(starts == 0 ? 0 : starts - 1)},
    };
    std::lock_guard<std::mutex> lock(stats_mutex_);
    stats.emplace_back("qng_device", device_id_.empty() ? "none" : device_id_);
    if (runtime_info_) {
      std::ostringstream values;
      for (std::size_t i = 0; i < runtime_info_->size(); ++i) {
        values << (i ? "," : "") << (*runtime_info_)[i];
      }
      stats.emplace_back("qng_runtime_info", values.str());
    }
    return stats;
  }

 private:
  Status StartWorker() {
    std::vector<std::string> argv = {options_.worker_path, "--fd=" + std::to_string(kWorkerFd),
                                     "--sysfs=" + options_.sysfs_root,
                                     "--parent-pid=" + std::to_string(getpid())};
    if (options_.seccomp != "off") argv.push_back("--seccomp=" + options_.seccomp);
    Result<std::unique_ptr<ChildProcess>> child = ChildProcess::Spawn(argv, kWorkerFd);
    if (!child.ok()) return Status::Error(name_ + ": " + child.status().message());
    worker_ = std::move(child).value();
    fcntl(worker_->fd(), F_SETPIPE_SZ, kPipeBytes);
    fatal_.clear();
    const std::uint64_t starts = ++worker_starts_;
    worker_pid_ = worker_->pid();
    if (starts == 1) {
      LOG_INFO("source ", name_, ": worker pid ", worker_->pid(), " started");
    } else {
      LOG_INFO("source ", name_, ": worker pid ", worker_->pid(), " started (restart ", starts - 1,
               ")");
    }
    return Status::Ok();
  }

  // Ends the current worker (sending `signal` first unless 0) and describes why
  // and how, with the worker's own last word, as the read error.
  Status EndWorker(int signal, std::chrono::milliseconds grace, const std::string& why) {
    const pid_t pid = worker_->pid();
    const std::string how = worker_->Terminate(signal, grace);
    worker_.reset();
    worker_pid_ = 0;
    // Bytes of a frame cut short are dropped with the rest of what was received.
    SecureWipe(received_.data(), received_size_);
    received_size_ = decoded_ = 0;
    {
      std::lock_guard<std::mutex> lock(stats_mutex_);
      device_id_.clear();
      runtime_info_.reset();
    }
    std::string message = name_ + ": worker pid " + std::to_string(pid) + " ";
    message += why.empty() ? how : why + "; " + how;
    if (!fatal_.empty()) message += ": " + fatal_;
    LOG_WARNING("source ", message);
    return Status::Error(message);
  }

  void HandleReport(FrameType type, std::span<const std::uint8_t> payload) {
    switch (type) {
      case FrameType::kHello: {
        std::lock_guard<std::mutex> lock(stats_mutex_);
        device_id_ = ToText(payload);
        // Stats values must not contain spaces; a serial never does.
        std::replace(device_id_.begin(), device_id_.end(), ' ', '_');
        break;
      }
      case FrameType::kLog:
        if (const auto log = qwqng::DecodeLogPayload(payload)) {
          RNGMUX_LOG(ToLogLevel(log->level), "source ", name_, ": worker pid ", worker_->pid(),
                     ": ", log->text);
        }
        break;
      case FrameType::kStats:
        if (const auto info = qwqng::DecodeRuntimeInfo(payload)) {
          std::lock_guard<std::mutex> lock(stats_mutex_);
          runtime_info_ = *info;
        }
        break;
      case FrameType::kFatal:
        fatal_ = ToText(payload);
        break;
      case FrameType::kData:
        break;
    }
  }

  std::size_t TakeData(std::span<const std::uint8_t> payload, std::span<std::uint8_t> out) {
    const std::size_t n = std::min(out.size(), payload.size());
    std::copy_n(payload.begin(), n, out.begin());
    pending_size_ = payload.size() - n;
    pending_offset_ = 0;
    std::copy(payload.begin() + static_cast<std::ptrdiff_t>(n), payload.end(), pending_.data());
    return n;
  }

  std::size_t TakePending(std::span<std::uint8_t> out) {
    const std::size_t n = std::min(out.size(), pending_size_);
    std::copy_n(pending_.data() + pending_offset_, n, out.begin());
    SecureWipe(pending_.data() + pending_offset_, n);
    pending_offset_ += n;
    pending_size_ -= n;
    return n;
  }

  // Moves undecoded bytes to the front and wipes what was decoded.
  void Compact() {
    if (decoded_ == 0) return;
    const std::size_t left = received_size_ - decoded_;
    std::memmove(received_.data(), received_.data() + decoded_, left);
    SecureWipe(received_.data() + left, received_size_ - left);
    received_size_ = left;
    decoded_ = 0;
  }

  const std::string name_;
  const QwqngOptions options_;
  std::unique_ptr<ChildProcess> worker_;
  std::string fatal_;  // the current worker's kFatal text
  // Raw bytes are secret: locked buffers, wiped once used.
  SecureBuffer received_{kReceiveBytes};
  std::size_t received_size_ = 0;
  std::size_t decoded_ = 0;
  SecureBuffer pending_{qwqng::kMaxReadBytes};  // the rest of a data frame
  std::size_t pending_offset_ = 0;
  std::size_t pending_size_ = 0;

  std::atomic<std::uint64_t> worker_starts_{0};
  std::atomic<long> worker_pid_{0};
  mutable std::mutex stats_mutex_;
  std::string device_id_;                                                     // guarded
  std::optional<std::array<float, qwqng::kRuntimeInfoFloats>> runtime_info_;  // guarded
};

}  // namespace

std::string DefaultQwqngWorkerPath() {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return kWorkerFileName;
  std::string path(self, static_cast<std::size_t>(n));
  const std::size_t slash = path.rfind('/');
  return (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + kWorkerFileName;
}

QwqngPresence ProbeQwqng(const std::string& sysfs_root, const std::string& worker_path,
                         bool compiled_in) {
  QwqngPresence presence;
  for (const qwqng::UsbDevice& device : qwqng::FindQngUsbDevices(sysfs_root)) {
    if (!qwqng::IsGen3QngSerial(device.serial)) continue;
    presence.device_seen = true;
    const std::string what = "QNG " + device.serial + " at " + device.path;
    if (!compiled_in) {
      presence.reason = what + " is present but this rngmux was built without qwqng support";
    } else if (access(worker_path.c_str(), X_OK) != 0) {
      presence.reason = what + " is present but " + Status::FromErrno(worker_path, errno).message();
    } else {
      presence.usable = true;
      presence.reason = "qwqng (" + what + ")";
    }
    return presence;
  }
  presence.reason = "no QNG PQ4000KU in " + sysfs_root + "/bus/usb/devices";
  return presence;
}

QwqngPresence ProbeQwqng(const std::string& sysfs_root) {
  return ProbeQwqng(sysfs_root, DefaultQwqngWorkerPath(), kQwqngCompiledIn);
}

bool QwqngCompiledIn() { return kQwqngCompiledIn; }

Result<std::unique_ptr<Source>> CreateQwqngSource(const SourceSpec& spec,
                                                  const SourceFactoryContext& context) {
  if (!kQwqngCompiledIn) return SourceSpecError(spec, NotCompiledInMessage());
  return CreateQwqngDriver(spec, context.worker_seccomp);
}

Result<std::unique_ptr<Source>> CreateQwqngDriver(const SourceSpec& spec,
                                                  const std::string& worker_seccomp) {
  Result<CommonSourceOptions> common =
      ParseCommonSourceOptions(spec, 8, kDefaultBlockBytes, {"worker", "sysfs", "timeout"});
  if (!common.ok()) return common.status();
  QwqngOptions options{*common, DefaultQwqngWorkerPath(), "/sys",
                       std::chrono::milliseconds(static_cast<long>(kDefaultSilenceSeconds * 1000)),
                       worker_seccomp};
  if (const auto it = spec.options.find("worker"); it != spec.options.end()) {
    options.worker_path = it->second;
  }
  if (const auto it = spec.options.find("sysfs"); it != spec.options.end()) {
    options.sysfs_root = it->second;
  }
  if (const auto it = spec.options.find("timeout"); it != spec.options.end()) {
    const std::optional<double> seconds =
        ParseNumber(it->second, kMinSilenceSeconds, kMaxSilenceSeconds);
    if (!seconds) {
      return SourceSpecError(
          spec, "timeout must be seconds from 0.1 to 3600, got \"" + it->second + "\"");
    }
    options.silence_timeout = std::chrono::milliseconds(std::lround(*seconds * 1000));
  }
  // Checked here so that a missing worker is one clear line at start-up, not a
  // restart loop.
  if (access(options.worker_path.c_str(), X_OK) != 0) {
    return SourceSpecError(spec,
                           Status::FromErrno("worker " + options.worker_path, errno).message() +
                               " (it is installed next to rngmux; worker=PATH names another)");
  }
  return std::unique_ptr<Source>(std::make_unique<QwqngSource>(spec.text, std::move(options)));
}

}  // namespace rngmux
