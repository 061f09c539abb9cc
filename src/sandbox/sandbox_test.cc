#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>

#include "sandbox/file_opener.h"
#include "sandbox/privileges.h"
#include "sandbox/seccomp_filter.h"

namespace rngmux {
namespace {

// Runs `body` in a forked child (a filter cannot be unloaded) and returns its wait
// status. The child ends with _exit(body()), never returning into gtest.
int InChild(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

TEST(SeccompFilterTest, ParsesModes) {
  SeccompMode mode = SeccompMode::kOff;
  EXPECT_TRUE(ParseSeccompMode("on", &mode));
  EXPECT_EQ(mode, SeccompMode::kOn);
  EXPECT_TRUE(ParseSeccompMode("log", &mode));
  EXPECT_EQ(mode, SeccompMode::kLog);
  EXPECT_TRUE(ParseSeccompMode("off", &mode));
  EXPECT_EQ(mode, SeccompMode::kOff);
  EXPECT_FALSE(ParseSeccompMode("On", &mode));
  EXPECT_STREQ(SeccompModeName(SeccompMode::kLog), "log");
}

TEST(SeccompFilterTest, DaemonFilterAllowsItsCallsAndKillsOthers) {
  const int allowed = InChild([] {
    if (!LoadSeccompFilter(SeccompProfile::kDaemon, SeccompMode::kOn).empty()) return 10;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 11;
    if (write(fds[0], "x", 1) != 1) return 12;
    char c = 0;
    if (read(fds[1], &c, 1) != 1 || c != 'x') return 13;
    std::thread thread([] {});  // source threads start after the filter
    thread.join();
    return 0;
  });
  EXPECT_TRUE(WIFEXITED(allowed) && WEXITSTATUS(allowed) == 0) << allowed;

  const int forbidden = InChild([] {
    if (!LoadSeccompFilter(SeccompProfile::kDaemon, SeccompMode::kOn).empty()) return 10;
    syscall(SYS_chroot, "/nonexistent");  // no daemon has a reason to
    return 0;
  });
  ASSERT_TRUE(WIFSIGNALED(forbidden)) << forbidden;
  EXPECT_EQ(WTERMSIG(forbidden), SIGSYS);
}

TEST(SeccompFilterTest, LogModeLetsTheCallThrough) {
  const int status = InChild([] {
    if (!LoadSeccompFilter(SeccompProfile::kDaemon, SeccompMode::kLog).empty()) return 10;
    return syscall(SYS_chroot, "/nonexistent") == -1 ? 0 : 11;
  });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(SeccompFilterTest, WorkerFilterIsNarrower) {
  // A socket pair is the daemon's business; the worker only has its pipe.
  const int status = InChild([] {
    if (!LoadSeccompFilter(SeccompProfile::kQngWorker, SeccompMode::kOn).empty()) return 10;
    int fds[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
    return 0;
  });
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
  // Opening an existing file read-only is allowed; creating one is not.
  const int opens = InChild([] {
    if (!LoadSeccompFilter(SeccompProfile::kQngWorker, SeccompMode::kOn).empty()) return 10;
    const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 11;
    close(fd);
    open("/tmp/rngmux-sandbox-test-never-created", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    return 0;
  });
  ASSERT_TRUE(WIFSIGNALED(opens)) << opens;
  EXPECT_EQ(WTERMSIG(opens), SIGSYS);
}

TEST(SeccompFilterTest, OffLoadsNothing) {
  const int status = InChild([] {
    if (!LoadSeccompFilter(SeccompProfile::kQngWorker, SeccompMode::kOff).empty()) return 10;
    return syscall(SYS_chroot, "/nonexistent") == -1 ? 0 : 11;
  });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

class FileOpenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/rngmux-opener-XXXXXX";
    ASSERT_NE(mkdtemp(name), nullptr);
    dir_ = name;
    fifo_ = dir_ + "/fifo";
    regular_ = dir_ + "/regular";
    ASSERT_EQ(mkfifo(fifo_.c_str(), 0600), 0);
    const int fd = open(regular_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    close(fd);
  }
  void TearDown() override {
    unlink(fifo_.c_str());
    unlink(regular_.c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_, fifo_, regular_;
};

TEST_F(FileOpenerTest, HandsOutDevicesAndFifosItWasStartedWith) {
  auto opener = FileOpener::Start({fifo_, regular_, "/dev/null", dir_ + "/missing"});
  ASSERT_TRUE(opener.ok()) << opener.status().message();
  for (const std::string& path : {fifo_, std::string("/dev/null")}) {
    Result<int> fd = (*opener)->Open(path);
    ASSERT_TRUE(fd.ok()) << fd.status().message();
    struct stat st {};
    ASSERT_EQ(fstat(*fd, &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode));
    EXPECT_EQ(fcntl(*fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    EXPECT_EQ(fcntl(*fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    close(*fd);
  }
  Result<int> regular = (*opener)->Open(regular_);
  ASSERT_FALSE(regular.ok());
  EXPECT_EQ(regular.status().message(), regular_ + ": not a character device or FIFO");
  Result<int> other = (*opener)->Open("/dev/zero");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().message(),
            "/dev/zero: not a path rngmux was started with (restart rngmux to read a new one)");
  Result<int> missing = (*opener)->Open(dir_ + "/missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), dir_ + "/missing: open: No such file or directory");
}

TEST_F(FileOpenerTest, RefusesATruncatedRequest) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
  std::thread helper([&] { ServeFileOpenRequests(fds[1], {fifo_}); });
  // The configured path with more after it than a request holds: cut short by the
  // helper's buffer, it must not be read as the path it starts with.
  std::string request = fifo_;
  request.resize(PATH_MAX + 100, '/');
  ASSERT_EQ(send(fds[0], request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  char reply[64];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{reply, sizeof reply};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = recvmsg(fds[0], &msg, MSG_CMSG_CLOEXEC);
  EXPECT_EQ(n, 8);
  EXPECT_EQ(msg.msg_controllen, 0u);  // no descriptor came with it
  close(fds[0]);                      // the helper reads end of file and returns
  helper.join();
  close(fds[1]);
}

TEST(PrivilegesTest, ResolvesUsersAndGroups) {
  Result<TargetIdentity> nobody = ResolveIdentity("nobody", "--user", "", "--group");
  ASSERT_TRUE(nobody.ok()) << nobody.status().message();
  EXPECT_EQ(nobody->uid, 65534u);
  EXPECT_EQ(nobody->group, "nogroup");
  Result<TargetIdentity> numeric = ResolveIdentity("65534", "--user", "0", "--group");
  ASSERT_TRUE(numeric.ok()) << numeric.status().message();
  EXPECT_EQ(numeric->uid, 65534u);
  EXPECT_EQ(numeric->gid, 0u);
  Result<TargetIdentity> missing = ResolveIdentity("no-such-user-here", "--user", "", "--group");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "--user \"no-such-user-here\": no such user");
  Result<TargetIdentity> no_group =
      ResolveIdentity("nobody", "--user", "no-such-group-here", "--group");
  ASSERT_FALSE(no_group.ok());
  EXPECT_EQ(no_group.status().message(), "--group \"no-such-group-here\": no such group");
}

TEST(PrivilegesTest, DropRefusesASecondThread) {
  std::thread sleeper([] { usleep(200 * 1000); });
  const Status status = DropPrivileges(TargetIdentity{65534, 65534, "nobody", "nogroup"});
  sleeper.join();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("threads"), std::string::npos) << status.message();
}

TEST(PrivilegesTest, DropTakesEverythingInAChild) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  // A sanitizer runtime may start a thread of its own in a child forked from this
  // (threaded) test process; the daemon forks nothing before its drop.
  constexpr int kNotSingleThreaded = 20;
  const int status = InChild([] {
    Result<int> threads = CountThreads();
    if (!threads.ok() || *threads != 1) return kNotSingleThreaded;
    const Status dropped = DropPrivileges(TargetIdentity{65534, 65534, "nobody", "nogroup"});
    if (!dropped.ok()) {
      std::fprintf(stderr, "%s\n", dropped.message().c_str());
      return 10;
    }
    if (getuid() != 65534 || getgid() != 65534 || getgroups(0, nullptr) != 0) return 11;
    return setuid(0) == 0 ? 12 : 0;
  });
  if (WIFEXITED(status) && WEXITSTATUS(status) == kNotSingleThreaded) {
    GTEST_SKIP() << "the forked child has more than one thread (a sanitizer runtime's)";
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace rngmux
