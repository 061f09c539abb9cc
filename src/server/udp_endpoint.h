#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>
#include <asio/steady_timer.hpp>
#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/rate_limit.h"
#include "common/status.h"
#include "server/egd_session.h"
#include "server/udp_peer.h"
#include "transport/endpoint_spec.h"

namespace rngmux {

// One UDP endpoint: a bound datagram socket and the peers it serves, each a
// UdpPeer (a client of its own in the FairShare).
//
// --listen udp:H:P answers whoever sends to H:P, from H:P, provided the sender is
// on the allow list; other senders are dropped without a reply, counted and logged
// at most once per kLogInterval. At most `peers` peers are remembered; datagrams
// from new ones beyond that are dropped the same way.
//
// --connect udp:A:L,local=H:P binds H:P, connects to A:L (QEMU with
// localaddr=A,localport=L sends from A:L to H:P and takes datagrams from H:P only)
// and starts the one peer at once, so that with a lead it pushes the primer that
// completes a request QEMU sent before rngmux was there to read it. If A:L answers
// "port unreachable", the peer is dropped and rngmux waits for A:L to send first
// (nothing is pushed into the void). When the peer is forgotten for any other
// reason (silence, a bad datagram), a new one with a new primer is started after a
// back-off delay, so a lost datagram stalls a guest for at most `idle` seconds.
//
// Peers silent for `idle` are forgotten: what they held is wiped and counted.
// Event-loop thread only.
class UdpEndpoint final : public DatagramSink {
 public:
  static constexpr Clock::Duration kLogInterval = std::chrono::seconds(10);

  // Binds (and for connect endpoints connects) the socket; nothing is served yet.
  // Errors are one line naming the endpoint.
  static Result<std::unique_ptr<UdpEndpoint>> Open(asio::io_context& io, const EndpointSpec& spec,
                                                   SessionContext& context,
                                                   const Clock& clock = SteadyClock::Instance());
  ~UdpEndpoint() override;

  void Start();
  // Forgets every peer and closes the socket. Idempotent.
  void Stop();

  // The endpoint as bound: a listener's real port, a connect endpoint's real
  // local address.
  const EndpointSpec& spec() const { return spec_; }
  // Appends the peers it serves now (for the per-client stats).
  void AppendPeers(std::vector<const EgdSession*>* out) const;

  SendResult Send(const PeerAddress& to, std::span<const std::uint8_t> datagram,
                  std::string* error) override;
  void WaitWritable(std::shared_ptr<UdpPeer> peer) override;

 private:
  UdpEndpoint(asio::io_context& io, const EndpointSpec& spec, SessionContext& context,
              const Clock& clock);
  bool connected() const { return spec_.role == EndpointRole::kConnect; }

  void WaitReadable();
  void OnReadable();
  void OnDatagram(const PeerAddress& from, std::span<const std::uint8_t> payload,
                  Clock::TimePoint now);
  std::shared_ptr<UdpPeer> AddPeer(const PeerAddress& address, Clock::TimePoint now);
  void OnPeerClosed(const UdpPeer* peer, const PeerAddress& address);
  std::shared_ptr<UdpPeer> LivePeer(const PeerAddress& address) const;
  // connect: the peer's port is closed (ICMP port unreachable).
  void OnUnreachable();
  void SchedulePrime();
  void Prime();
  void ScheduleSweep();
  void Sweep();
  void LogLimited(LogLimiter& limiter, LogLevel level, const std::string& message);

  asio::io_context& io_;
  EndpointSpec spec_;
  SessionContext& context_;
  const Clock& clock_;
  asio::ip::udp::socket socket_;
  asio::steady_timer sweep_timer_;
  asio::steady_timer prime_timer_;
  asio::steady_timer retry_timer_;
  Backoff prime_backoff_;
  PeerAddress connect_peer_;  // connect: the one peer
  std::unordered_map<PeerAddress, std::shared_ptr<UdpPeer>, PeerAddressHash> peers_;
  std::vector<std::weak_ptr<UdpPeer>> blocked_;  // waiting for the socket to take datagrams
  LogLimiter denied_log_{kLogInterval};
  LogLimiter rate_log_{kLogInterval};
  LogLimiter full_log_{kLogInterval};
  LogLimiter bad_log_{kLogInterval};
  LogLimiter error_log_{kLogInterval};
  bool waiting_writable_ = false;
  bool reading_ = false;
  bool peer_unreachable_ = false;  // connect: until the peer sends something
  bool stopped_ = false;
};

}  // namespace rngmux
