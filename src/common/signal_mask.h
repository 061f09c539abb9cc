#pragma once

#include <signal.h>

namespace rngmux {

// While alive, the calling thread blocks every asynchronous signal (SIGHUP, SIGINT,
// SIGTERM, SIGUSR1, SIGCHLD, ...); synchronous ones (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
// SIGTRAP, SIGABRT, SIGSYS) stay deliverable. A thread started meanwhile inherits the
// mask, so a worker made under it never takes a signal meant for the event loop: the
// loop thread is then the only one the kernel can pick. A SIGUSR1 or SIGHUP then never
// interrupts a source's device read (EINTR), and under ThreadSanitizer, which defers a
// signal that reaches a thread outside a blocking call until that thread next enters
// the C library, it is not left waiting on a busy worker. The destructor restores the
// caller's previous mask.
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
