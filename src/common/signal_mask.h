#pragma once

#include <signal.h>

namespace rngmux {

// While alive, the calling thread blocks every asynchronous signal (SIGHUP, SIGINT,
// SIGTERM, SIGUSR1, SIGCHLD, ...); synchronous ones (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
// SIGTRAP, SIGABRT, SIGSYS) stay deliverable. A thread started meanwhile inherits the
// mask, so a worker never takes an asynchronous signal: a SIGUSR2 or a stray SIGALRM
// never interrupts a source's device read (EINTR). The control signals are blocked in
// every thread anyway, and read from a signalfd by the event loop (SignalReader). The
// destructor restores the caller's previous mask.
class ScopedAsyncSignalBlock {
 public:
  ScopedAsyncSignalBlock();
  ~ScopedAsyncSignalBlock();
  ScopedAsyncSignalBlock(const ScopedAsyncSignalBlock&) = delete;
  ScopedAsyncSignalBlock& operator=(const ScopedAsyncSignalBlock&) = delete;

 private:
  sigset_t previous_;
};

}  // namespace rngmux
