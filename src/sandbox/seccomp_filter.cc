#include "sandbox/seccomp_filter.h"

#include <fcntl.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <termios.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>

namespace rngmux {
namespace {

// The lists are what the daemon and the worker call, checked by running the whole
// integration suite (release, ASan and TSan builds) with the filter on and reading
// the kernel's audit records of type 1326 back (docs/security.md says how). Names
// this architecture does not have are skipped.

// Memory, threads, time, signals, descriptors: what any thread of either program does.
// clang-format off
constexpr const char* kCommon[] = {
    "read", "readv", "pread64", "write", "writev", "pwrite64", "close", "close_range", "fstat",
    "newfstatat", "statx", "lseek", "fcntl", "dup", "dup2", "dup3", "pipe2", "mmap", "munmap",
    "mprotect", "mremap", "madvise", "brk", "mlock", "munlock", "futex", "set_robust_list",
    "get_robust_list", "rseq", "set_tid_address", "clone", "clone3", "exit", "exit_group",
    "sched_yield", "sched_getaffinity", "getcpu", "rt_sigaction", "rt_sigprocmask",
    "rt_sigreturn", "rt_sigtimedwait", "restart_syscall", "kill", "tgkill", "tkill", "getpid",
    "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
    "getgroups", "clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep",
    "clock_nanosleep", "poll", "ppoll", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2", "eventfd2", "timerfd_create", "timerfd_settime",
    "timerfd_gettime", "getrandom", "uname", "sysinfo", "getrlimit", "prlimit64", "membarrier",
    "wait4", "socket", "bind", "setsockopt", "getsockopt", "getsockname", "recvmsg", "recvfrom",
    "sendmsg", "sendto", "readlink", "access", "faccessat", "faccessat2", "arch_prctl",
    "getdents64", "statfs", "fstatfs",
};
// clang-format on

// The daemon beyond kCommon: sockets of every transport and the control socket,
// netlink sock_diag for client identity, unix socket files, memfd for vhost-user,
// the QNG worker started by posix_spawn (clone3 + execve, with its own process group)
// and what that worker does before its own filter (the loader, libusb, the double).
// clang-format off
constexpr const char* kDaemonOnly[] = {
    "socketpair", "listen", "accept", "accept4", "connect", "shutdown", "getpeername",
    "sendmmsg", "recvmmsg", "signalfd4", "sigaltstack", "unlink", "unlinkat", "fchmod",
    "fchmodat", "chmod", "umask", "mkdir", "mkdirat", "memfd_create", "ftruncate", "fallocate",
    "execve", "setpgid", "waitid", "getcwd", "flock", "readlinkat", "select", "pselect6",
    "fsync", "fdatasync", "sched_getparam", "sched_getscheduler", "sched_setscheduler",
    "getpgrp", "getpgid", "setrlimit", "pidfd_open", "pidfd_send_signal", "seccomp", "rename",
    "renameat", "renameat2",
};
// clang-format on

// What the sanitizer runtimes do on their own (stack unwinding, symbolizing a report,
// their background threads); only in those builds (unused in the others).
// clang-format off
[[maybe_unused]] constexpr const char* kSanitizerRuntime[] = {
    "sigaltstack", "readlinkat", "getdents", "sched_getparam", "sched_getscheduler",
    "personality", "mincore", "msync", "open", "stat", "lstat", "pipe", "fork", "vfork",
    "execve", "wait4", "setrlimit", "ptrace", "process_vm_readv", "getpgrp",
};
// clang-format on

// prctl options either program may use after start-up: thread names, the worker's
// death signal, and the worker's own filter (which only narrows the daemon's).
constexpr int kPrctlOptions[] = {PR_SET_NAME,     PR_GET_NAME,         PR_SET_PDEATHSIG,
                                 PR_GET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS,
                                 PR_GET_SECCOMP,  PR_SET_SECCOMP,      PR_CAPBSET_READ};

// ioctl requests: non-blocking mode and pending bytes (Asio), terminal settings of a
// serial TRNG (file: sources), and usbdevfs ('U', libusb in the QNG worker).
constexpr unsigned long kIoctlRequests[] = {FIONBIO, FIONREAD, FIOCLEX, FIONCLEX,
                                            TCGETS,  TCSETS,   TCSETSW, TCSETSF};
constexpr unsigned long kUsbdevfsType = 'U';

class Filter {
 public:
  explicit Filter(SeccompMode mode)
      : ctx_(seccomp_init(mode == SeccompMode::kLog ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS)) {}
  ~Filter() {
    if (ctx_ != nullptr) seccomp_release(ctx_);
  }
  Filter(const Filter&) = delete;
  Filter& operator=(const Filter&) = delete;

  bool ok() const { return ctx_ != nullptr && error_.empty(); }
  const std::string& error() const { return error_; }
  scmp_filter_ctx ctx() { return ctx_; }

