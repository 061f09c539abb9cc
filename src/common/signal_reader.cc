#include "common/signal_reader.h"

#include <errno.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <asio/error.hpp>
#include <asio/post.hpp>
#include <cstring>
#include <utility>

#include "common/log.h"

namespace rngmux {

SignalReader::SignalReader(asio::io_context& io, std::initializer_list<int> signals)
    : io_(io), fd_(io) {
  sigemptyset(&set_);
  for (int sig : signals) sigaddset(&set_, sig);
  if (const int err = pthread_sigmask(SIG_BLOCK, &set_, nullptr); err != 0) {
    error_ = std::string("blocking the control signals: ") + std::strerror(err);
    return;
  }
  const int fd = signalfd(-1, &set_, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) {
    error_ = std::string("signalfd: ") + std::strerror(errno);
    return;
  }
  asio::error_code ec;
  fd_.assign(fd, ec);
  if (ec) {
    close(fd);
    error_ = "signalfd: " + ec.message();
  }
}

SignalReader::~SignalReader() {
  if (!fd_.is_open()) return;
  // What came and was not read is dropped: the loop that would act on it is gone.
  // The signals stay blocked: one that comes from now on waits, harmlessly, instead
  // of taking its default action (ending the process) while it shuts down.
  signalfd_siginfo info[8];
  for (int i = 0; i < 16 && read(fd_.native_handle(), info, sizeof(info)) > 0; ++i) {
  }
  asio::error_code ignored;
  fd_.close(ignored);
}

void SignalReader::AsyncWait(std::function<void(int)> handler) {
  handler_ = std::move(handler);
  if (!read_.empty()) {
    asio::post(io_, [this] { Deliver(); });
    return;
  }
  Arm();
}

void SignalReader::Arm() {
  // A wait cancelled but not yet completed is still "waiting": its completion sees
  // the new handler and arms again (Deliver).
  if (waiting_ || !fd_.is_open()) return;
  waiting_ = true;
  fd_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const asio::error_code& ec) {
    waiting_ = false;
    if (!handler_) return;  // cancelled
    if (ec && ec != asio::error::operation_aborted) {
      LOG_ERROR("reading signals: ", ec.message(), "; SIGTERM, SIGHUP and SIGUSR1 go unheard");
      return;
    }
    if (!ec) ReadAvailable();
    Deliver();
  });
}

void SignalReader::Cancel() {
  handler_ = nullptr;
  asio::error_code ignored;
  fd_.cancel(ignored);
}

void SignalReader::ReadAvailable() {
  // The kernel keeps one of each kind pending: a few reads empty it (then EAGAIN).
  signalfd_siginfo info[8];
  for (int i = 0; i < 16; ++i) {
    const ssize_t n = read(fd_.native_handle(), info, sizeof(info));
    if (n <= 0) break;  // a signalfd read is never partial
    for (ssize_t k = 0; k < n / static_cast<ssize_t>(sizeof(info[0])); ++k) {
      read_.push_back(static_cast<int>(info[k].ssi_signo));
    }
  }
}

void SignalReader::Deliver() {
  if (!handler_) return;  // cancelled
  if (read_.empty()) {
    // Woken without a signal to read (another reader took it), or a cancelled wait
    // ended after a new one was asked for: wait again.
    Arm();
    return;
  }
  const int sig = read_.front();
  read_.pop_front();
  std::function<void(int)> handler = std::move(handler_);
  handler_ = nullptr;
  handler(sig);
}

}  // namespace rngmux
