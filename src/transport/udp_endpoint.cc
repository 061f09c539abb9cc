#include "transport/udp_endpoint.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <asio/post.hpp>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "protocol/egd_datagram.h"
#include "transport/socket_util.h"

namespace rngmux {
namespace {

// Datagrams read per readiness event before yielding to other handlers.
constexpr int kDatagramsPerTurn = 64;
constexpr Backoff::Duration kInitialPrimeDelay{100};
constexpr Backoff::Duration kMaxPrimeDelay{10000};
constexpr std::chrono::milliseconds kReadRetryDelay{200};
// Requests arrive as tiny datagrams that each cost about a kilobyte of receive
// buffer, so the usual default (208 KiB) overflows, and silently drops requests,
// once a few hundred are queued, as they are with many pipelining peers. The kernel
// caps this at net.core.rmem_max.
constexpr int kReceiveBufferBytes = 1 << 20;

// The key of an IP address, whatever the port.
std::string IpKey(const PeerAddress& address) {
  const IpAddress ip = address.ip();
  std::string key(1, ip.v6 ? '6' : '4');
  key.append(reinterpret_cast<const char*>(ip.bytes.data()), ip.v6 ? 16 : 4);
  return key;
}

PeerAddress ToPeerAddress(const asio::ip::udp::endpoint& endpoint) {
  PeerAddress out;
  out.length = static_cast<socklen_t>(endpoint.size());
  std::memcpy(&out.storage, endpoint.data(), endpoint.size());
  return out;
}

}  // namespace

UdpEndpoint::UdpEndpoint(asio::io_context& io, const EndpointSpec& spec, SessionContext& context,
                         const Clock& clock)
    : io_(io),
      spec_(spec),
      context_(context),
      clock_(clock),
      socket_(io),
      sweep_timer_(io),
      prime_timer_(io),
      retry_timer_(io),
      prime_backoff_(kInitialPrimeDelay, kMaxPrimeDelay),
      bad_lines_(1, kBadLinesBurst, clock.Now()),
      pid_reply_bytes_(UdpPeer::PidReplyBytes()) {}

std::size_t UdpEndpoint::MaxPeersPerIp() const {
  const std::size_t peers = spec_.udp.max_peers;
  return std::max<std::size_t>(std::min<std::size_t>(peers, 16), peers / 4);
}

std::size_t UdpEndpoint::MaxAddressStates() const {
  return std::max<std::size_t>(4096, 2 * spec_.udp.max_peers);
}

UdpEndpoint::~UdpEndpoint() { Stop(); }

namespace {
std::string AdoptedSocketPrefix(const EndpointSpec& spec) {
  return std::string(spec.role == EndpointRole::kListen ? "listen" : "connect") + " \"" +
         spec.text + "\": socket taken over";
}
}  // namespace

Result<std::unique_ptr<UdpEndpoint>> UdpEndpoint::Adopt(asio::io_context& io,
                                                        const EndpointSpec& spec,
                                                        SessionContext& context, int fd,
                                                        const Clock& clock) {
  std::unique_ptr<UdpEndpoint> endpoint(new UdpEndpoint(io, spec, context, clock));
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) {
    const int err = errno;
    close(fd);
    return Status::FromErrno(AdoptedSocketPrefix(spec), err);
  }
  asio::error_code ec;
  endpoint->socket_.assign(local.ss_family == AF_INET6 ? asio::ip::udp::v6() : asio::ip::udp::v4(),
                           fd, ec);
  if (ec) {
    close(fd);
    return Status::Error(AdoptedSocketPrefix(spec) + ": " + ec.message());
  }
  asio::error_code ignored;
  endpoint->socket_.set_option(asio::socket_base::receive_buffer_size(kReceiveBufferBytes),
                               ignored);
  // The endpoint as bound, as Open() records it: a listener's port, or a connected
  // socket's local address and peer.
  const asio::ip::udp::endpoint bound = endpoint->socket_.local_endpoint(ec);
  if (!ec && spec.role == EndpointRole::kListen) endpoint->spec_.port = bound.port();
  const asio::ip::udp::endpoint remote = endpoint->socket_.remote_endpoint(ec);
  if (!ec && spec.role == EndpointRole::kConnect) {
    endpoint->spec_.udp.local_host = bound.address().to_string();
    endpoint->spec_.udp.local_port = bound.port();
    endpoint->connect_peer_ = ToPeerAddress(remote);
  }
  return endpoint;
}

