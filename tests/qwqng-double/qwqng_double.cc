// The libqwqng 1.4 test double. It behaves as the vendor library is documented
// to behave, with a simulated device instead of USB:
//
// Device: the first directory under $QWQNG_DOUBLE_SYSFS/bus/usb/devices with
//   idVendor 0403 and idProduct 6001 or 6014; its `serial` is the DeviceID and
//   its `devnum` tells a replugged device from the one that was opened. Removing
//   the directory (or changing devnum) is an unplug.
// Output: AES-256-CTR keystream under SHA-256($QWQNG_DOUBLE_SEED) with a zero
//   IV, the stream rngmux's `test:SEED` source produces. A read that fails fills
//   the buffer from a separate "poison" stream instead: block i of it is
//   SHA-256("qwqng-double-poison:" SEED ":" i as 8 bytes little-endian).
// Faults: files in the directory $QWQNG_DOUBLE_CONTROL, read on every call.
//   read_fault       one-shot, consumed by the read it hits: timeout, io_error,
//                    stats_exception, hang (blocks until killed), crash (abort)
//   stats_failing    while it exists, the device's own health test fails
//   busy             while it exists, opening finds the device in use
//   rate             throttle, bytes per second (the real device: ~500000): a token
//                    bucket that starts empty and holds up to kCatchUpSeconds of
//                    output, so a reader that falls behind catches up, but the
//                    output since the open never exceeds rate * time
//   stall_open       seconds the constructor blocks
//   stall_reset      seconds Reset() blocks
//   io_timeout       seconds a timed-out read blocks (default 0.3)
//   clear_delay      seconds the first read after Clear() blocks (default 0.2)
// Reset() after an unplug aborts with a message: in the real library it uses
// freed memory, so a caller that does it must fail its tests.

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "qwqng.hpp"

namespace {

constexpr long kMaxRead = 8192;
constexpr std::size_t kStatusBytes = 96;
constexpr std::size_t kSerialBytes = 64;
constexpr int kRuntimeInfoFloats = 17;
// How far behind its schedule the throttled device may fall and then catch up.
// More than the FTDI chip and USB stack buffer, so that a test measuring rngmux's
// throughput is not thrown off by a stall of a loaded machine: bytes a stalled
// reader did not fetch are still there when it comes back (up to this much).
constexpr double kCatchUpSeconds = 2.0;

constexpr std::uint32_t Code(long code) { return static_cast<std::uint32_t>(code); }

// Process-global, as in the real library: every object shares one status.
std::uint32_t g_status = Code(S_OK);
// A successful open leaks its USB handle (the destructor does not close it), so
// the process keeps the device: a later object in the same process finds it busy.
bool g_claimed = false;
int g_lock_fd = -1;

bool IsOk(std::uint32_t code) { return code == Code(S_OK) || code == Code(QNG_S_OK); }

// After an error, only these replace the status; everything else leaves it.
void Record(std::uint32_t outcome) {
  if (IsOk(g_status) || outcome == Code(QNG_S_OK) || outcome == Code(QNG_E_STATS_EXCEPTION) ||
      outcome == Code(QNG_E_DEVICE_NOT_OPENED)) {
    g_status = outcome;
  }
}

int Current() { return static_cast<int>(g_status); }

const char* StatusText(std::uint32_t code) {
  switch (code) {
    case Code(S_OK):
    case Code(QNG_S_OK):
      return "QNG device reports success.";
    case Code(QNG_E_GENERAL_FAILURE):
      return "QNG general error.";
    case Code(QNG_E_IO_ERROR):
      return "QNG I/O error.";
    case Code(QNG_E_IO_TIMEOUT):
      return "QNG I/O request has timed out.";
    case Code(QNG_E_IO_ARRAY_OVERSIZED):
      return "QNG read array size exceeds max size.";
    case Code(QNG_E_STATS_EXCEPTION):
      return "QNG test statistics exception.";
    case Code(QNG_E_STATS_UNSUPPORTED):
      return "QNG stats not supported with this device.";
    case Code(QNG_E_DIAGX_UNSUPPORTED):
      return "QNG diagnostics not supported with this device.";
    case Code(QNG_E_DEVICE_NOT_OPENED):
      return "QNG device not found or already in use.";
  }
  return "QNG general error.";
}

// What libftdi prints when there is no device to talk to.
void Unavailable() { std::fputs("USB device unavailable\n", stderr); }

std::string Env(const char* name, const char* fallback = "") {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}

std::optional<std::string> ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in) return std::nullopt;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ' || line.back() == '\r')) {
    line.pop_back();
  }
  return line;
}

