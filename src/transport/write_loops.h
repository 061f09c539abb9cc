#pragma once

#include <asio/error_code.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

namespace rngmux {

// Threads that write clients' replies to their sockets, each running an event loop
// of its own. The serving loop keeps everything else (the pool, the fair share, the
// sessions' requests and replies); it hands a session's reply to one of these loops
// and hears back when it has left. The copy into the kernel (for loopback TCP, the
// receiver's whole protocol stack too) is the largest part of a streaming client's
// cost, so with these loops it runs beside the serving loop on another core.
//
// Threads block every asynchronous signal (the serving loop takes them all).
// Stop() lets each loop end once nothing is left on it; the destructor stops and
// joins. Next() and size() are safe from any thread.
class WriteLoops {
 public:
  // Throws std::system_error if a thread cannot be started (none is left running).
  // A handler that runs out of memory is counted in `handler_failures` and survived;
  // the bytes sent on these loops are counted in `sent_bytes`. Both must outlive this.
  WriteLoops(std::size_t threads, std::atomic<std::uint64_t>& handler_failures,
             std::atomic<std::uint64_t>& sent_bytes);
  ~WriteLoops();
  WriteLoops(const WriteLoops&) = delete;
  WriteLoops& operator=(const WriteLoops&) = delete;

  // The loop for the next new client (round robin).
  asio::io_context& Next();
  std::size_t size() const { return loops_.size(); }
  // Bytes sent on these loops so far (a write that would block finishes elsewhere).
  void AddSent(std::size_t bytes) { sent_.fetch_add(bytes, std::memory_order_relaxed); }
  std::uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }
  // Lets the loops end once their queued work is done and joins them; idempotent.
  // Call once the serving loop has run out of work: a write away holds work on it, so
  // its answer is then back. The destructor does not wait: it stops the loops where
  // they are, destroying what is queued.
  void Stop();

 private:
  struct Loop {
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::thread thread;
  };
  std::vector<std::unique_ptr<Loop>> loops_;
  std::atomic<std::size_t> next_{0};
  std::atomic<std::uint64_t>& sent_;
};

// A dup() of a client's socket for a write loop to send on. The serving loop closes
// its own descriptor whenever the client goes; this one stays open until the last
// write holding it has returned, so a number reused meanwhile is never written to.
// It is never registered with a reactor: a client's requests wake the serving loop
// only, and a write that would block goes back to the serving loop's own socket.
class WriteDescriptor {
 public:
  // Null if the descriptor cannot be duplicated (the caller writes on its own loop).
  static std::shared_ptr<WriteDescriptor> Dup(int fd);
  ~WriteDescriptor();
  WriteDescriptor(const WriteDescriptor&) = delete;
  WriteDescriptor& operator=(const WriteDescriptor&) = delete;

  // Sends what the socket takes without blocking and returns how much that was; `ec`
  // is set on any error but "would block". Safe from any thread.
  std::size_t SendSome(std::span<const std::uint8_t> bytes, asio::error_code& ec) const;

 private:
  explicit WriteDescriptor(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace rngmux
