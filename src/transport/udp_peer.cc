#include "transport/udp_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "protocol/egd_datagram.h"

namespace rngmux {

bool PeerAddress::operator==(const PeerAddress& other) const {
  if (storage.ss_family != other.storage.ss_family) return false;
  if (storage.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&storage);
    const auto* b = reinterpret_cast<const sockaddr_in*>(&other.storage);
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (storage.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&storage);
    const auto* b = reinterpret_cast<const sockaddr_in6*>(&other.storage);
    return a->sin6_port == b->sin6_port && a->sin6_scope_id == b->sin6_scope_id &&
           std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
  }
  return false;
}

std::size_t PeerAddressHash::operator()(const PeerAddress& address) const {
  // FNV-1a over the fields operator== compares.
  std::uint64_t hash = 1469598103934665603ULL;
  auto mix = [&hash](const void* data, std::size_t size) {
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    for (std::size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 1099511628211ULL;
  };
  mix(&address.storage.ss_family, sizeof address.storage.ss_family);
  if (address.storage.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address.storage);
    mix(&in->sin_port, sizeof in->sin_port);
    mix(&in->sin_addr, sizeof in->sin_addr);
  } else if (address.storage.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
    mix(&in6->sin6_port, sizeof in6->sin6_port);
    mix(&in6->sin6_addr, sizeof in6->sin6_addr);
    mix(&in6->sin6_scope_id, sizeof in6->sin6_scope_id);
  }
  return static_cast<std::size_t>(hash);
}

std::string PeerAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (storage.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (storage.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "unknown";
}

std::string UdpIdentity(const PeerAddress& address) { return address.ToString(); }

IpAddress PeerAddress::ip() const {
  IpAddress out;
  IpAddress::FromSockaddr(get(), &out);
  return out;
}

UdpPeer::UdpPeer(DatagramSink& sink, SessionContext& context, SessionOptions options,
                 PeerAddress address, std::string name, const UdpOptions& limits,
                 const Clock& clock, asio::any_io_executor executor,
                 std::optional<TokenBucket> bucket)
    : EgdSession(context, options, std::move(name), kOutputHighWater, executor),
      sink_(sink),
      address_(address),
      clock_(clock),
      bucket_(bucket ? *bucket
                     : TokenBucket(limits.rate_bytes_per_second, limits.burst_bytes, clock.Now())),
      burst_(limits.burst_bytes),
      resume_timer_(executor),
      lead_timer_(executor),
      pid_reply_bytes_(PidReplyBytes()) {}

std::size_t UdpPeer::PidReplyBytes() { return 1 + std::to_string(getpid()).size(); }

void UdpPeer::Start(std::function<void()> on_closed, Clock::TimePoint now) {
  Begin(std::move(on_closed));
  context().counters.udp_peers++;
  counted_ = true;
  last_heard_ = now;
  if (options().lead_bytes > 0) {
    StartLead(now);
  } else {
    StartDemand();
  }
}

void UdpPeer::StartLead(Clock::TimePoint now) {
  // The endpoint parser checked lead <= burst, so a full bucket can always pay.
  // Charging it keeps the bytes sent within rate * T + burst, also for a peer whose
  // bucket was kept from before (it waits until the bucket has refilled enough).
  if (bucket_.TryTake(options().lead_bytes, now)) {
    StartDemand();
    return;
  }
  lead_timer_.expires_after(bucket_.TimeUntil(options().lead_bytes, now) +
                            std::chrono::microseconds(1));
  lead_timer_.async_wait([weak = weak_from_this()](const asio::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->closed()) return;
    self->StartLead(self->clock_.Now());
  });
}

UdpPeer::Verdict UdpPeer::OnDatagram(std::span<const std::uint8_t> payload, Clock::TimePoint now,
                                     std::string* problem) {
  return OnParsed(ParseEgdDatagram(payload, pid_reply_bytes_), now, problem);
}

