#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace rngmux {

// A helper program that talks to us through a pipe: its descriptor `child_fd`
// is the write end, ours is the read end (non-blocking, close-on-exec). stdin is
// /dev/null, stdout goes to our stderr (so nothing the program prints can mix
// with the pipe), stderr is ours. It runs in a process group of its own, so a
// terminal's Ctrl-C reaches rngmux, which then stops it in order.
//
// The process is always reaped: Terminate() or the destructor wait for it, so
// no zombie outlives this object. Not thread-safe; one owner.
class ChildProcess {
 public:
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // argv[0] is the program's path. Errors name it:
  // "/usr/bin/rngmux-qwqng-worker: spawn: No such file or directory".
  static Result<std::unique_ptr<ChildProcess>> Spawn(const std::vector<std::string>& argv,
                                                     int child_fd);

  pid_t pid() const { return pid_; }
  int fd() const { return fd_; }

  // Sends `signal` (none if 0), waits up to `grace` for the exit, then sends
  // SIGKILL and waits for good. Returns how it ended: "exited with status 3",
  // "killed by signal 9 (Killed)". Later calls return the same text.
  std::string Terminate(int signal, std::chrono::milliseconds grace);

 private:
  ChildProcess(pid_t pid, int fd) : pid_(pid), fd_(fd) {}

  pid_t pid_;
  int fd_;
  bool reaped_ = false;
  std::string how_ended_;
};

// "exited with status 3" / "killed by signal 6 (Aborted)" for a waitpid status.
std::string DescribeWaitStatus(int status);

}  // namespace rngmux
