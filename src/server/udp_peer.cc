#include "server/udp_peer.h"

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

IpAddress PeerAddress::ip() const {
  IpAddress out;
  IpAddress::FromSockaddr(get(), &out);
  return out;
}

UdpPeer::UdpPeer(DatagramSink& sink, SessionContext& context, SessionOptions options,
                 PeerAddress address, std::string name, const UdpOptions& limits,
                 const Clock& clock, asio::any_io_executor executor)
    : EgdSession(context, options, std::move(name), kOutputHighWater, executor),
      sink_(sink),
      address_(address),
      clock_(clock),
      bucket_(limits.rate_bytes_per_second, limits.burst_bytes, clock.Now()),
      rate_(limits.rate_bytes_per_second),
      burst_(limits.burst_bytes),
      resume_timer_(executor),
      pid_reply_bytes_(1 + std::to_string(getpid()).size()) {}

void UdpPeer::Start(std::function<void()> on_closed, Clock::TimePoint now) {
  Begin(std::move(on_closed));
  last_heard_ = now;
  // Always affordable: the bucket is new and full, and the endpoint parser checked
  // lead <= burst. Charging it keeps the bytes sent within rate * T + burst.
  if (options().lead_bytes > 0) bucket_.TryTake(options().lead_bytes, now);
  StartDemand();
}

UdpPeer::Verdict UdpPeer::OnDatagram(std::span<const std::uint8_t> payload, Clock::TimePoint now,
                                     std::string* problem) {
  if (closed()) return Verdict::kIgnored;
  last_heard_ = now;
  const EgdDatagram datagram = ParseEgdDatagram(payload, pid_reply_bytes_);
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
  delayed_.push_back(Delayed{datagram.requests, cost});
  delayed_cost_ += cost;
  if (delayed_.size() == 1) ScheduleResume(now);
  return Verdict::kDelayed;
}

void UdpPeer::Queue(const std::vector<EgdRequest>& requests) {
  for (const EgdRequest& request : requests) {
    if (!Enqueue(request)) return;  // closed: too many requests waiting
  }
  ProcessQueue();
}

void UdpPeer::ResumeDelayed(Clock::TimePoint now) {
  while (!closed() && !delayed_.empty() && bucket_.TryTake(delayed_.front().cost, now)) {
    const Delayed next = std::move(delayed_.front());
    delayed_.pop_front();
    delayed_cost_ -= next.cost;
    Queue(next.requests);
  }
  if (!closed() && !delayed_.empty()) ScheduleResume(now);
}

void UdpPeer::ScheduleResume(Clock::TimePoint now) {
  const std::uint64_t have = bucket_.Available(now);
  const std::uint64_t need = delayed_.front().cost > have ? delayed_.front().cost - have : 0;
  // Rounded up, so that the bucket can pay when the timer fires.
  const auto wait = std::chrono::nanoseconds((need * 1'000'000'000 + rate_ - 1) / rate_ + 1);
  resume_timer_.expires_after(wait);
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

void UdpPeer::Flush() {
  if (closed() || blocked_) return;
  const std::size_t sendable = pending_.size() - PartialReplyBytes();
  std::size_t sent = 0;
  while (sent < sendable) {
    const std::size_t n = std::min(sendable - sent, kMaxEgdDatagramBytes);
    std::string error;
    const DatagramSink::SendResult result =
        sink_.Send(address_, std::span<const std::uint8_t>(pending_.data() + sent, n), &error);
    if (result == DatagramSink::SendResult::kSent) {
      sent += n;
      context().counters.udp_datagrams_sent++;
      continue;
    }
    pending_.ConsumeFront(sent);
    if (result == DatagramSink::SendResult::kWouldBlock) {
      blocked_ = true;
      sink_.WaitWritable(shared_from_this());
    } else {
      Close("send: " + error);
    }
    return;
  }
  pending_.ConsumeFront(sent);
  if (sent > 0) UpdateDemand();
}

}  // namespace rngmux
