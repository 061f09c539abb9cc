#pragma once

#include <atomic>
#include <chrono>

namespace rngmux {

// A one-shot, thread-safe "stop now" signal for threads that block in the kernel
// (a source reading a tty, a back-off sleep). Backed by an eventfd so that it can
// sit in a poll() set beside the device's descriptor. Once triggered it stays triggered.
// triggered() is one atomic load (a source thread asks once per block), no system call.
class Interrupt {
 public:
  Interrupt();
  ~Interrupt();
  Interrupt(const Interrupt&) = delete;
  Interrupt& operator=(const Interrupt&) = delete;

  void Trigger();
  bool triggered() const;
  // The descriptor becomes readable once Trigger() was called. Never read from it.
  int fd() const { return fd_; }
  // Sleeps for `duration` or until triggered. Returns false if triggered.
  bool SleepFor(std::chrono::nanoseconds duration) const;

 private:
  int fd_;
  std::atomic<bool> triggered_{false};
};

}  // namespace rngmux