Result<std::unique_ptr<UdpEndpoint>> UdpEndpoint::Open(asio::io_context& io,
                                                       const EndpointSpec& spec,
                                                       SessionContext& context,
                                                       const Clock& clock) {
  std::unique_ptr<UdpEndpoint> endpoint(new UdpEndpoint(io, spec, context, clock));
  const std::string prefix =
      std::string(spec.role == EndpointRole::kListen ? "listen" : "connect") + " \"" + spec.text +
      "\": ";
  asio::error_code ec;
  asio::ip::udp::resolver resolver(io);
  auto resolve = [&](const std::string& host, std::uint16_t port,
                     asio::ip::udp::resolver::flags flags, asio::ip::udp::endpoint* out) -> Status {
    auto results = resolver.resolve(host, std::to_string(port), flags, ec);
    if (ec || results.empty()) {
      return Status::Error(prefix + "cannot resolve " + host + ": " +
                           (ec ? ec.message() : "no addresses"));
    }
    *out = results.begin()->endpoint();
    return Status::Ok();
  };

  asio::ip::udp::socket& socket = endpoint->socket_;
  auto open = [&](const asio::ip::udp& protocol) -> Status {
    ec = OpenCloseOnExec(socket, protocol);
    if (ec) return Status::Error(prefix + "socket: " + ec.message());
    asio::error_code ignored;
    socket.set_option(asio::socket_base::receive_buffer_size(kReceiveBufferBytes), ignored);
    return Status::Ok();
  };
  if (spec.role == EndpointRole::kListen) {
    asio::ip::udp::endpoint local;
    Status status = resolve(spec.host, spec.port, asio::ip::udp::resolver::passive, &local);
    if (!status.ok()) return status;
    status = open(local.protocol());
    if (!status.ok()) return status;
    socket.bind(local, ec);
    if (ec) return Status::Error(prefix + "bind: " + ec.message());
    endpoint->spec_.port = socket.local_endpoint(ec).port();
    return endpoint;
  }

  asio::ip::udp::endpoint remote;
  Status status = resolve(spec.host, spec.port, {}, &remote);
  if (!status.ok()) return status;
  status = open(remote.protocol());
  if (!status.ok()) return status;
  if (!spec.LocalAddress().empty()) {
    asio::ip::udp::endpoint local(remote.protocol(), spec.udp.local_port);
    if (!spec.udp.local_host.empty()) {
      status = resolve(spec.udp.local_host, spec.udp.local_port, asio::ip::udp::resolver::passive,
                       &local);
      if (!status.ok()) return status;
      if (local.protocol() != remote.protocol()) {
        return Status::Error(prefix + "local address " + spec.LocalAddress() +
                             " and peer are of different address families");
      }
    }
    socket.bind(local, ec);
    if (ec) return Status::Error(prefix + "bind " + spec.LocalAddress() + ": " + ec.message());
  }
  socket.connect(remote, ec);
  if (ec) return Status::Error(prefix + "connect: " + ec.message());
  const asio::ip::udp::endpoint bound = socket.local_endpoint(ec);
  if (!ec) {
    endpoint->spec_.udp.local_host = bound.address().to_string();
    endpoint->spec_.udp.local_port = bound.port();
  }
  endpoint->connect_peer_ = ToPeerAddress(remote);
  return endpoint;
}

void UdpEndpoint::Start() {
  WaitReadable();
  ScheduleSweep();
  if (connected()) {
    LOG_INFO("sending to ", spec_.Describe());
    Prime();
  }
}

void UdpEndpoint::Stop() {
  if (!stopped_) ForgetPeers(LogLevel::kInfo, "shutting down");
  asio::error_code ignored;
  if (socket_.is_open()) socket_.close(ignored);  // also after a ReleaseSocket() that failed
}

