#include "transport/write_loops.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/error.hpp>
#include <cerrno>

#include "common/event_loop.h"
#include "common/signal_mask.h"

namespace rngmux {

WriteLoops::WriteLoops(std::size_t threads, std::atomic<std::uint64_t>& handler_failures,
                       std::atomic<std::uint64_t>& sent_bytes)
    : sent_(sent_bytes) {
  const ScopedAsyncSignalBlock signals_to_the_serving_loop;
  try {
    for (std::size_t i = 0; i < threads; ++i) {
      auto loop = std::make_unique<Loop>();
      Loop* raw = loop.get();
      loops_.push_back(std::move(loop));
      raw->thread = std::thread(
          [raw, &handler_failures] { RunSurvivingHandlerFailures(raw->io, handler_failures); });
    }
  } catch (...) {
    // No thread may outlive this (a joinable std::thread destroyed terminates).
    Stop();
    throw;
  }
}

WriteLoops::~WriteLoops() {
  for (auto& loop : loops_) {
    loop->work.reset();
    loop->io.stop();
  }
  Stop();
}

asio::io_context& WriteLoops::Next() {
  return loops_[next_.fetch_add(1, std::memory_order_relaxed) % loops_.size()]->io;
}

void WriteLoops::Stop() {
  for (auto& loop : loops_) loop->work.reset();
  for (auto& loop : loops_) {
    if (loop->thread.joinable()) loop->thread.join();
  }
}

std::shared_ptr<WriteDescriptor> WriteDescriptor::Dup(int fd) {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return nullptr;
  return std::shared_ptr<WriteDescriptor>(new WriteDescriptor(copy));
}

WriteDescriptor::~WriteDescriptor() { ::close(fd_); }

std::size_t WriteDescriptor::SendSome(std::span<const std::uint8_t> bytes,
                                      asio::error_code& ec) const {
  ec.clear();
  std::size_t sent = 0;
  // Bounded: every pass sends something or returns.
  while (sent < bytes.size()) {
    const ssize_t n =
        ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      ec = n < 0 ? asio::error_code(errno, asio::system_category()) : asio::error::broken_pipe;
      break;
    }
  }
  return sent;
}

}  // namespace rngmux
