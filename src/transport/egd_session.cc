#include "transport/egd_session.h"

#include <unistd.h>

#include <algorithm>
#include <asio/post.hpp>
#include <bit>
#include <cstring>
#include <limits>
#include <utility>

#include "common/secure_memory.h"

namespace rngmux {
namespace {

// Largest reply to a non-random request (01 FF: length byte + 255 bytes).
constexpr std::size_t kMaxSmallReply = 1 + kMaxEgdRequestBytes;

}  // namespace

void OutputBuffer::Append(std::span<const std::uint8_t> bytes) {
  auto target = Extend(bytes.size());
  std::copy(bytes.begin(), bytes.end(), target.begin());
}

void OutputBuffer::Reserve(std::size_t needed) {
  if (needed <= allocated_) return;
  // Grow geometrically in powers of two, within the capacity. A guest's 64-byte reply
  // takes a 64-byte block, not a page: thousands of guests, each with a reply in flight.
  constexpr std::size_t kFirstAllocation = 64;
  std::size_t next = std::bit_ceil(std::max({allocated_ * 2, kFirstAllocation, needed}));
  next = std::min(next, std::max(capacity_, needed));
  std::unique_ptr<std::uint8_t[], DumpExcludedDeleter> grown(AllocateDumpExcluded(next),
                                                             DumpExcludedDeleter{next});
  if (size_ > 0) std::memcpy(grown.get(), data_.get(), size_);
  if (data_) SecureWipe(data_.get(), allocated_);
  data_ = std::move(grown);
  allocated_ = next;
}

std::span<std::uint8_t> OutputBuffer::Extend(std::size_t n) {
  Reserve(size_ + n);
  std::span<std::uint8_t> target(data_.get() + size_, n);
  size_ += n;
  return target;
}

void OutputBuffer::Truncate(std::size_t new_size) {
  if (new_size >= size_) return;
  SecureWipe(data_.get() + new_size, size_ - new_size);
  size_ = new_size;
}

void OutputBuffer::ConsumeFront(std::size_t n) {
  if (n == 0) return;
  const std::size_t left = size_ - n;
  std::memmove(data_.get(), data_.get() + n, left);
  SecureWipe(data_.get() + left, n);
  size_ = left;
}

void OutputBuffer::Clear() {
  if (data_) SecureWipe(data_.get(), size_);
  size_ = 0;
}

void OutputBuffer::Release() {
  Clear();
  if (data_) SecureWipe(data_.get(), allocated_);
  data_.reset();
  allocated_ = 0;
}

void OutputBuffer::Swap(OutputBuffer& other) {
  std::swap(data_, other.data_);
  std::swap(capacity_, other.capacity_);
  std::swap(allocated_, other.allocated_);
  std::swap(size_, other.size_);
}

void LogClientEvent(SessionContext& context, const ClientIdentity& identity, const char* kind,
                    LogLevel level, const std::string& text) {
  std::uint64_t suppressed = 0;
  if (context.client_log != nullptr &&
      !context.client_log->Allow(identity.Key() + " " + kind, SteadyClock::Instance().Now(),
                                 &suppressed)) {
    return;
  }
  if (suppressed > 0) {
    RNGMUX_LOG(level, text, " (", suppressed, " more like it from ", identity.Describe(),
               " not logged)");
  } else {
    RNGMUX_LOG(level, text);
  }
}

EgdSession::EgdSession(SessionContext& context, SessionOptions options, std::string peer,
                       std::size_t output_high_water, asio::any_io_executor executor)
    : pending_(OutputCapacity(output_high_water)),
      context_(context),
      options_(options),
      peer_(std::move(peer)),
      output_high_water_(output_high_water),
      executor_(std::move(executor)) {}

EgdSession::~EgdSession() {
  if (flush_deferred_) {
    for (EgdSession*& listed : context_.deferred_flush) {
      if (listed == this) listed = nullptr;
    }
  }
  if (group_) {
    group_->Leave(this);
  } else {
    context_.fair_share.Remove(this);
  }
}

void EgdSession::SetShareGroup(std::shared_ptr<ShareGroup> group) {
  if (group_) group_->Leave(this);
  group_ = std::move(group);
  if (group_) group_->Join(this);
}

std::vector<EgdRequest> EgdSession::UnansweredRequests() const {
  std::vector<EgdRequest> requests;
  requests.reserve(queue_.size());
  for (const Pending& pending : queue_) {
    EgdRequest request;
    request.command = pending.command;
    request.count = pending.count;
    requests.push_back(request);
  }
  return requests;
}

void EgdSession::InputClosed() {
  input_closed_ = true;
  ProcessQueue();
}

void EgdSession::Begin(std::function<void()> on_closed) {
  on_closed_ = std::move(on_closed);
  context_.counters.clients++;
  context_.counters.connections_total++;
}

void EgdSession::StartDemand() {
  lead_owed_ = options_.lead_bytes;
  lead_batch_ = lead_owed_ > 0;
  UpdateDemand();
}

void EgdSession::CloseAt(LogLevel level, std::string_view reason) {
  if (closed_) return;
  closed_ = true;
  if (group_) {
    group_->Leave(this);
  } else {
    context_.fair_share.Remove(this);
  }
  // A write in progress counts what it never sent when it ends (the transport's
  // handler): the socket may take more of it meanwhile, and that reaches the client.
  context_.counters.wiped_undelivered_bytes += pending_.size();
  pending_.Release();
  LogClientEvent(context_, identity_, level >= LogLevel::kWarning ? "closing" : "closed", level,
                 "client " + peer_ + (level >= LogLevel::kWarning ? ": closing: " : ": closed: ") +
                     std::string(reason));
  CloseTransport();
  context_.counters.clients--;
  if (on_closed_) asio::post(executor_, std::move(on_closed_));
}

std::size_t EgdSession::Wanted() const {
  if (closed_ || pending_.size() >= output_high_water_) return 0;
  const std::size_t room = output_high_water_ - pending_.size();
  if (options_.raw) return room;
  // A lead is topped up in pieces of at least a quarter of it: the peer still has
  // three quarters waiting in its socket, and one write then answers dozens of
  // requests instead of one (QEMU asks for 64 bytes at a time).
  // Once the peer has stopped asking, what is left is sent whatever its size.
  // A top-up that has begun is finished, even if the pool had too little for it in
  // one go: the peer may be waiting for exactly those bytes.
  if (blocking_run_bytes_ == 0 && lead_owed_ < options_.lead_bytes / 4 && !lead_batch_ &&
      !input_closed_) {
    return 0;
  }
  return std::min(room, lead_owed_ + blocking_run_bytes_);
}

void EgdSession::Deliver(std::span<const std::uint8_t> bytes) {
  if (closed_) return;
  pending_.Append(bytes);
  context_.counters.served_bytes += bytes.size();
  served_bytes_ += bytes.size();
  if (!options_.raw) {
    std::size_t n = bytes.size();
    const std::size_t from_lead = std::min(n, lead_owed_);
    lead_owed_ -= from_lead;
    if (lead_owed_ == 0) lead_batch_ = false;
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
  FlushOrDefer();
}

void EgdSession::FlushOrDefer() {
  if (!context_.defer_flush) {
    Flush();
    return;
  }
  if (flush_deferred_) return;
  flush_deferred_ = true;
  context_.deferred_flush.push_back(this);
}

std::size_t EgdSession::PumpAndFlush(SessionContext& context) {
  context.defer_flush = true;
  std::size_t delivered = 0;
  try {
    delivered = context.fair_share.Pump();
  } catch (...) {
    FlushDeferred(context);  // what was delivered before the failure still leaves
    throw;
  }
  FlushDeferred(context);
  return delivered;
}

void EgdSession::FlushDeferred(SessionContext& context) {
  context.defer_flush = false;
  auto& listed = context.deferred_flush;
  std::size_t i = 0;
  try {
    // By index: a flush only starts a write (its handler runs later), but a session
    // destroyed meanwhile would null its entry rather than leave a dangling one.
    for (; i < listed.size(); ++i) {
      EgdSession* session = listed[i];
      if (session == nullptr) continue;
      session->flush_deferred_ = false;
      if (!session->closed_) session->Flush();
    }
  } catch (...) {
    // The sessions after the one that failed stay listed (and flagged): the next
    // pump, asked for here, flushes them, even if nothing else would cause one.
    listed.erase(listed.begin(), listed.begin() + static_cast<std::ptrdiff_t>(i + 1));
    if (!listed.empty() && context.request_pump) context.request_pump();
    throw;
  }
  listed.clear();
}

bool EgdSession::Enqueue(const EgdRequest& request, bool counted) {
  if (!counted) context_.counters.requests++;
  requests_++;  // this client's own count: what its stats row answers for
  if (request.command == EgdCommand::kWriteEntropy) {
    // Never mixed into what others receive: an untrusted client must not steer it.
    context_.counters.entropy_offered_bytes += request.count;
    return true;
  }
  const std::size_t limit = context_.max_queued_requests;
  if (request.command == EgdCommand::kReadBlocking && options_.lead_bytes > 0) {
    // The lead already answered this request; top the lead up instead of queueing.
    lead_owed_ += request.count;
    if (lead_owed_ >= options_.lead_bytes / 4) lead_batch_ = true;
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

void EgdSession::RecomputeBlockingRun() {
  blocking_run_bytes_ = 0;
  std::size_t delivered = head_delivered_;
  for (const Pending& p : queue_) {
    if (p.command != EgdCommand::kReadBlocking) break;
    blocking_run_bytes_ += p.count - delivered;
    delivered = 0;
  }
}

std::size_t EgdSession::PartialReplyBytes() const {
  if (queue_.empty() || queue_.front().command != EgdCommand::kReadBlocking) return 0;
  return head_delivered_;
}

void EgdSession::ProcessQueue() {
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
  FlushOrDefer();
  MaybeFinish();
}

void EgdSession::MaybeFinish() {
  if (input_closed_ && !options_.raw && !closed_ && queue_.empty() && lead_owed_ == 0 &&
      pending_.empty() && TransportIdle()) {
    Close("peer closed the connection");
  }
}

void EgdSession::AnswerImmediate(const Pending& request) {
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
      // Within the client's share: a flood of 01 FF must not jump the fair share.
      const std::size_t n = group_ ? group_->TakeImmediate(reply.subspan(1))
                                   : context_.fair_share.TakeImmediate(this, reply.subspan(1));
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

void EgdSession::UpdateDemand() {
  if (Wanted() == 0) return;
  if (group_) {
    group_->Activate(this);  // Asks for a pump itself.
    return;
  }
  context_.fair_share.Activate(this);
  context_.request_pump();
}

}  // namespace rngmux