UdpEndpoint::Handover UdpEndpoint::ReleaseSocket() {
  Handover handover;
  if (stopped_) return handover;
  for (const auto& [address, peer] : peers_) {
    if (peer->closed()) continue;
    UdpPeer::Unanswered unanswered = peer->TakeStock();
    if (unanswered.empty()) continue;
    handover.peers.push_back(HandedPeer{address, std::move(unanswered), peer->bucket()});
  }
  ForgetPeers(LogLevel::kDebug, "handed over to the endpoint's new settings");
  asio::error_code ec;
  const int fd = socket_.release(ec);  // cancels the wait for input
  handover.fd = ec ? -1 : fd;
  return handover;
}

std::size_t UdpEndpoint::Resume(const HandedPeer& handed) {
  const PeerAddress& from = handed.address;
  if (stopped_ || Denied(from)) return 0;
  const Clock::TimePoint now = clock_.Now();
  std::shared_ptr<UdpPeer> peer = LivePeer(from);
  if (!peer) {
    if (auto it = peers_.find(from); it != peers_.end()) ErasePeer(it);
    if (!connected() && PeerLimitReached(from)) return 0;
    const std::uint64_t burst = spec_.udp.burst_bytes;
    TokenBucket old = handed.bucket;
    TokenBucket bucket(spec_.udp.rate_bytes_per_second, burst, now);
    bucket.TryTake(burst - std::min<std::uint64_t>(old.Available(now), burst), now);
    TouchState(from).bucket = bucket;  // AddPeer takes it
    prime_timer_.cancel();
    peer = AddPeer(from, now);
  }
  std::size_t taken = 0;
  peer->QueuePaid(handed.unanswered.paid);
  if (!peer->closed()) taken += handed.unanswered.paid.size();
  for (const EgdDatagram& datagram : handed.unanswered.delayed) {
    if (peer->closed()) break;
    if (Dispatch(from, datagram, now, /*replayed=*/true)) taken += datagram.requests.size();
  }
  return taken;
}

void UdpEndpoint::ForgetPeers(LogLevel level, std::string_view reason) {
  stopped_ = true;
  sweep_timer_.cancel();
  prime_timer_.cancel();
  retry_timer_.cancel();
  std::vector<std::shared_ptr<UdpPeer>> peers;
  for (auto& [address, peer] : peers_) peers.push_back(peer);
  for (auto& peer : peers) {
    if (level <= LogLevel::kDebug) {
      peer->CloseQuietly(reason);
    } else {
      peer->Close(std::string(reason));
    }
  }
}

void UdpEndpoint::WaitReadable() {
  if (stopped_ || reading_) return;
  reading_ = true;
  socket_.async_wait(asio::socket_base::wait_read, [this](const asio::error_code& ec) {
    reading_ = false;
    if (stopped_ || ec == asio::error::operation_aborted) return;
    OnReadable();
  });
}

void UdpEndpoint::OnReadable() {
  // One byte more than the largest datagram rngmux takes, so a longer one shows.
  thread_local std::array<std::uint8_t, kMaxEgdDatagramBytes + 1> buffer;
  const int fd = socket_.native_handle();
  for (int i = 0; i < kDatagramsPerTurn; ++i) {
    PeerAddress from;
    from.length = sizeof from.storage;
    const ssize_t n = recvfrom(fd, buffer.data(), buffer.size(), MSG_DONTWAIT,
                               reinterpret_cast<sockaddr*>(&from.storage), &from.length);
    if (n < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        WaitReadable();
        return;
      }
      if (err == EINTR) continue;
      // A connected socket reports ICMP errors for what it sent earlier.
      if (connected() &&
          (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EHOSTDOWN)) {
        OnUnreachable();
        continue;
      }
      LogLimited(error_log_, LogLevel::kWarning,
                 spec_.Address() + ": receive: " + std::strerror(err));
      retry_timer_.expires_after(kReadRetryDelay);
      retry_timer_.async_wait([this](const asio::error_code& ec) {
        if (!ec) WaitReadable();
      });
      return;
    }
    context_.counters.udp_datagrams_received++;
    OnDatagram(connected() ? connect_peer_ : from,
               std::span<const std::uint8_t>(buffer.data(), static_cast<std::size_t>(n)),
               clock_.Now());
    if (stopped_) return;
  }
  asio::post(io_, [this] {
    if (!stopped_) OnReadable();
  });
}

