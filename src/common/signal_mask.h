#pragma once

#include <signal.h>

namespace rngmux {

// While alive, the calling thread blocks every asynchronous signal (SIGHUP, SIGINT,
// SIGTERM, SIGUSR1, SIGCHLD, ...); synchronous ones (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
// SIGTRAP, SIGABRT, SIGSYS) stay deliverable. A thread started meanwhile inherits the
// mask, so a worker made under it never takes a signal meant for the event loop: the
// loop thread is then the only one the kernel can pick, and a SIGUSR1 or SIGHUP is
// handled at once instead of interrupting a source's device read or waiting for a
// worker that is busy. The destructor restores the caller's previous mask.
class ScopedAsyncSignalBlock {
 public:
  ScopedAsyncSignalBlock();
  ~ScopedAsyncSignalBlock();
  ScopedAsyncSignalBlock(const ScopedAsyncSignalBlock&) = delete;
  ScopedAsyncSignalBlock& operator=(const ScopedAsyncSignalBlock&) = delete;

  // The set blocked (for tests and for whoever starts a thread by other means).
  static sigset_t AsyncSignals();

 private:
  sigset_t previous_;
};

}  // namespace rngmux
