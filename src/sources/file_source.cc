#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "sources/drivers.h"

namespace rngmux {
namespace {

// Slow devices (serial TRNGs deliver a few KiB/s) should not make the pool wait
// for a large block, so files default to a smaller one than other sources.
constexpr std::size_t kDefaultFileBlockBytes = 512;

// Default claims, overridable with entropy=. Full entropy only where the device
// documents it: /dev/hwrng is the kernel's hw_random interface, whose drivers hand out
// their device's conditioned output (virtio-rng, TPMs, CPU and SoC RNGs). Anything
// else behind a path (a serial TRNG, a FIFO) may be raw noise, so it is credited with
// 4 bits per byte and conditioned to full entropy before it is served, at 32 bytes
// out per 80 in. A device whose output is documented full-entropy says entropy=8.
constexpr double kHwrngEntropyBits = 8;
constexpr double kDefaultFileEntropyBits = 4;
constexpr char kHwrngPath[] = "/dev/hwrng";

// Some drivers (hw_random among them) have no poll method and so always look
// readable, yet a non-blocking read may find nothing. Pause briefly before asking
// again rather than spin.
constexpr std::chrono::milliseconds kNothingReadyPause{2};

// Only streams that deliver new bytes are sources. A regular file would be read
// again from its start after every end of file (the reopen that serves FIFOs and
// replugged devices), handing out the same bytes twice.
bool IsStreamingFileType(mode_t mode) { return S_ISCHR(mode) || S_ISFIFO(mode) || S_ISSOCK(mode); }

std::string NotAStreamMessage(const std::string& path) {
  return path +
         " is not a character device, tty or FIFO (a regular file would be served again "
         "after every end of file)";
}

// A device, tty or FIFO read without ever blocking outside poll(), so that the
// runner's Interrupt ends a read that would otherwise wait forever.
//
// The descriptor is opened lazily by Read and closed on end of file or a read
// error; the next Read (after the runner's back-off) opens it again, which is how a
// replugged USB TRNG or a new FIFO writer is picked up.
class FileSource final : public Source {
 public:
  using OpenFile = std::function<Result<int>(const std::string& path)>;
  FileSource(std::string name, std::string path, CommonSourceOptions options, OpenFile open_file)
      : name_(std::move(name)),
        path_(std::move(path)),
        options_(options),
        open_file_(std::move(open_file)) {}
  ~FileSource() override { Close(); }

  const std::string& name() const override { return name_; }
  double claimed_entropy_bits_per_byte() const override { return options_.entropy_bits_per_byte; }
  std::size_t preferred_block_size() const override { return options_.block_size; }

  Result<std::size_t> Read(std::span<std::uint8_t> out, const Interrupt& stop) override {
    if (fd_ < 0) {
      Status opened = Open();
      if (!opened.ok()) return opened;
    }
    for (;;) {
      // Poll first, read second: a FIFO that has never had a writer reads as end of
      // file, but poll() waits for the first writer (Linux reports POLLHUP only
      // after a writer has come and gone).
      pollfd fds[2] = {{fd_, POLLIN, 0}, {stop.fd(), POLLIN, 0}};
      const int ready = poll(fds, 2, -1);
      if (ready < 0) {
        if (errno == EINTR) continue;
        return CloseWith(Status::FromErrno(path_ + ": poll", errno));
      }
      if (fds[1].revents != 0) return std::size_t{0};
      if (fds[0].revents & POLLNVAL)
        return CloseWith(Status::Error(path_ + ": poll: bad descriptor"));
      if (fds[0].revents == 0) continue;

      const ssize_t n = read(fd_, out.data(), out.size());
      if (n > 0) return static_cast<std::size_t>(n);
      if (n == 0) return CloseWith(Status::Error(path_ + ": end of file"));
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!stop.SleepFor(kNothingReadyPause)) return std::size_t{0};
        continue;
      }
      return CloseWith(Status::FromErrno(path_ + ": read", errno));
    }
  }

 private:
  Status Open() {
    if (open_file_) {
      Result<int> fd = open_file_(path_);
      if (!fd.ok()) return fd.status();
      fd_ = *fd;
    } else {
      const int fd = open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
      if (fd < 0) return Status::FromErrno(path_ + ": open", errno);
      fd_ = fd;
    }
    struct stat st {};
    if (fstat(fd_, &st) != 0) return CloseWith(Status::FromErrno(path_ + ": fstat", errno));
    if (!IsStreamingFileType(st.st_mode)) return CloseWith(Status::Error(NotAStreamMessage(path_)));
    // A serial TRNG must deliver bytes untouched: no line editing, no CR/LF
    // translation, no echo, no signals from control characters.
    if (isatty(fd_)) {
      termios tio{};
      if (tcgetattr(fd_, &tio) != 0)
        return CloseWith(Status::FromErrno(path_ + ": tcgetattr", errno));
      cfmakeraw(&tio);
      if (tcsetattr(fd_, TCSANOW, &tio) != 0) {
        return CloseWith(Status::FromErrno(path_ + ": tcsetattr", errno));
      }
    }
    return Status::Ok();
  }

  Status CloseWith(Status status) {
    Close();
    return status;
  }

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  std::string name_;
  std::string path_;
  CommonSourceOptions options_;
  OpenFile open_file_;  // empty: open() here
  int fd_ = -1;
};

}  // namespace

Result<std::unique_ptr<Source>> CreateFileSource(const SourceSpec& spec,
                                                 const SourceFactoryContext& context) {
  Result<CommonSourceOptions> options = ParseCommonSourceOptions(
      spec, spec.argument == kHwrngPath ? kHwrngEntropyBits : kDefaultFileEntropyBits,
      kDefaultFileBlockBytes);
  if (!options.ok()) return options.status();
  if (spec.argument.empty()) return SourceSpecError(spec, "file needs a path (file:PATH)");
  // A path that does not exist yet is fine (a USB TRNG plugged in later); one that
  // exists must be a stream. Open() checks again, since the path may change.
  struct stat st {};
  if (stat(spec.argument.c_str(), &st) == 0 && !IsStreamingFileType(st.st_mode)) {
    return SourceSpecError(spec, NotAStreamMessage(spec.argument));
  }
  return std::unique_ptr<Source>(
      std::make_unique<FileSource>(spec.text, spec.argument, *options, context.open_file));
}

}  // namespace rngmux