std::shared_ptr<UdpPeer> UdpEndpoint::LivePeer(const PeerAddress& address) const {
  auto it = peers_.find(address);
  if (it == peers_.end() || it->second->closed()) return nullptr;
  return it->second;
}

void UdpEndpoint::OnDatagram(const PeerAddress& from, std::span<const std::uint8_t> payload,
                             Clock::TimePoint now) {
  if (Denied(from)) return;
  if (connected() && peer_unreachable_) {
    peer_unreachable_ = false;
    LOG_INFO(spec_.Address(), ": the peer is sending again");
  }
  if (connected()) prime_backoff_.Reset();
  Dispatch(from, ParseEgdDatagram(payload, pid_reply_bytes_), now);
}

bool UdpEndpoint::Denied(const PeerAddress& from) {
  // A connected socket only ever sees its peer; a listener checks every sender
  // before it spends anything on it.
  if (connected() || spec_.access.allow.Allows(from.ip())) return false;
  context_.counters.udp_denied_datagrams++;
  LogLimited(denied_log_, LogLevel::kWarning,
             spec_.Address() + ": dropping datagrams from " + UdpIdentity(from) +
                 ", which is not in allow=" + spec_.access.allow.ToString());
  return true;
}

bool UdpEndpoint::Dispatch(const PeerAddress& from, const EgdDatagram& datagram,
                           Clock::TimePoint now, bool replayed) {
  std::shared_ptr<UdpPeer> peer = LivePeer(from);
  if (!peer) {
    // A closed peer whose clean-up is still pending: its bucket is kept.
    if (auto it = peers_.find(from); it != peers_.end()) ErasePeer(it);
    // Only a valid request makes a sender a peer: empty or bad datagrams from
    // unknown senders must not fill the peer table.
    if (!datagram.ok()) {
      if (datagram.outcome != EgdDatagram::Outcome::kEmpty) {
        context_.counters.bad_requests++;
        LogBadDatagram(from, datagram.Problem(), now);
      }
      // A connect endpoint's peer that is there again is primed afresh.
      if (connected() && !stopped_) SchedulePrime();
      return false;
    }
    if (!connected() && PeerLimitReached(from)) return false;
    prime_timer_.cancel();
    peer = AddPeer(from, now);
  }
  std::string problem;
  const UdpPeer::Verdict verdict = peer->OnParsed(datagram, now, &problem);
  switch (verdict) {
    case UdpPeer::Verdict::kDelayed:
      if (!replayed) context_.counters.udp_delayed_datagrams++;
      break;
    case UdpPeer::Verdict::kRateLimited:
      context_.counters.udp_rate_limited_datagrams++;
      LogLimited(
          rate_log_, LogLevel::kWarning,
          spec_.Address() + ": dropping datagrams from " + UdpIdentity(from) +
              " over its rate limit (rate=" + std::to_string(spec_.udp.rate_bytes_per_second) +
              ",burst=" + std::to_string(spec_.udp.burst_bytes) + ")");
      break;
    case UdpPeer::Verdict::kMalformed:
      LogBadDatagram(from, problem, now);
      break;
    case UdpPeer::Verdict::kAnswered:
    case UdpPeer::Verdict::kIgnored:
      break;
  }
  return verdict == UdpPeer::Verdict::kAnswered || verdict == UdpPeer::Verdict::kDelayed;
}

