#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace rngmux {

// A small process that stays root so a daemon that has dropped root can still open
// (and reopen, after an unplug) the `file:` sources it was configured with at
// start-up, such as a root-only /dev/hwrng or a 0600 FIFO.
//
// Why a helper rather than keeping the descriptor: a replugged USB TRNG or a FIFO
// that was removed and made again is a new file behind the same path, and a kept
// descriptor would go on reading the old one (or nothing). The helper is the one
// place left with root's rights, so it does as little as it can: it opens only the
// paths it was started with, read-only, non-blocking, close-on-exec and without
// becoming a controlling terminal, and hands a descriptor back (SCM_RIGHTS) only if
// fstat says it is a character device or a FIFO. Requests are one path per message
// on a SOCK_SEQPACKET socketpair; a request cut short (MSG_TRUNC) is refused. It
// exits when the daemon's end closes (or the daemon dies: PR_SET_PDEATHSIG).
//
// Start() forks, so it must be called while the process has one thread.
// Open() is thread-safe (file sources read on threads of their own).
class FileOpener {
 public:
  static Result<std::unique_ptr<FileOpener>> Start(std::vector<std::string> paths);
  ~FileOpener();
  FileOpener(const FileOpener&) = delete;
  FileOpener& operator=(const FileOpener&) = delete;

  // A descriptor for `path` (the caller owns it), or an error that names the path:
  //   /dev/hwrng: open: Permission denied
  //   /tmp/x: not a path rngmux was started with (restart rngmux to read a new one)
  //   /tmp/x: not a character device or FIFO
  Result<int> Open(const std::string& path);

  pid_t pid() const { return pid_; }

 private:
  FileOpener(int fd, pid_t pid) : fd_(fd), pid_(pid) {}

  std::mutex mutex_;  // one request and its reply at a time
  int fd_;
  pid_t pid_;
};

// The helper's side, for tests: serves requests on `fd` until it reads end of file,
// opening only `paths`. Returns when the other end has closed.
void ServeFileOpenRequests(int fd, const std::vector<std::string>& paths);

}  // namespace rngmux
