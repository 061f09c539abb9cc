#include "transport/session.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <asio/error.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/ssl/error.hpp>
#include <asio/write.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <new>
#include <system_error>
#include <thread>
#include <utility>

#include "common/log.h"
#include "transport/write_loops.h"

namespace rngmux {
namespace {

// Reads per readiness event before yielding to other sessions; the rest of the
// input is picked up by a posted continuation, so one flooding client cannot
// monopolise the event loop.
constexpr int kReadsPerTurn = 8;

// Client input is never secret; one buffer serves every session on the loop.
std::span<std::uint8_t> SharedReadBuffer() {
  thread_local std::array<std::uint8_t, 16 * 1024> buffer;
  return buffer;
}

// Posts a write loop's answer to the serving loop. Nothing else would ever bring the
// session its answer, so a post that runs out of memory is tried again (bounded).
template <typename Executor, typename Answer>
void PostAnswer(const Executor& home, const Answer& answer) {
  constexpr int kAttempts = 1000;
  for (int attempt = 1;; ++attempt) {
    try {
      asio::post(home, answer);
      return;
    } catch (const std::bad_alloc&) {
      if (attempt == kAttempts) throw;
      if (attempt == 1) LOG_ERROR("out of memory posting a write's answer; trying again");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

}  // namespace

Session::Session(Transport transport, SessionContext& context, SessionOptions options,
                 std::string peer)
    : EgdSession(context, options, std::move(peer), kOutputHighWater,
                 transport.lowest().get_executor()),
      transport_(std::move(transport)),
      socket_(transport_.lowest()),
      in_flight_(OutputCapacity(kOutputHighWater)) {
  if (transport_.tls) tls_input_ = std::make_unique<std::array<std::uint8_t, 16 * 1024>>();
}

void Session::Start(std::function<void()> on_closed) {
  Begin(std::move(on_closed));
  asio::error_code ec;
  socket_.non_blocking(true, ec);
  if (ec) {
    Close("cannot make socket non-blocking: " + ec.message(), true);
    return;
  }
  OpenWriteDescriptor();
  if (options().lead_bytes > 0 && !options().raw) {
    const auto local = socket_.local_endpoint(ec);
    quick_ack_ =
        !ec && (local.protocol().family() == AF_INET || local.protocol().family() == AF_INET6);
  }
  StartDemand();
  WaitReadable();
}

void Session::OpenWriteDescriptor() {
  if (context().write_loops == nullptr || transport_.tls) return;
  // Without one it writes on the serving loop, as without write loops.
  write_descriptor_ = WriteDescriptor::Dup(socket_.native_handle());
  if (write_descriptor_) {
    write_loop_ = &context().write_loops->Next();
    return;
  }
  const int error = errno;
  LogClientEvent(context(), identity(), "write-thread", LogLevel::kWarning,
                 "client " + peer() + ": no second descriptor for a write thread (" +
                     std::system_category().message(error) +
                     "): its replies are written on the event loop");
}

void Session::CloseTransport() {
  if (!writing_) in_flight_.Clear();  // Otherwise the aborted write's handler wipes it.
  asio::error_code ignored;
  // Shutting the connection down fails a write in progress on the write loop too.
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.close(ignored);
  write_descriptor_.reset();  // closed once a write holding it has returned
}

void Session::WaitReadable() {
  if (closed() || reading_) return;
  if (transport_.tls) return ReadTls();
  reading_ = true;
  // A small read done by the reactor. Waiting for readiness with async_wait and
  // reading ourselves made the reactor re-arm the descriptor (an epoll_ctl) on every
  // wait, that is on every guest request; a read operation needs no re-arm (the
  // epoll registration is edge-triggered and kept). A full buffer means more may be
  // waiting: the rest is read through the loop's shared buffer.
  socket_.async_read_some(
      asio::buffer(small_input_),
      [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
        self->reading_ = false;
        if (self->closed()) return;
        if (!self->OnRead(ec, std::span<const std::uint8_t>(self->small_input_.data(), n))) {
          return;
        }
        if (n == self->small_input_.size()) {
          self->OnReadable();
        } else {
          self->WaitReadable();
        }
      });
}

void Session::OnReadable() {
  auto buffer = SharedReadBuffer();
  for (int i = 0; i < kReadsPerTurn; ++i) {
    asio::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(buffer.data(), buffer.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      WaitReadable();
      return;
    }
    if (!OnRead(ec, buffer.first(n))) return;
  }
  // Still more to read: yield to other handlers, then continue.
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    if (!self->closed()) self->OnReadable();
  });
}

bool Session::OnRead(const asio::error_code& ec, std::span<const std::uint8_t> input) {
  if (ec == asio::error::eof) {
    InputClosed();
    return false;
  }
  if (ec) {
    Close("read: " + ec.message());
    return false;
  }
  AckNow();
  return OnInput(input);
}

void Session::AckNow() {
  if (!quick_ack_) return;
  // The lead is topped up only every few requests, so no reply carries the ACK that the
  // peer's next small write waits for under Nagle (QEMU's socket chardev does not set
  // TCP_NODELAY): 40 ms of delayed ACK per request otherwise. Not sticky in the kernel,
  // hence after every read.
  const int one = 1;
  setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

void Session::ReadTls() {
  // TLS may hold decrypted bytes the socket no longer signals: read through it.
  reading_ = true;
  transport_.tls->async_read_some(
      asio::buffer(*tls_input_),
      [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
        self->reading_ = false;
        if (self->closed()) return;
        if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
          self->InputClosed();
          return;
        }
        if (ec) {
          self->Close("read: " +
                      DescribeTlsFailure(self->transport_.tls->native_handle(), ec.message()));
          return;
        }
        self->AckNow();
        if (self->OnInput(std::span<const std::uint8_t>(self->tls_input_->data(), n))) {
          self->ReadTls();
        }
      });
}

bool Session::OnInput(std::span<const std::uint8_t> input) {
  if (options().raw) return true;  // Raw consumers send nothing meaningful.
  while (!input.empty()) {
    const EgdParser::Step step = parser_.Next(input);
    input = input.subspan(step.consumed);
    if (step.outcome == EgdParser::Outcome::kBadCommand) {
      context().counters.bad_requests++;
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", step.bad_byte);
      // 0x16 opens a TLS ClientHello: say so, QEMU will not.
      Close(std::string("unknown EGD command ") + hex +
                (step.bad_byte == 0x16 && !transport_.tls
                     ? " (a TLS handshake: this endpoint is plain TCP; give it tls-dir= or "
                       "connect without TLS)"
                     : ""),
            true);
      return false;
    }
    if (step.outcome == EgdParser::Outcome::kRequest && !Enqueue(step.request)) return false;
  }
  ProcessQueue();
  return !closed();
}

void Session::Flush() {
  if (closed() || writing_ || pending_.empty()) return;
  in_flight_.Swap(pending_);
  writing_ = true;
  const auto bytes = asio::buffer(in_flight_.data(), in_flight_.size());
  if (write_descriptor_) {
    // Held until the answer is back on this loop, so the buffer outlives the write
    // and the session is destroyed here, never on the write loop.
    write_keepalive_ = shared_from_this();
    // Tracked: the serving loop does not run out of work while a write is away.
    auto home = asio::prefer(socket_.get_executor(), asio::execution::outstanding_work.tracked);
    try {
      asio::post(*write_loop_,
                 [this, loops = context().write_loops, descriptor = write_descriptor_,
                  home = std::move(home),
                  bytes = std::span<const std::uint8_t>(in_flight_.data(), in_flight_.size())] {
                   asio::error_code ec;
                   const std::size_t sent = descriptor->SendSome(bytes, ec);
                   loops->AddSent(sent);
                   PostAnswer(home, [this, ec, sent] { OnSentOnWriteLoop(ec, sent); });
                 });
    } catch (...) {
      // Out of memory: the reply goes back to pending_ and nothing is away.
      write_keepalive_.reset();
      writing_ = false;
      in_flight_.Swap(pending_);
      throw;
    }
  } else if (transport_.tls) {
    asio::async_write(*transport_.tls, bytes,
                      [self = shared_from_this()](const asio::error_code& ec, std::size_t sent) {
                        self->OnWritten(ec, sent);
                      });
  } else {
    asio::async_write(socket_, bytes,
                      [self = shared_from_this()](const asio::error_code& ec, std::size_t sent) {
                        self->OnWritten(ec, sent);
                      });
  }
  UpdateDemand();  // pending_ has room again: let the pump fill it during the write.
}

void Session::OnSentOnWriteLoop(const asio::error_code& ec, std::size_t sent) {
  if (ec || closed() || sent == in_flight_.size()) {
    OnWritten(ec, sent);
    return;
  }
  // The client's socket is full: the rest waits for room on this loop's own socket.
  asio::async_write(
      socket_, asio::buffer(in_flight_.data() + sent, in_flight_.size() - sent),
      [self = shared_from_this(), sent](const asio::error_code& rest_ec, std::size_t rest) {
        self->OnWritten(rest_ec, sent + rest);
      });
}

void Session::OnWritten(const asio::error_code& ec, std::size_t sent) {
  // Released when this returns: the last reference may be this one.
  const std::shared_ptr<Session> keepalive = std::move(write_keepalive_);
  writing_ = false;
  if (ec || closed()) context().counters.wiped_undelivered_bytes += in_flight_.size() - sent;
  in_flight_.Clear();
  if (closed()) return;
  // Going idle: hold no buffer memory (thousands of idle guests).
  if (pending_.empty()) {
    in_flight_.Release();
    pending_.Release();
  }
  if (ec) {
    Close("write: " + ec.message());
    return;
  }
  ProcessQueue();
}

}  // namespace rngmux