bool UdpEndpoint::PeerLimitReached(const PeerAddress& from) {
  std::string why;
  if (peers_.size() >= spec_.udp.max_peers) {
    why = std::to_string(spec_.udp.max_peers) + " peers already (peers=N)";
  } else if (auto it = peers_per_ip_.find(IpKey(from));
             it != peers_per_ip_.end() && it->second >= MaxPeersPerIp()) {
    why = std::to_string(it->second) + " peers from " + from.ip().ToString() +
          " already (at most " + std::to_string(MaxPeersPerIp()) + " per address)";
  } else {
    return false;
  }
  context_.counters.udp_peer_limit_datagrams++;
  LogLimited(
      full_log_, LogLevel::kWarning,
      spec_.Address() + ": dropping datagrams from new peer " + UdpIdentity(from) + ": " + why);
  return true;
}

void UdpEndpoint::LogBadDatagram(const PeerAddress& from, const std::string& problem,
                                 Clock::TimePoint now) {
  AddressState& state = TouchState(from);
  std::uint64_t suppressed = 0;
  if (!state.bad_log.Allow(now, &suppressed) || !bad_lines_.TryTake(1, now)) return;
  const std::string line = "client " + UdpIdentity(from) + ": closing: " + problem;
  if (suppressed > 0) {
    LOG_WARNING(line, " (", suppressed, " more bad datagrams from it since the last such line)");
  } else {
    LOG_WARNING(line);
  }
}

UdpEndpoint::AddressState& UdpEndpoint::TouchState(const PeerAddress& address) {
  if (auto it = state_index_.find(address); it != state_index_.end()) {
    states_.splice(states_.begin(), states_, it->second);
    return states_.front();
  }
  while (!states_.empty() && states_.size() >= MaxAddressStates()) {
    state_index_.erase(states_.back().address);
    states_.pop_back();
  }
  states_.push_front(AddressState{address, std::nullopt, LogLimiter(kLogInterval)});
  state_index_[address] = states_.begin();
  return states_.front();
}

std::shared_ptr<UdpPeer> UdpEndpoint::AddPeer(const PeerAddress& address, Clock::TimePoint now) {
  std::optional<TokenBucket> bucket;
  if (auto it = state_index_.find(address); it != state_index_.end()) {
    bucket.swap(it->second->bucket);
  }
  auto peer =
      std::make_shared<UdpPeer>(*this, context_, spec_.session, address, UdpIdentity(address),
                                spec_.udp, clock_, io_.get_executor(), bucket);
  peers_[address] = peer;
  peers_per_ip_[IpKey(address)]++;
  LOG_DEBUG("client ", peer->peer(), ": new udp peer on ", spec_.Address());
  const UdpPeer* key = peer.get();
  peer->Start([this, key, address] { OnPeerClosed(key, address); }, now);
  return peer;
}

void UdpEndpoint::ErasePeer(PeerMap::iterator it) {
  forgotten_served_bytes_ += it->second->served_bytes();
  TouchState(it->first).bucket = it->second->bucket();
  if (auto count = peers_per_ip_.find(IpKey(it->first)); count != peers_per_ip_.end()) {
    if (--count->second == 0) peers_per_ip_.erase(count);
  }
  peers_.erase(it);
}

void UdpEndpoint::OnPeerClosed(const UdpPeer* peer, const PeerAddress& address) {
  auto it = peers_.find(address);
  // The map may already hold a new peer for this address, possibly at the very
  // address the old one had (it was erased and freed before this ran): only a
  // closed entry is the old one.
  if (it != peers_.end() && it->second.get() == peer && it->second->closed()) ErasePeer(it);
  if (connected() && !stopped_ && !peer_unreachable_ && !LivePeer(connect_peer_)) SchedulePrime();
}

void UdpEndpoint::OnUnreachable() {
  if (!peer_unreachable_) {
    peer_unreachable_ = true;
    LOG_WARNING(spec_.Address(),
                ": nothing is listening there (ICMP port unreachable); waiting for it to send "
                "a request");
  }
  prime_timer_.cancel();
  if (auto peer = LivePeer(connect_peer_)) peer->CloseQuietly("peer unreachable");
}

void UdpEndpoint::SchedulePrime() {
  prime_timer_.expires_after(prime_backoff_.NextDelay());
  prime_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec || stopped_ || peer_unreachable_ || LivePeer(connect_peer_)) return;
    Prime();
  });
}

