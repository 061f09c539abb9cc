#include "sources/qwqng/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

extern char** environ;

namespace rngmux {
namespace {

constexpr std::chrono::milliseconds kReapPollInterval{5};

// Signals whose handling rngmux changes (an ignored SIGPIPE; the control signals, which
// it blocks and reads from a signalfd) and that the helper should see with their
// default action. The helper's mask is cleared too (below).
constexpr int kDefaultSignals[] = {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD};

// posix_spawn's C interfaces want mutable strings.
std::vector<char*> ArgvPointers(std::vector<std::string>& argv) {
  std::vector<char*> pointers;
  for (std::string& arg : argv) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    return "killed by signal " + std::to_string(sig) + " (" + (name ? name : "?") + ")";
  }
  return "ended with wait status " + std::to_string(status);
}

Result<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(const std::vector<std::string>& argv,
                                                          int child_fd) {
  const std::string& path = argv.at(0);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return Status::FromErrno(path + ": pipe", errno);
  int read_fd = pipe_fds[0];
  int write_fd = pipe_fds[1];
  // dup2 onto itself would keep close-on-exec set: move the write end out of the way.
  if (write_fd == child_fd) {
    write_fd = fcntl(pipe_fds[1], F_DUPFD_CLOEXEC, child_fd + 1);
    close(pipe_fds[1]);
    if (write_fd < 0) {
      close(read_fd);
      return Status::FromErrno(path + ": fcntl", errno);
    }
  }
  fcntl(read_fd, F_SETFL, fcntl(read_fd, F_GETFL) | O_NONBLOCK);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, 2, 1);
  posix_spawn_file_actions_adddup2(&actions, write_fd, child_fd);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (const int sig : kDefaultSignals) sigaddset(&defaults, sig);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(
      &attr,
      static_cast<short>(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP));

  std::vector<std::string> args = argv;
  std::vector<char*> pointers = ArgvPointers(args);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, path.c_str(), &actions, &attr, pointers.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(write_fd);
  if (rc != 0) {
    close(read_fd);
    return Status::FromErrno(path + ": spawn", rc);
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, read_fd));
}

ChildProcess::~ChildProcess() {
  Terminate(SIGKILL, std::chrono::milliseconds(0));
  if (fd_ >= 0) close(fd_);
}

std::string ChildProcess::Terminate(int signal, std::chrono::milliseconds grace) {
  if (reaped_) return how_ended_;
  // Until it is reaped, the pid cannot be reused, so these signals reach our child.
  if (signal != 0) kill(pid_, signal);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  for (;;) {
    const pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) break;
    if (done < 0 && errno != EINTR) {
      how_ended_ = Status::FromErrno("waitpid", errno).message();
      reaped_ = true;
      return how_ended_;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(kReapPollInterval);
  }
  how_ended_ = DescribeWaitStatus(status);
  reaped_ = true;
  return how_ended_;
}

}  // namespace rngmux