std::string ControlPath(const char* name) { return Env("QWQNG_DOUBLE_CONTROL") + "/" + name; }

bool ControlExists(const char* name) {
  return !Env("QWQNG_DOUBLE_CONTROL").empty() && access(ControlPath(name).c_str(), F_OK) == 0;
}

std::optional<std::string> ReadControl(const char* name) {
  if (Env("QWQNG_DOUBLE_CONTROL").empty()) return std::nullopt;
  return ReadLine(ControlPath(name));
}

double ControlNumber(const char* name, double fallback) {
  const std::optional<std::string> text = ReadControl(name);
  if (!text || text->empty()) return fallback;
  char* end = nullptr;
  const double value = std::strtod(text->c_str(), &end);
  return end != text->c_str() ? value : fallback;
}

// A one-shot fault: renaming the file claims it, so it fires exactly once even if
// several processes look.
std::optional<std::string> TakeControl(const char* name) {
  if (Env("QWQNG_DOUBLE_CONTROL").empty()) return std::nullopt;
  const std::string path = ControlPath(name);
  const std::string taken = path + ".taken." + std::to_string(getpid());
  if (std::rename(path.c_str(), taken.c_str()) != 0) return std::nullopt;
  std::optional<std::string> text = ReadLine(taken);
  std::remove(taken.c_str());
  return text;
}

void SleepSeconds(double seconds) {
  if (seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct UsbEntry {
  std::string dir;
  std::string serial;
  std::string devnum;
};

std::optional<UsbEntry> ReadEntry(const std::string& dir) {
  const auto vendor = ReadLine(dir + "/idVendor");
  const auto product = ReadLine(dir + "/idProduct");
  if (!vendor || !product || *vendor != "0403" || (*product != "6001" && *product != "6014")) {
    return std::nullopt;
  }
  return UsbEntry{dir, ReadLine(dir + "/serial").value_or(""),
                  ReadLine(dir + "/devnum").value_or("")};
}

std::optional<UsbEntry> FindDevice() {
  const std::string root = Env("QWQNG_DOUBLE_SYSFS");
  if (root.empty()) return std::nullopt;
  const std::string devices = root + "/bus/usb/devices";
  DIR* dir = opendir(devices.c_str());
  if (dir == nullptr) return std::nullopt;
  std::vector<std::string> names;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') names.emplace_back(entry->d_name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    if (auto entry = ReadEntry(devices + "/" + name)) return entry;
  }
  return std::nullopt;
}

// Across processes the device is in use while another process holds it open;
// the lock is released only when that process ends, like a claimed interface.
// The lock is on the control directory itself: creating a lock file would need a
// call (open with O_CREAT) that rngmux's seccomp filter, which the worker inherits,
// refuses.
bool ClaimAcrossProcesses() {
  if (Env("QWQNG_DOUBLE_CONTROL").empty()) return true;
  const int fd = open(Env("QWQNG_DOUBLE_CONTROL").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return false;
  }
  g_lock_fd = fd;
  return true;
}

bool IsGen3Serial(const std::string& serial) {
  return serial.size() >= 4 && serial[3] >= '4' && serial[3] <= '6';
}

}  // namespace

struct QWQNG::Device {
  UsbEntry usb;
  std::string seed;
  EVP_CIPHER_CTX* stream = nullptr;
  std::uint64_t poison_block = 0;
  unsigned char poison[SHA256_DIGEST_LENGTH] = {};
  std::size_t poison_used = sizeof poison;
  bool unplugged = false;
  bool after_clear = false;
  // Pacing: the time at which the bytes handed out so far are paid for at `rate`.
  bool paced = false;
  double ready_at = 0;

  // Notices an unplug; once gone, this object never sees the device again.
  bool Unplugged() {
    if (!unplugged) {
      const std::optional<UsbEntry> now = ReadEntry(usb.dir);
      unplugged = !now || now->serial != usb.serial || now->devnum != usb.devnum;
    }
    return unplugged;
  }

  void FillGood(unsigned char* out, long length) {
    std::memset(out, 0, static_cast<std::size_t>(length));
    int written = 0;
    if (EVP_EncryptUpdate(stream, out, &written, out, static_cast<int>(length)) != 1) abort();
  }

