#include "server/session.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <asio/post.hpp>
#include <asio/write.hpp>
#include <cstdio>
#include <limits>
#include <utility>

#include "common/log.h"
#include "common/secure_memory.h"

namespace rngmux {
namespace {

// Reads per readiness event before yielding to other sessions; the rest of the
// input is picked up by a posted continuation, so one flooding client cannot
// monopolise the event loop.
constexpr int kReadsPerTurn = 8;
// Largest reply to a non-random request (01 FF: length byte + 255 bytes).
constexpr std::size_t kMaxSmallReply = 1 + kMaxEgdRequestBytes;

// Client input is never secret; one buffer serves every session on the loop.
std::span<std::uint8_t> SharedReadBuffer() {
  thread_local std::array<std::uint8_t, 16 * 1024> buffer;
  return buffer;
}

}  // namespace

void OutputBuffer::Append(std::span<const std::uint8_t> bytes) {
  auto target = Extend(bytes.size());
  std::copy(bytes.begin(), bytes.end(), target.begin());
}

std::span<std::uint8_t> OutputBuffer::Extend(std::size_t n) {
  if (!data_) data_ = std::make_unique<std::uint8_t[]>(capacity_);
  std::span<std::uint8_t> target(data_.get() + size_, n);
  size_ += n;
  return target;
}

void OutputBuffer::Truncate(std::size_t new_size) {
  if (new_size >= size_) return;
  SecureWipe(data_.get() + new_size, size_ - new_size);
  size_ = new_size;
}

void OutputBuffer::Clear() {
  if (data_) SecureWipe(data_.get(), size_);
  size_ = 0;
}

void OutputBuffer::Swap(OutputBuffer& other) {
  std::swap(data_, other.data_);
  std::swap(capacity_, other.capacity_);
  std::swap(size_, other.size_);
}

Session::Session(Socket socket, SessionContext& context, SessionOptions options, std::string peer)
    : socket_(std::move(socket)), context_(context), options_(options), peer_(std::move(peer)) {}

Session::~Session() { context_.fair_share.Remove(this); }

void Session::Start(std::function<void()> on_closed) {
  on_closed_ = std::move(on_closed);
  context_.counters.clients++;
  context_.counters.connections_total++;
  asio::error_code ec;
  socket_.non_blocking(true, ec);
  if (ec) {
    Close("cannot make socket non-blocking: " + ec.message(), true);
    return;
  }
  lead_owed_ = options_.lead_bytes;
  if (options_.lead_bytes > 0 && !options_.raw) {
    const auto local = socket_.local_endpoint(ec);
    quick_ack_ =
        !ec && (local.protocol().family() == AF_INET || local.protocol().family() == AF_INET6);
  }
  UpdateDemand();
  WaitReadable();
}

void Session::Close(std::string_view reason, bool warn) {
  if (closed_) return;
  closed_ = true;
  context_.fair_share.Remove(this);
  const std::size_t undelivered = pending_.size() + (writing_ ? in_flight_.size() : 0);
  context_.counters.wiped_undelivered_bytes += undelivered;
  pending_.Clear();
  if (!writing_) in_flight_.Clear();  // Otherwise the aborted write's handler wipes it.
  if (warn) {
    LOG_WARNING("client ", peer_, ": closing: ", reason);
  } else {
    LOG_INFO("client ", peer_, ": closed: ", reason);
  }
  asio::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.close(ignored);
  context_.counters.clients--;
  if (on_closed_) asio::post(socket_.get_executor(), std::move(on_closed_));
}

std::size_t Session::Wanted() const {
  if (closed_ || pending_.size() >= kOutputHighWater) return 0;
  const std::size_t room = kOutputHighWater - pending_.size();
  if (options_.raw) return room;
  // A lead is topped up in pieces of at least a quarter of it: the peer still has
  // three quarters waiting in its socket, and one write then answers dozens of
  // requests instead of one (QEMU asks for 64 bytes at a time).
  if (blocking_run_bytes_ == 0 && lead_owed_ < options_.lead_bytes / 4) return 0;
  return std::min(room, lead_owed_ + blocking_run_bytes_);
}

void Session::Deliver(std::span<const std::uint8_t> bytes) {
  if (closed_) return;
  pending_.Append(bytes);
  context_.counters.served_bytes += bytes.size();
  served_bytes_ += bytes.size();
  if (!options_.raw) {
    std::size_t n = bytes.size();
    const std::size_t from_lead = std::min(n, lead_owed_);
    lead_owed_ -= from_lead;
    n -= from_lead;
    blocking_run_bytes_ -= n;
    while (n > 0) {
      Pending& head = queue_.front();
      const std::size_t take = std::min<std::size_t>(n, head.count - head_delivered_);
      head_delivered_ += take;
      n -= take;
      if (head_delivered_ == head.count) {
        queue_.pop_front();
        head_delivered_ = 0;
      }
    }
    if (blocking_run_bytes_ == 0) {
      ProcessQueue();
      return;
    }
  }
  Flush();
}

void Session::WaitReadable() {
  if (closed_ || reading_) return;
  reading_ = true;
  socket_.async_wait(asio::socket_base::wait_read,
                     [self = shared_from_this()](const asio::error_code& ec) {
                       self->reading_ = false;
                       if (self->closed_) return;
                       if (ec) {
                         self->Close("wait: " + ec.message());
                         return;
                       }
                       self->OnReadable();
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
    if (ec == asio::error::eof) {
      input_closed_ = true;
      lead_owed_ = 0;  // Nobody will ask again: stop pushing unsolicited bytes.
      ProcessQueue();
      return;
    }
    if (ec) {
      Close("read: " + ec.message());
      return;
    }
    if (quick_ack_) {
      // The lead is topped up only every few requests, so no reply carries the ACK that
      // the peer's next small write waits for under Nagle (QEMU's socket chardev does
      // not set TCP_NODELAY): 40 ms of delayed ACK per request otherwise. Not sticky in
      // the kernel, hence after every read.
      const int one = 1;
      setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
    if (!OnInput(buffer.first(n))) return;
  }
  // Still more to read: yield to other handlers, then continue.
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    if (!self->closed_) self->OnReadable();
  });
}

bool Session::OnInput(std::span<const std::uint8_t> input) {
  if (options_.raw) return true;  // Raw consumers send nothing meaningful.
  while (!input.empty()) {
    const EgdParser::Step step = parser_.Next(input);
    input = input.subspan(step.consumed);
    if (step.outcome == EgdParser::Outcome::kBadCommand) {
      context_.counters.bad_requests++;
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", step.bad_byte);
      Close(std::string("unknown EGD command ") + hex, true);
      return false;
    }
    if (step.outcome == EgdParser::Outcome::kRequest && !Enqueue(step.request)) return false;
  }
  ProcessQueue();
  return !closed_;
}

bool Session::Enqueue(const EgdRequest& request) {
  context_.counters.requests++;
  requests_++;
  if (request.command == EgdCommand::kWriteEntropy) {
    // Never mixed into what others receive: an untrusted client must not steer it.
    context_.counters.entropy_offered_bytes += request.count;
    return true;
  }
  const std::size_t limit = context_.max_queued_requests;
  if (request.command == EgdCommand::kReadBlocking && options_.lead_bytes > 0) {
    // The lead already answered this request; top the lead up instead of queueing.
    lead_owed_ += request.count;
    if (lead_owed_ > options_.lead_bytes + limit * kMaxEgdRequestBytes) {
      context_.counters.queue_overflows++;
      Close("more than " + std::to_string(limit) + " requests waiting for entropy", true);
      return false;
    }
    return true;
  }
  if (queue_.size() >= limit) ProcessQueue();  // Answer what can be answered at once first.
  if (closed_) return false;
  if (queue_.size() >= limit) {
    context_.counters.queue_overflows++;
    Close("more than " + std::to_string(limit) + " requests queued", true);
    return false;
  }
  queue_.push_back(Pending{request.command, request.count});
  return true;
}

void Session::RecomputeBlockingRun() {
  blocking_run_bytes_ = 0;
  std::size_t delivered = head_delivered_;
  for (const Pending& p : queue_) {
    if (p.command != EgdCommand::kReadBlocking) break;
    blocking_run_bytes_ += p.count - delivered;
    delivered = 0;
  }
}

void Session::ProcessQueue() {
  if (closed_) return;
  while (!queue_.empty()) {
    const Pending head = queue_.front();
    if (head.command == EgdCommand::kReadBlocking) {
      if (head.count == head_delivered_) {  // 02 00, or just completed
        queue_.pop_front();
        head_delivered_ = 0;
        continue;
      }
      RecomputeBlockingRun();
      break;
    }
    // Strict order: a non-random reply waits behind bytes owed to earlier requests.
    if (blocking_run_bytes_ > 0 || pending_.room() < kMaxSmallReply) break;
    AnswerImmediate(head);
    queue_.pop_front();
  }
  if (queue_.empty()) blocking_run_bytes_ = 0;
  UpdateDemand();
  Flush();
  MaybeFinish();
}

void Session::MaybeFinish() {
  if (input_closed_ && !options_.raw && !closed_ && queue_.empty() && pending_.empty() &&
      !writing_) {
    Close("peer closed the connection");
  }
}

void Session::AnswerImmediate(const Pending& request) {
  switch (request.command) {
    case EgdCommand::kEntropyAvailable: {
      const double claimed = static_cast<double>(context_.pool.Available()) *
                             std::min(context_.entropy_bits_per_byte, 8.0);
      const auto bits = static_cast<std::uint32_t>(
          std::min(claimed, double{std::numeric_limits<std::uint32_t>::max()}));
      const std::uint8_t reply[4] = {
          static_cast<std::uint8_t>(bits >> 24), static_cast<std::uint8_t>(bits >> 16),
          static_cast<std::uint8_t>(bits >> 8), static_cast<std::uint8_t>(bits)};
      pending_.Append(reply);
      break;
    }
    case EgdCommand::kReadNonBlocking: {
      // Reserve the longest reply, fill what the pool has now, give back the rest.
      const std::size_t start = pending_.size();
      auto reply = pending_.Extend(1 + request.count);
      const std::size_t n = context_.pool.Take(reply.subspan(1));
      reply[0] = static_cast<std::uint8_t>(n);
      pending_.Truncate(start + 1 + n);
      context_.counters.served_bytes += n;
      served_bytes_ += n;
      break;
    }
    case EgdCommand::kGetPid: {
      const std::string pid = std::to_string(getpid());
      auto reply = pending_.Extend(1 + pid.size());
      reply[0] = static_cast<std::uint8_t>(pid.size());
      std::copy(pid.begin(), pid.end(), reply.begin() + 1);
      break;
    }
    case EgdCommand::kReadBlocking:
    case EgdCommand::kWriteEntropy:
      break;
  }
}

void Session::UpdateDemand() {
  if (Wanted() == 0) return;
  context_.fair_share.Activate(this);
  context_.request_pump();
}

void Session::Flush() {
  if (closed_ || writing_ || pending_.empty()) return;
  in_flight_.Swap(pending_);
  writing_ = true;
  asio::async_write(socket_, asio::buffer(in_flight_.data(), in_flight_.size()),
                    [self = shared_from_this()](const asio::error_code& ec, std::size_t sent) {
                      self->writing_ = false;
                      if (ec && !self->closed_) {
                        self->context_.counters.wiped_undelivered_bytes +=
                            self->in_flight_.size() - sent;
                      }
                      self->in_flight_.Clear();
                      if (self->closed_) return;
                      if (ec) {
                        self->Close("write: " + ec.message());
                        return;
                      }
                      self->ProcessQueue();
                    });
  UpdateDemand();  // pending_ has room again: let the pump fill it during the write.
}

}  // namespace rngmux