UdpPeer::Verdict UdpPeer::OnParsed(const EgdDatagram& datagram, Clock::TimePoint now,
                                   std::string* problem) {
  if (closed()) return Verdict::kIgnored;
  last_heard_ = now;
  if (datagram.outcome == EgdDatagram::Outcome::kEmpty) return Verdict::kIgnored;
  if (!datagram.ok()) {
    context().counters.bad_requests++;
    *problem = datagram.Problem();
    CloseQuietly(*problem);
    return Verdict::kMalformed;
  }
  // Every request costs at least a byte: `02 00` and `03` answer nothing, but a flood
  // of them must not pile up in memory for free while the peer waits for tokens.
  const std::size_t cost = std::max(datagram.reply_bytes, datagram.requests.size());
  // Earlier delayed datagrams go first: replies must keep the order of the requests.
  if (delayed_.empty() && bucket_.TryTake(cost, now)) {
    Queue(datagram.requests);
    return Verdict::kAnswered;
  }
  if (delayed_.size() >= kMaxDelayedDatagrams || delayed_cost_ + cost > burst_) {
    return Verdict::kRateLimited;
  }
  delayed_.push_back(Delayed{datagram, cost});
  delayed_cost_ += cost;
  if (delayed_.size() == 1) ScheduleResume(now);
  return Verdict::kDelayed;
}

UdpPeer::Unanswered UdpPeer::TakeStock() const {
  Unanswered stock;
  stock.paid = UnansweredRequests();
  for (const Delayed& delayed : delayed_) stock.delayed.push_back(delayed.datagram);
  return stock;
}

void UdpPeer::QueuePaid(const std::vector<EgdRequest>& requests) {
  if (!closed()) Queue(requests, /*counted=*/true);
}

void UdpPeer::Queue(const std::vector<EgdRequest>& requests, bool counted) {
  for (const EgdRequest& request : requests) {
    if (!Enqueue(request, counted)) return;  // closed: too many requests waiting
  }
  ProcessQueue();
}

void UdpPeer::ResumeDelayed(Clock::TimePoint now) {
  while (!closed() && !delayed_.empty() && bucket_.TryTake(delayed_.front().cost, now)) {
    const Delayed next = std::move(delayed_.front());
    delayed_.pop_front();
    delayed_cost_ -= next.cost;
    Queue(next.datagram.requests);
  }
  if (!closed() && !delayed_.empty()) ScheduleResume(now);
}

void UdpPeer::ScheduleResume(Clock::TimePoint now) {
  // Rounded up, so that the bucket can pay when the timer fires.
  resume_timer_.expires_after(bucket_.TimeUntil(delayed_.front().cost, now) +
                              std::chrono::nanoseconds(1));
  resume_timer_.async_wait([weak = weak_from_this()](const asio::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->closed()) return;
    self->ResumeDelayed(self->clock_.Now());
  });
}

void UdpPeer::OnWritable() {
  blocked_ = false;
  Flush();
}

// Everything the output buffer can hold is one datagram, so a flush never cuts a
// reply in two (cutting at a fixed size split 01 replies across datagrams).
static_assert(EgdSession::OutputCapacity(UdpPeer::kOutputHighWater) <= kMaxEgdDatagramBytes);

void UdpPeer::Flush() {
  if (flushing_) {  // ProcessQueue() below answered more: the loop sends it
    flush_again_ = true;
    return;
  }
  flushing_ = true;
  do {
    flush_again_ = false;
    if (closed() || blocked_) break;
    const std::size_t sendable = pending_.size() - PartialReplyBytes();
    if (sendable == 0) break;
    std::string error;
    const DatagramSink::SendResult result =
        sink_.Send(address_, std::span<const std::uint8_t>(pending_.data(), sendable), &error);
    if (result == DatagramSink::SendResult::kWouldBlock) {
      blocked_ = true;
      sink_.WaitWritable(shared_from_this());
      break;
    }
    if (result == DatagramSink::SendResult::kFailed) {
      Close("send: " + error);
      break;
    }
    context().counters.udp_datagrams_sent++;
    // Requests that wait for room in the buffer (a 01 NN needs 1 + NN bytes of it)
    // are answered now that it has some.
    const bool was_full = pending_.room() < 1 + kMaxEgdRequestBytes;
    pending_.ConsumeFront(sendable);
    if (was_full && queued_requests() > 0) {
      ProcessQueue();
    } else {
      UpdateDemand();
    }
  } while (flush_again_);
  flushing_ = false;
}

}  // namespace rngmux
