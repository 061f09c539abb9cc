#include "common/signal_reader.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <thread>
#include <vector>

namespace rngmux {
namespace {

using std::chrono::milliseconds;

bool Blocked(int sig) {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, sig) == 1;
}

bool Pending(int sig) {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, sig) == 1;
}

// The case a handler lost under ThreadSanitizer: the signal comes before the loop runs
// (the daemon was just started). The kernel keeps it; the loop reads it when it runs.
TEST(SignalReaderTest, ASignalSentBeforeTheLoopRunsIsHandledWhenItRuns) {
  asio::io_context io;
  std::vector<int> got;
  {
    SignalReader reader(io, {SIGUSR1, SIGHUP});
    ASSERT_EQ(reader.error(), "");
    EXPECT_TRUE(Blocked(SIGUSR1));
    ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
    // A thread started now inherits the mask and so never takes it.
    std::thread([] { EXPECT_TRUE(Blocked(SIGUSR1)); }).join();
    EXPECT_TRUE(Pending(SIGUSR1));
    reader.AsyncWait([&](int sig) { got.push_back(sig); });
    io.run_for(milliseconds(2000));
  }
  EXPECT_EQ(got, std::vector<int>{SIGUSR1});
  EXPECT_FALSE(Pending(SIGUSR1));
}

// A wait asked for after Cancel(), before the cancelled one has ended, still waits.
TEST(SignalReaderTest, AWaitAskedForRightAfterCancelIsNotLost) {
  asio::io_context io;
  std::vector<int> first;
  std::vector<int> second;
  SignalReader reader(io, {SIGUSR1});
  ASSERT_EQ(reader.error(), "");
  reader.AsyncWait([&](int sig) { first.push_back(sig); });
  io.poll();
  reader.Cancel();
  reader.AsyncWait([&](int sig) { second.push_back(sig); });
  ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
  for (int i = 0; i < 200 && second.empty(); ++i) io.run_for(milliseconds(10));
  EXPECT_TRUE(first.empty());
  EXPECT_EQ(second, std::vector<int>{SIGUSR1});
}

// Two kinds at once: each is handed over once, one per wait.
TEST(SignalReaderTest, EachSignalIsHandedToOneWaitInTurn) {
  asio::io_context io;
  std::vector<int> got;
  SignalReader reader(io, {SIGHUP, SIGTERM, SIGUSR1});
  ASSERT_EQ(reader.error(), "");
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  ASSERT_EQ(kill(getpid(), SIGHUP), 0);
  std::function<void(int)> handler = [&](int sig) {
    got.push_back(sig);
    if (got.size() < 3) reader.AsyncWait(handler);
  };
  reader.AsyncWait(handler);
  // Bounded: 2 s in slices, until two signals came; then one sent while waiting.
  for (int i = 0; i < 200 && got.size() < 2; ++i) io.run_for(milliseconds(10));
  ASSERT_EQ(got.size(), 2u);
  // signalfd reads the lowest-numbered first
  EXPECT_EQ(got[0], SIGHUP);
  EXPECT_EQ(got[1], SIGTERM);
  ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
  for (int i = 0; i < 200 && got.size() < 3; ++i) io.run_for(milliseconds(10));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2], SIGUSR1);
  EXPECT_FALSE(Pending(SIGHUP) || Pending(SIGTERM) || Pending(SIGUSR1));
}

// After Cancel no handler runs; what came meanwhile is discarded at destruction, and
// the signal stays blocked (one that comes later waits instead of ending the process).
TEST(SignalReaderTest, CancelledSignalsAreDiscardedAndStayBlocked) {
  asio::io_context io;
  bool called = false;
  {
    SignalReader reader(io, {SIGUSR2});
    ASSERT_EQ(reader.error(), "");
    reader.AsyncWait([&](int) { called = true; });
    reader.Cancel();
    ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
    io.run_for(milliseconds(200));
    EXPECT_TRUE(Pending(SIGUSR2));
  }
  EXPECT_FALSE(called);
  EXPECT_TRUE(Blocked(SIGUSR2));
  EXPECT_FALSE(Pending(SIGUSR2));
}

}  // namespace
}  // namespace rngmux
