#include "vhost/vhost_user_connection.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <asio/post.hpp>
#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace rngmux {
namespace {

// Messages per readiness event before yielding to other clients.
constexpr int kMessagesPerTurn = 32;

}  // namespace

VhostUserConnection::VhostUserConnection(Socket socket, SessionContext& context, std::string peer)
    : socket_(std::move(socket)),
      context_(context),
      peer_(std::move(peer)),
      device_(mapper_),
      kick_(socket_.get_executor()) {}

VhostUserConnection::~VhostUserConnection() { context_.fair_share.Remove(this); }

void VhostUserConnection::Start(std::function<void()> on_closed) {
  on_closed_ = std::move(on_closed);
  context_.counters.clients++;
  context_.counters.connections_total++;
  asio::error_code ec;
  socket_.non_blocking(true, ec);
  if (ec) {
    Close("cannot make socket non-blocking: " + ec.message(), true);
    return;
  }
  WaitReadable();
}

void VhostUserConnection::Close(std::string_view reason, bool warn) {
  if (closed_) return;
  closed_ = true;
  context_.fair_share.Remove(this);
  if (warn) {
    LOG_WARNING("vhost-user device ", peer_, ": closing: ", reason);
  } else {
    LOG_INFO("vhost-user device ", peer_, ": closed: ", reason);
  }
  asio::error_code ignored;
  kick_.close(ignored);
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.close(ignored);
  fds_.clear();
  context_.counters.clients--;
  if (on_closed_) asio::post(socket_.get_executor(), std::move(on_closed_));
}

void VhostUserConnection::BadInput(std::string_view reason, bool ring) {
  if (ring) {
    context_.counters.vhost_user_bad_rings++;
  } else {
    context_.counters.vhost_user_bad_messages++;
  }
  Close(std::string(ring ? "bad ring: " : "bad message: ") + std::string(reason), true);
}

void VhostUserConnection::WaitReadable() {
  if (closed_ || reading_) return;
  reading_ = true;
  socket_.async_wait(asio::socket_base::wait_read,
                     [self = shared_from_this()](const asio::error_code& ec) {
                       self->reading_ = false;
                       if (self->closed_) return;
                       if (ec) return self->Close("wait: " + ec.message());
                       self->OnReadable();
                     });
}

void VhostUserConnection::OnReadable() {
  for (int i = 0; i < kMessagesPerTurn; ++i) {
    if (!ReadSome()) return;
    if (reading_) return;  // would block: waiting again
  }
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    if (!self->closed_) self->OnReadable();
  });
}

// Reads what the parser wants (never past the current header or payload), with any
// descriptors that came along. Returns false if the connection closed.
bool VhostUserConnection::ReadSome() {
  std::array<std::uint8_t, kMaxVhostUserPayloadBytes> buffer;
  const std::size_t want = parser_.wanted();
  iovec iov{buffer.data(), want};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxVhostUserFds)> control;
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  const ssize_t n = recvmsg(socket_.native_handle(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      WaitReadable();
      return true;
    }
    Close(std::string("recvmsg: ") + std::strerror(errno));
    return false;
  }
  bool too_many = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t k = 0; k < count; ++k) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
      fds_.emplace_back(fd);  // owned (and closed) from here on, whatever happens
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) || fds_.size() > kMaxVhostUserFds) too_many = true;
  if (too_many) {
    BadInput("more file descriptors than any message carries", false);
    return false;
  }
  if (n == 0) {
    Close(parser_.idle() ? "peer closed the connection" : "peer closed mid-message");
    return false;
  }
  const VhostUserParser::Step step = parser_.Next(
      std::span<const std::uint8_t>(buffer.data(), static_cast<std::size_t>(n)), fds_.size());
  if (step.outcome == VhostUserParser::Outcome::kBad) {
    BadInput(step.error, false);
    return false;
  }
  if (step.outcome == VhostUserParser::Outcome::kNeedMore) return true;
  std::vector<UniqueFd> fds = std::move(fds_);
  fds_.clear();
  LOG_DEBUG("vhost-user device ", peer_, ": ", VhostUserRequestName(step.message.request),
            step.message.need_reply() ? " (need_reply)" : "");
  VhostUserDevice::Outcome outcome = device_.Handle(step.message, std::move(fds));
  if (!outcome.note.empty()) LOG_INFO("vhost-user device ", peer_, ": ", outcome.note);
  if (outcome.reply && !Send(outcome.reply->view())) return false;
  if (!outcome.status.ok()) {
    BadInput(outcome.status.message(), false);
    return false;
  }
  const auto request = static_cast<VhostUserRequest>(step.message.request);
  if (request == VhostUserRequest::kSetVringKick || request == VhostUserRequest::kGetVringBase ||
      request == VhostUserRequest::kResetOwner || request == VhostUserRequest::kResetDevice ||
      device_.kick_fd() != kick_source_) {
    WatchKick();
  }
  SyncRing();
  return !closed_;
}

