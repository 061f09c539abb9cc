#pragma once

#include <signal.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <deque>
#include <functional>
#include <initializer_list>
#include <string>

namespace rngmux {

// The daemon's control signals (SIGHUP, SIGINT, SIGTERM, SIGUSR1), read from a
// signalfd on the event loop instead of caught by a handler.
//
// The constructor blocks the signals in the calling thread; every thread started by it
// afterwards inherits the mask, so the kernel keeps each signal pending until the loop
// reads it, whenever it comes: before the loop runs, while it is busy, or between two
// waits. A handler would depend on which thread the kernel picks and on that thread
// running it; under ThreadSanitizer, which defers a signal to the thread's next
// intercepted call, a SIGTERM right after start-up was seen to be lost that way.
//
// So make it on the thread that starts every other (the daemon's main thread), before
// it starts any: a thread started earlier, with the signals unblocked, would take a
// SIGTERM's default action and end the process at once.
class SignalReader {
 public:
  SignalReader(asio::io_context& io, std::initializer_list<int> signals);
  // Discards the signals that arrived and were not read. They stay blocked in the
  // thread that made it (and in every thread it started since).
  ~SignalReader();
  SignalReader(const SignalReader&) = delete;
  SignalReader& operator=(const SignalReader&) = delete;

  // Empty once the signalfd is open; else why it is not ("signalfd: ...").
  const std::string& error() const { return error_; }

  // Calls `handler(signal)` on the loop for the next signal, once; call again for the
  // one after. Signals of one kind that arrive before they are read count once, as
  // the kernel keeps them.
  void AsyncWait(std::function<void(int)> handler);
  // No further handler runs.
  void Cancel();

 private:
  void Arm();
  void ReadAvailable();
  void Deliver();

  asio::io_context& io_;
  sigset_t set_;
  asio::posix::stream_descriptor fd_;
  std::string error_;
  std::deque<int> read_;              // read from the signalfd, not yet handed to a handler
  std::function<void(int)> handler_;  // none: no wait asked for, or cancelled
  bool waiting_ = false;              // an async_wait on the descriptor is in progress
};

}  // namespace rngmux
