#include "common/interrupt.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <stdexcept>

#include "common/status.h"

namespace rngmux {

Interrupt::Interrupt() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ < 0) throw std::runtime_error(Status::FromErrno("eventfd", errno).message());
}

Interrupt::~Interrupt() { close(fd_); }

void Interrupt::Trigger() {
  triggered_.store(true, std::memory_order_release);
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(fd_, &one, sizeof one);
}

bool Interrupt::triggered() const { return triggered_.load(std::memory_order_acquire); }

bool Interrupt::SleepFor(std::chrono::nanoseconds duration) const {
  const auto deadline = std::chrono::steady_clock::now() + duration;
  for (;;) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return !triggered();
    pollfd pfd{fd_, POLLIN, 0};
    const int rc = poll(&pfd, 1, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
    if (rc > 0) return false;
    if (rc < 0 && errno != EINTR) return !triggered();
  }
}

}  // namespace rngmux