void UdpEndpoint::Prime() {
  if (spec_.session.lead_bytes > 0) {
    LOG_INFO(spec_.Address(), ": pushing a primer of ", spec_.session.lead_bytes, " bytes");
  }
  AddPeer(connect_peer_, clock_.Now());
}

void UdpEndpoint::ScheduleSweep() {
  const auto period = std::clamp<Clock::Duration>(spec_.udp.idle / 4, std::chrono::milliseconds(50),
                                                  std::chrono::seconds(1));
  sweep_timer_.expires_after(period);
  sweep_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec || stopped_) return;
    Sweep();
    ScheduleSweep();
  });
}

void UdpEndpoint::Sweep() {
  const Clock::TimePoint now = clock_.Now();
  std::vector<std::shared_ptr<UdpPeer>> silent;
  for (auto& [address, peer] : peers_) {
    if (!peer->closed() && now - peer->last_heard() >= spec_.udp.idle) silent.push_back(peer);
  }
  const std::string reason = "silent for " + std::to_string(spec_.udp.idle.count()) + " s";
  for (auto& peer : silent) {
    context_.counters.udp_expired_peers++;
    if (connected()) {
      LOG_INFO(spec_.Address(), ": the peer has been ", reason,
               "; forgetting it and starting afresh");
    }
    peer->CloseQuietly(reason);
  }
  // Kept states that hold nothing a new one would not: a full bucket (or none) and
  // no log line being held back.
  for (auto it = states_.begin(); it != states_.end();) {
    if ((!it->bucket || it->bucket->Full(now)) && it->bad_log.Idle(now)) {
      state_index_.erase(it->address);
      it = states_.erase(it);
    } else {
      ++it;
    }
  }
}

DatagramSink::SendResult UdpEndpoint::Send(const PeerAddress& to,
                                           std::span<const std::uint8_t> datagram,
                                           std::string* error) {
  const int fd = socket_.native_handle();
  for (int attempt = 0; attempt < 3; ++attempt) {
    const ssize_t n = connected()
                          ? send(fd, datagram.data(), datagram.size(), MSG_DONTWAIT | MSG_NOSIGNAL)
                          : sendto(fd, datagram.data(), datagram.size(),
                                   MSG_DONTWAIT | MSG_NOSIGNAL, to.get(), to.length);
    if (n >= 0) return SendResult::kSent;
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) return SendResult::kWouldBlock;
    // EINTR, or an error a connected socket kept for an earlier datagram (this one
    // was not sent): try again.
    if (err == EINTR || (connected() && err == ECONNREFUSED)) continue;
    *error = std::strerror(err);
    return SendResult::kFailed;
  }
  *error = "peer unreachable";
  return SendResult::kFailed;
}

void UdpEndpoint::WaitWritable(std::shared_ptr<UdpPeer> peer) {
  blocked_.push_back(peer);
  if (waiting_writable_ || stopped_) return;
  waiting_writable_ = true;
  socket_.async_wait(asio::socket_base::wait_write, [this](const asio::error_code& ec) {
    waiting_writable_ = false;
    if (ec || stopped_) return;
    std::vector<std::weak_ptr<UdpPeer>> ready;
    ready.swap(blocked_);
    for (auto& weak : ready) {
      if (auto ready_peer = weak.lock()) ready_peer->OnWritable();
    }
  });
}

void UdpEndpoint::LogLimited(LogLimiter& limiter, LogLevel level, const std::string& message) {
  std::uint64_t suppressed = 0;
  if (!limiter.Allow(clock_.Now(), &suppressed)) return;
  if (suppressed > 0) {
    RNGMUX_LOG(level, message, " (", suppressed, " more like it since the last such line)");
  } else {
    RNGMUX_LOG(level, message);
  }
}

void UdpEndpoint::AppendPeers(std::vector<const EgdSession*>* out) const {
  for (const auto& [address, peer] : peers_) out->push_back(peer.get());
}

std::uint64_t UdpEndpoint::served_bytes() const {
  std::uint64_t total = forgotten_served_bytes_;
  for (const auto& [address, peer] : peers_) total += peer->served_bytes();
  return total;
}

}  // namespace rngmux