  void FillPoison(unsigned char* out, long length) {
    for (long i = 0; i < length; ++i) {
      if (poison_used == sizeof poison) {
        std::string input = "qwqng-double-poison:" + seed + ":";
        for (int b = 0; b < 8; ++b) input += static_cast<char>((poison_block >> (8 * b)) & 0xff);
        ++poison_block;
        SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), poison);
        poison_used = 0;
      }
      out[i] = poison[poison_used++];
    }
  }

  // A token bucket: each byte costs 1/rate seconds of credit, credit accrues with
  // time up to kCatchUpSeconds, and the first paced read starts with none.
  void Pace(long length) {
    const double rate = ControlNumber("rate", 0);
    if (rate <= 0) return;
    const double now = Now();
    if (!paced) {
      paced = true;
      ready_at = now;
    }
    ready_at = std::max(ready_at, now - kCatchUpSeconds) + static_cast<double>(length) / rate;
    SleepSeconds(ready_at - now);
  }

  int Read(unsigned char* out, long length) {
    if (Unplugged()) {
      FillPoison(out, length);
      Record(Code(QNG_E_IO_ERROR));
      return Current();
    }
    if (const std::optional<std::string> fault = TakeControl("read_fault")) {
      const double timeout = ControlNumber("io_timeout", 0.3);
      if (*fault == "hang") {
        for (;;) SleepSeconds(1);
      }
      if (*fault == "crash") {
        std::fputs("qwqng double: crashing in RandBytes as told by read_fault\n", stderr);
        abort();
      }
      std::uint32_t outcome = Code(QNG_E_IO_ERROR);
      if (*fault == "timeout") {
        SleepSeconds(timeout);
        outcome = Code(QNG_E_IO_TIMEOUT);
      } else if (*fault == "stats_exception") {
        SleepSeconds(timeout);
        outcome = Code(QNG_E_STATS_EXCEPTION);
      } else if (*fault != "io_error") {
        std::fprintf(stderr, "qwqng double: unknown read_fault \"%s\"\n", fault->c_str());
        abort();
      }
      FillPoison(out, length);
      Record(outcome);
      return Current();
    }
    if (ControlExists("stats_failing")) {
      // The device stops its output when its own statistics look bad.
      SleepSeconds(ControlNumber("io_timeout", 0.3));
      FillPoison(out, length);
      Record(Code(QNG_E_STATS_EXCEPTION));
      return Current();
    }
    if (after_clear) {
      after_clear = false;
      SleepSeconds(ControlNumber("clear_delay", 0.2));
    }
    Pace(length);
    if (!IsOk(g_status)) {
      // Sticky: the buffer is filled, and the call still fails.
      FillPoison(out, length);
      return Current();
    }
    FillGood(out, length);
    Record(Code(S_OK));
    return Current();
  }
};

QWQNG::QWQNG()
    : statusString_(new char[kStatusBytes]()), devId_(new char[kSerialBytes]()), device_(nullptr) {
  (void)ftdi_get_library_version();
  SleepSeconds(ControlNumber("stall_open", 0));
  const std::optional<UsbEntry> usb = FindDevice();
  if (!usb || g_claimed || ControlExists("busy") || !ClaimAcrossProcesses()) {
    Unavailable();
    Record(Code(QNG_E_DEVICE_NOT_OPENED));
    return;
  }
  g_claimed = true;
  device_ = new Device();
  device_->usb = *usb;
  device_->seed = Env("QWQNG_DOUBLE_SEED", "qwqng-double");
  unsigned char key[SHA256_DIGEST_LENGTH];
  unsigned char iv[16] = {};
  SHA256(reinterpret_cast<const unsigned char*>(device_->seed.data()), device_->seed.size(), key);
  device_->stream = EVP_CIPHER_CTX_new();
  if (device_->stream == nullptr ||
      EVP_EncryptInit_ex(device_->stream, EVP_aes_256_ctr(), nullptr, key, iv) != 1) {
    abort();
  }
  std::snprintf(devId_, kSerialBytes, "%s", usb->serial.c_str());
  Record(Code(QNG_S_OK));
}

QWQNG* QWQNG::Instance() { return new QWQNG(); }

QWQNG::~QWQNG() {
  // The claim on the device (g_claimed, the lock) is deliberately kept: the real
  // destructor leaks its USB handle.
  if (device_ != nullptr) EVP_CIPHER_CTX_free(device_->stream);
  delete device_;
  delete[] statusString_;
  delete[] devId_;
}

char* QWQNG::StatusString() {
  std::snprintf(statusString_, kStatusBytes, "%s", StatusText(g_status));
  return statusString_;
}

