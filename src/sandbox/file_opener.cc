#include "sandbox/file_opener.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace rngmux {
namespace {

// The reply to one request: what happened, and the descriptor when kOpened.
enum class Outcome : std::int32_t { kOpened, kOpenFailed, kNotConfigured, kNotAStream, kBad };
struct Reply {
  Outcome outcome = Outcome::kBad;
  std::int32_t error = 0;  // errno of a failed open
};

void SendReply(int fd, Reply reply, int passed_fd) {
  iovec iov{&reply, sizeof reply};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (passed_fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &passed_fd, sizeof(int));
  }
  while (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

Reply OpenOne(const std::string& path, const std::vector<std::string>& paths, int* opened) {
  *opened = -1;
  if (std::find(paths.begin(), paths.end(), path) == paths.end()) {
    return {Outcome::kNotConfigured, 0};
  }
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return {Outcome::kOpenFailed, errno};
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return {Outcome::kOpenFailed, err};
  }
  if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode)) {
    close(fd);
    return {Outcome::kNotAStream, 0};
  }
  *opened = fd;
  return {Outcome::kOpened, 0};
}

// The helper needs root's file access and nothing else of root's: every other
// capability goes (bounding set, effective, permitted), and no_new_privs. Failures
// are ignored: a helper of a daemon that is not root has none to drop.
void KeepOnlyFileAccess() {
  constexpr std::uint32_t kKept = (1U << CAP_DAC_OVERRIDE) | (1U << CAP_DAC_READ_SEARCH);
  for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; ++cap) {
    if (cap >= 32 || ((1U << cap) & kKept) == 0) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) == 0) {
    data[0].effective &= kKept;
    data[0].permitted &= kKept;
    data[0].inheritable = 0;
    data[1] = {};
    syscall(SYS_capset, &header, data);
  }
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

}  // namespace

void ServeFileOpenRequests(int fd, const std::vector<std::string>& paths) {
  char request[PATH_MAX];
  for (;;) {
    iovec iov{request, sizeof request};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const ssize_t n = recvmsg(fd, &msg, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the daemon's end closed
    if ((msg.msg_flags & MSG_TRUNC) != 0) {
      SendReply(fd, {Outcome::kBad, 0}, -1);
      continue;
    }
    const std::string path(request, static_cast<std::size_t>(n));
    int opened = -1;
    const Reply reply = path.find('\0') == std::string::npos ? OpenOne(path, paths, &opened)
                                                             : Reply{Outcome::kBad, 0};
    SendReply(fd, reply, opened);
    if (opened >= 0) close(opened);
  }
}

Result<std::unique_ptr<FileOpener>> FileOpener::Start(std::vector<std::string> paths) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    return Status::FromErrno("file opener: socketpair", errno);
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    close(fds[0]);
    close(fds[1]);
    return Status::FromErrno("file opener: fork", err);
  }
  if (pid == 0) {
    // The helper: nothing of the daemon's but its own socket and stdio.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    prctl(PR_SET_NAME, "rngmux-opener");
    const int fd = fds[1] == 3 ? 3 : dup2(fds[1], 3);
    if (fd != 3) _exit(1);
    close_range(4, ~0U, 0);
    signal(SIGPIPE, SIG_IGN);
    KeepOnlyFileAccess();
    ServeFileOpenRequests(3, paths);
    _exit(0);
  }
  close(fds[1]);
  return std::unique_ptr<FileOpener>(new FileOpener(fds[0], pid));
}

FileOpener::~FileOpener() {
  close(fd_);  // the helper reads end of file and exits
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

Result<int> FileOpener::Open(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (path.empty() || path.size() >= PATH_MAX) return Status::Error(path + ": path too long");
  if (send(fd_, path.data(), path.size(), MSG_NOSIGNAL) < 0) {
    return Status::FromErrno(path + ": file opener: send", errno);
  }
  Reply reply;
  iovec iov{&reply, sizeof reply};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno(path + ": file opener: recvmsg", errno);
  if (n != static_cast<ssize_t>(sizeof reply)) {
    return Status::Error(path + ": file opener: no answer (has it exited?)");
  }
  int fd = -1;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS &&
        cmsg->cmsg_len == CMSG_LEN(sizeof(int))) {
      std::memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
    }
  }
  switch (reply.outcome) {
    case Outcome::kOpened:
      if (fd < 0) return Status::Error(path + ": file opener: no descriptor passed");
      return fd;
    case Outcome::kOpenFailed:
      return Status::FromErrno(path + ": open", reply.error);
    case Outcome::kNotConfigured:
      return Status::Error(path +
                           ": not a path rngmux was started with (restart rngmux to read a new "
                           "one)");
    case Outcome::kNotAStream:
      return Status::Error(path + ": not a character device or FIFO");
    case Outcome::kBad:
      break;
  }
  if (fd >= 0) close(fd);
  return Status::Error(path + ": file opener: request refused");
}

}  // namespace rngmux
