// rngmux-qwqng-worker: the only program that loads libqwqng. rngmux starts it,
// reads its frames from a pipe (see frame.h) and restarts it when it exits, so a
// crash, a hang, a leaked USB handle or an unplug never reaches the daemon. It is
// also the only part that needs access to the USB device (group plugdev).

#include <dlfcn.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "sandbox/seccomp_filter.h"
#include "sources/qwqng/worker_loop.h"

// The vendor header goes last: it #defines S_OK, the QNG_* codes and even __func__.
#include <qwqng.hpp>

namespace rngmux::qwqng {
namespace {

// The codes this program compares with are the vendor's, bit for bit.
static_assert(static_cast<std::uint32_t>(S_OK) == kSOk);
static_assert(static_cast<std::uint32_t>(QNG_S_OK) == kQngSOk);
static_assert(static_cast<std::uint32_t>(QNG_E_GENERAL_FAILURE) == kQngGeneralFailure);
static_assert(static_cast<std::uint32_t>(QNG_E_IO_ERROR) == kQngIoError);
static_assert(static_cast<std::uint32_t>(QNG_E_IO_TIMEOUT) == kQngIoTimeout);
static_assert(static_cast<std::uint32_t>(QNG_E_IO_ARRAY_OVERSIZED) == kQngArrayOversized);
static_assert(static_cast<std::uint32_t>(QNG_E_STATS_EXCEPTION) == kQngStatsException);
static_assert(static_cast<std::uint32_t>(QNG_E_STATS_UNSUPPORTED) == kQngStatsUnsupported);
static_assert(static_cast<std::uint32_t>(QNG_E_DIAGX_UNSUPPORTED) == kQngDiagxUnsupported);
static_assert(static_cast<std::uint32_t>(QNG_E_DEVICE_NOT_OPENED) == kQngDeviceNotOpened);

// The object is never deleted: ~QWQNG does not release the USB handle anyway, and
// after an unplug it may touch state that is gone. Process exit frees all of it.
// Kept here, reachable, so that leak checkers do not report it.
QWQNG* g_qng = nullptr;

class VendorDevice final : public QngDevice {
 public:
  explicit VendorDevice(QWQNG* qng) : qng_(qng) {}

  std::string DeviceId() override {
    const char* id = qng_->DeviceID();
    return id != nullptr ? id : "";
  }
  std::string StatusText() override {
    const char* text = qng_->StatusString();
    return text != nullptr ? text : "";
  }
  std::uint32_t RandBytes(std::span<std::uint8_t> out) override {
    return CodeOf(
        qng_->RandBytes(reinterpret_cast<char*>(out.data()), static_cast<long>(out.size())));
  }
  std::uint32_t Clear() override { return CodeOf(qng_->Clear()); }
  std::uint32_t Reset() override { return CodeOf(qng_->Reset()); }
  std::uint32_t RuntimeInfo(std::array<float, kRuntimeInfoFloats>& out) override {
    return CodeOf(qng_->RuntimeInfo(out.data()));
  }

 private:
  QWQNG* qng_;
};

int WorkerMain(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  std::string error;
  const std::optional<WorkerOptions> options = ParseWorkerArgs(args, &error);
  if (!options) {
    std::fprintf(stderr, "rngmux-qwqng-worker: %s (rngmux starts this program itself)\n",
                 error.c_str());
    return kExitUsage;
  }
  // Die with rngmux even while blocked inside the library; the check after it
  // covers a parent that died before the prctl.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (options->parent_pid != 0 && getppid() != options->parent_pid) return kExitDaemonGone;
  // A closed pipe is an error from write(), handled as "rngmux is gone".
  signal(SIGPIPE, SIG_IGN);
  // Only stdio and the frame pipe belong here, never a socket of rngmux's.
  close_range(static_cast<unsigned>(options->fd) + 1, ~0U, 0);

  SeccompMode seccomp = SeccompMode::kOff;
  ParseSeccompMode(options->seccomp, &seccomp);  // ParseWorkerArgs checked it
  FdFrameSink sink(options->fd);
  // Instance() rather than the constructor: the 2012 release has only Instance().
  // The filter comes once the device is open, since opening it needs more calls
  // than reading does. The test double says so with a symbol of its own, and then
  // also gets its control files; the vendor library has no such symbol.
  const auto open = [seccomp] {
    g_qng = QWQNG::Instance();
    const bool test_double = dlsym(RTLD_DEFAULT, "qwqng_double_control_files") != nullptr;
    const std::string failed = LoadSeccompFilter(
        test_double ? SeccompProfile::kQngWorkerWithTestDouble : SeccompProfile::kQngWorker,
        seccomp);
    if (!failed.empty()) {
      std::fprintf(stderr, "rngmux-qwqng-worker: %s\n", failed.c_str());
      std::_Exit(kExitUsage);
    }
    return std::unique_ptr<QngDevice>(std::make_unique<VendorDevice>(g_qng));
  };
  return RunWorker(open, sink, SteadyClock::Instance(), *options);
}

}  // namespace
}  // namespace rngmux::qwqng

int main(int argc, char** argv) { return rngmux::qwqng::WorkerMain(argc, argv); }