char* QWQNG::DeviceID() { return devId_; }

int QWQNG::RandBytes(char* pval, long length) {
  if (length == 0) return static_cast<int>(S_OK);  // no I/O at all
  if (length < 0 || length > kMaxRead) {
    Record(Code(QNG_E_IO_ARRAY_OVERSIZED));
    return Current();
  }
  if (device_ == nullptr) {
    Unavailable();
    Record(Code(QNG_E_DEVICE_NOT_OPENED));
    return Current();
  }
  return device_->Read(reinterpret_cast<unsigned char*>(pval), length);
}

int QWQNG::RandInt32(long* pVal) {
  unsigned char bytes[4];
  const int rc = RandBytes(reinterpret_cast<char*>(bytes), sizeof bytes);
  // Only the low four bytes: the rest of *pVal is left as it was.
  std::memcpy(pVal, bytes, sizeof bytes);
  return rc;
}

int QWQNG::RandUniform(double* pVal) {
  unsigned char bytes[6];
  const int rc = RandBytes(reinterpret_cast<char*>(bytes), sizeof bytes);
  std::uint64_t value = 0;
  for (unsigned char b : bytes) value = (value << 8) | b;
  *pVal = static_cast<double>(value) / 281474976710656.0;  // 2^48
  return rc;
}

int QWQNG::RandNormal(double* pVal) {
  double u1 = 0;
  double u2 = 0;
  RandUniform(&u1);
  const int rc = RandUniform(&u2);
  *pVal = std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * M_PI * u2);
  return rc;
}

int QWQNG::Clear() {
  if (device_ == nullptr) {
    Unavailable();
    Record(Code(QNG_E_DEVICE_NOT_OPENED));
    return Current();
  }
  if (device_->Unplugged()) {
    Record(Code(QNG_E_IO_ERROR));
    return Current();
  }
  device_->after_clear = true;
  return Current();
}

int QWQNG::Reset() {
  SleepSeconds(ControlNumber("stall_reset", 0));
  if (device_ == nullptr) {
    // Reset() reopens the device it had; it never looks for a new one.
    Unavailable();
    Record(Code(QNG_E_DEVICE_NOT_OPENED));
    return Current();
  }
  if (device_->Unplugged()) {
    std::fputs(
        "qwqng double: Reset() called after the device was unplugged: the real libqwqng uses "
        "freed memory here (use-after-free)\n",
        stderr);
    abort();
  }
  g_status = Code(QNG_S_OK);
  return Current();
}

int QWQNG::RuntimeInfo(float* pVal) {
  if (device_ == nullptr) {
    Unavailable();
    Record(Code(QNG_E_DEVICE_NOT_OPENED));
    return Current();
  }
  if (device_->Unplugged()) {
    Record(Code(QNG_E_IO_ERROR));
    return Current();
  }
  if (!IsGen3Serial(device_->usb.serial)) {
    Record(Code(QNG_E_STATS_UNSUPPORTED));
    return Current();
  }
  const bool failing = ControlExists("stats_failing");
  pVal[0] = failing ? 1.0f : 0.0f;
  for (int i = 1; i < kRuntimeInfoFloats; ++i) {
    // Plausible figures: near-full entropy, tiny bias and correlation.
    pVal[i] = (i % 4 == 1) ? (failing ? 0.5f : 0.9999f) : 0.0001f * static_cast<float>(i);
  }
  return Current();
}

int QWQNG::Diagnostics(char dxCode, char* dxInfo) {
  if (device_ == nullptr) {
    Unavailable();
    Record(Code(QNG_E_DEVICE_NOT_OPENED));
    return Current();
  }
  if (!IsGen3Serial(device_->usb.serial) || dxCode < 0x10 || dxCode > 0x18) {
    Record(Code(QNG_E_DIAGX_UNSUPPORTED));
    return Current();
  }
  std::memset(dxInfo, 0, 128);
  std::snprintf(dxInfo, 128, "qwqng double diagnostics 0x%02x for %s", dxCode,
                device_->usb.serial.c_str());
  return Current();
}

// Found by rngmux-qwqng-worker with dlsym: the double reads, creates, locks and
// removes files under $QWQNG_DOUBLE_CONTROL (above), which the worker's seccomp
// filter then allows too. The vendor library has no such symbol.
extern "C" __attribute__((visibility("default"))) const char* qwqng_double_control_files() {
  static const std::string dir = Env("QWQNG_DOUBLE_CONTROL");
  return dir.c_str();
}
