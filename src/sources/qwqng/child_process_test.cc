#include "sources/qwqng/child_process.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace rngmux {
namespace {

using std::chrono::milliseconds;

std::unique_ptr<ChildProcess> SpawnShell(const std::string& script) {
  Result<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Spawn({"/bin/sh", "-c", script, "worker"}, 3);
  EXPECT_TRUE(child.ok()) << child.status().message();
  return child.ok() ? std::move(child).value() : nullptr;
}

// Everything the child writes to its fd 3, up to end of file (bounded by 10 s).
std::string ReadAll(ChildProcess& child) {
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{child.fd(), POLLIN, 0};
    poll(&pfd, 1, 100);
    char buffer[256];
    const ssize_t n = read(child.fd(), buffer, sizeof buffer);
    if (n == 0) break;
    if (n > 0) text.append(buffer, static_cast<std::size_t>(n));
  }
  return text;
}

bool Reaped(pid_t pid) { return waitpid(pid, nullptr, WNOHANG) < 0 && errno == ECHILD; }

TEST(ChildProcessTest, PipeCarriesFdThreeOnly) {
  // stdout is redirected to stderr, so what a program prints never reaches the pipe.
  auto child = SpawnShell("echo 'this goes to stderr'; printf 'frame' >&3");
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(ReadAll(*child), "frame");
  EXPECT_EQ(child->Terminate(0, milliseconds(5000)), "exited with status 0");
  EXPECT_TRUE(Reaped(child->pid()));
}

TEST(ChildProcessTest, ReportsTheExitStatus) {
  auto child = SpawnShell("exit 4");
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(ReadAll(*child), "");
  EXPECT_EQ(child->Terminate(0, milliseconds(5000)), "exited with status 4");
  EXPECT_EQ(child->Terminate(SIGKILL, milliseconds(0)), "exited with status 4");
}

TEST(ChildProcessTest, TerminateSignalsAndReaps) {
  auto child = SpawnShell("exec sleep 30");
  ASSERT_NE(child, nullptr);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(child->Terminate(SIGTERM, milliseconds(5000)), "killed by signal 15 (Terminated)");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_TRUE(Reaped(child->pid()));
}

TEST(ChildProcessTest, KillsAChildThatIgnoresTheFirstSignal) {
  auto child = SpawnShell("trap '' TERM; printf ready >&3; while :; do sleep 1; done");
  ASSERT_NE(child, nullptr);
  char ready[5];
  pollfd pfd{child->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 10000), 1);
  ASSERT_EQ(read(child->fd(), ready, sizeof ready), 5);
  EXPECT_EQ(child->Terminate(SIGTERM, milliseconds(200)), "killed by signal 9 (Killed)");
  EXPECT_TRUE(Reaped(child->pid()));
}

TEST(ChildProcessTest, DestructorLeavesNoZombie) {
  pid_t pid = 0;
  {
    auto child = SpawnShell("exec sleep 30");
    ASSERT_NE(child, nullptr);
    pid = child->pid();
  }
  EXPECT_TRUE(Reaped(pid));
}

TEST(ChildProcessTest, MissingProgramIsNamed) {
  Result<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Spawn({"/nonexistent/rngmux-qwqng-worker"}, 3);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().message(),
            "/nonexistent/rngmux-qwqng-worker: spawn: No such file or directory");
}

TEST(ChildProcessTest, DescribeWaitStatus) {
  EXPECT_EQ(DescribeWaitStatus(3 << 8), "exited with status 3");
  EXPECT_EQ(DescribeWaitStatus(SIGABRT), "killed by signal 6 (Aborted)");
}

}  // namespace
}  // namespace rngmux