bool VhostUserConnection::Send(std::span<const std::uint8_t> bytes) {
  // Replies are 20 bytes and QEMU waits for each: a full socket buffer means a
  // peer that does not read, which is as broken as one that sends garbage.
  const ssize_t n =
      send(socket_.native_handle(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n != static_cast<ssize_t>(bytes.size())) {
    Close(std::string("reply not sent: ") + (n < 0 ? std::strerror(errno) : "short write"));
    return false;
  }
  return true;
}

void VhostUserConnection::WatchKick() {
  asio::error_code ignored;
  kick_.close(ignored);  // cancels the pending wait; its handler sees the old generation
  ++kick_generation_;
  kick_source_ = device_.kick_fd();
  if (kick_source_ < 0) return;
  const int dup = fcntl(kick_source_, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    Close(std::string("dup of the kick fd: ") + std::strerror(errno), true);
    return;
  }
  kick_.assign(dup, ignored);
  const unsigned generation = kick_generation_;
  kick_.async_wait(asio::posix::stream_descriptor::wait_read,
                   [self = shared_from_this(), generation](const asio::error_code& ec) {
                     if (ec || self->closed_ || generation != self->kick_generation_) return;
                     self->OnKick();
                   });
}

void VhostUserConnection::OnKick() {
  std::uint64_t count = 0;
  // An eventfd: one read resets it. EAGAIN only if someone else read it first.
  if (read(kick_.native_handle(), &count, sizeof count) < 0 && errno != EAGAIN) {
    return Close(std::string("kick fd read: ") + std::strerror(errno), true);
  }
  const unsigned generation = kick_generation_;
  kick_.async_wait(asio::posix::stream_descriptor::wait_read,
                   [self = shared_from_this(), generation](const asio::error_code& ec) {
                     if (ec || self->closed_ || generation != self->kick_generation_) return;
                     self->OnKick();
                   });
  SyncRing();
}

void VhostUserConnection::SyncRing() { RefillAndSignal(false); }

void VhostUserConnection::RefillAndSignal(bool signal) {
  if (closed_) return;
  const Status status = device_.TakeBuffer(&signal);
  if (signal) Signal();
  if (!status.ok()) return BadInput(status.message(), true);
  if (device_.Wanted() > 0) {
    context_.fair_share.Activate(this);
    context_.request_pump();
  }
}

void VhostUserConnection::Signal() {
  const int fd = device_.call_fd();
  if (fd < 0) return;
  const std::uint64_t one = 1;
  // EAGAIN: the counter is at its maximum, the driver is signalled anyway.
  if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN) {
    LOG_DEBUG("vhost-user device ", peer_, ": call fd write: ", std::strerror(errno));
  }
}

std::size_t VhostUserConnection::Wanted() const { return closed_ ? 0 : device_.Wanted(); }

void VhostUserConnection::Deliver(std::span<const std::uint8_t> bytes) {
  if (closed_ || bytes.empty()) return;
  const bool signal = device_.Fill(bytes);
  context_.counters.served_bytes += bytes.size();
  // The bytes now live in guest memory only; the pump's copy is the caller's to wipe.
  RefillAndSignal(signal);
}

}  // namespace rngmux