  template <std::size_t N>
  void Allow(const char* const (&names)[N]) {
    for (const char* name : names) Allow(name);
  }
  void Allow(const char* name) {
    const int number = seccomp_syscall_resolve_name(name);
    if (number == __NR_SCMP_ERROR) return;  // not a call on this architecture
    Check(seccomp_rule_add(ctx_, SCMP_ACT_ALLOW, number, 0), name);
  }
  void AllowIf(const char* name, unsigned int count, const scmp_arg_cmp* args) {
    const int number = seccomp_syscall_resolve_name(name);
    if (number == __NR_SCMP_ERROR) return;
    Check(seccomp_rule_add_array(ctx_, SCMP_ACT_ALLOW, number, count, args), name);
  }
  void Check(int rc, const char* what) {
    if (rc < 0 && error_.empty()) {
      error_ = std::string("seccomp_rule_add ") + what + ": " + std::strerror(-rc);
    }
  }

 private:
  scmp_filter_ctx ctx_;
  std::string error_;
};

// A comparison of argument `arg` (what libseccomp's SCMP_A0..SCMP_A5 make, without
// their compound literals). For SCMP_CMP_MASKED_EQ, `a` is the mask and `b` the value.
scmp_arg_cmp Arg(unsigned int arg, scmp_compare op, scmp_datum_t a, scmp_datum_t b = 0) {
  scmp_arg_cmp cmp{};
  cmp.arg = arg;
  cmp.op = op;
  cmp.datum_a = a;
  cmp.datum_b = b;
  return cmp;
}

void AllowPrctlAndIoctl(Filter& filter) {
  for (const int option : kPrctlOptions) {
    const scmp_arg_cmp arg = Arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(option));
    filter.AllowIf("prctl", 1, &arg);
  }
  for (const unsigned long request : kIoctlRequests) {
    const scmp_arg_cmp arg = Arg(1, SCMP_CMP_EQ, request);
    filter.AllowIf("ioctl", 1, &arg);
  }
  const scmp_arg_cmp usb = Arg(1, SCMP_CMP_MASKED_EQ, 0xff00, kUsbdevfsType << 8);
  filter.AllowIf("ioctl", 1, &usb);
}

// Opening without creating, truncating or appending: device files, FIFOs, /proc and
// /sys, libraries.
void AllowOpenExisting(Filter& filter) {
  constexpr scmp_datum_t kWriting = O_CREAT | O_TRUNC | O_APPEND;
  const scmp_arg_cmp openat = Arg(2, SCMP_CMP_MASKED_EQ, kWriting, 0);
  filter.AllowIf("openat", 1, &openat);
  const scmp_arg_cmp open = Arg(1, SCMP_CMP_MASKED_EQ, kWriting, 0);
  filter.AllowIf("open", 1, &open);
}

}  // namespace

bool ParseSeccompMode(std::string_view text, SeccompMode* mode) {
  if (text == "on") {
    *mode = SeccompMode::kOn;
  } else if (text == "off") {
    *mode = SeccompMode::kOff;
  } else if (text == "log") {
    *mode = SeccompMode::kLog;
  } else {
    return false;
  }
  return true;
}

const char* SeccompModeName(SeccompMode mode) {
  switch (mode) {
    case SeccompMode::kOff:
      return "off";
    case SeccompMode::kLog:
      return "log";
    case SeccompMode::kOn:
      break;
  }
  return "on";
}

std::string LoadSeccompFilter(SeccompProfile profile, SeccompMode mode) {
  if (mode == SeccompMode::kOff) return "";
  Filter filter(mode);
  if (filter.ctx() == nullptr) return "seccomp_init failed";
  filter.Check(seccomp_attr_set(filter.ctx(), SCMP_FLTATR_CTL_TSYNC, 1), "tsync");
  filter.Allow(kCommon);
  AllowPrctlAndIoctl(filter);
  AllowOpenExisting(filter);
  switch (profile) {
    case SeccompProfile::kDaemon:
      filter.Allow(kDaemonOnly);
      break;
    case SeccompProfile::kQngWorkerWithTestDouble:
      // The double's control files: it locks its control directory (the device is
      // in use) and takes a one-shot fault file by renaming, then removing it.
      // Creating files stays refused: the daemon's filter, which the worker
      // inherits, refuses it anyway.
      filter.Allow("flock");
      filter.Allow("rename");
      filter.Allow("renameat");
      filter.Allow("renameat2");
      filter.Allow("unlink");
      filter.Allow("unlinkat");
      break;
    case SeccompProfile::kQngWorker:
      break;
  }
#ifdef RNGMUX_SANITIZER_RUNTIME
  filter.Allow(kSanitizerRuntime);
  filter.Allow("prctl");
#endif
  if (!filter.ok()) return filter.error();
  const int rc = seccomp_load(filter.ctx());
  if (rc < 0) return std::string("seccomp_load: ") + std::strerror(-rc);
  return "";
}

}  // namespace rngmux
