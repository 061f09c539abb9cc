#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>
#include <asio/steady_timer.hpp>
#include <cstddef>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/rate_limit.h"
#include "common/status.h"
#include "endpoint/endpoint_spec.h"
#include "transport/egd_session.h"
#include "transport/udp_peer.h"

namespace rngmux {

// One UDP endpoint: a bound datagram socket and the peers it serves, each a
// UdpPeer (a client of its own in the FairShare).
//
// --listen udp:H:P answers whoever sends to H:P, from H:P, provided the sender is
// on the allow list; other senders are dropped without a reply, counted and logged
// at most once per kLogInterval. A sender becomes a peer (is remembered) only with
// a datagram that holds a valid request: empty or bad datagrams from unknown
// senders cost no peer. At most `peers` peers are remembered, and at most
// MaxPeersPerIp() of them per IP address (whatever their ports); datagrams from new
// ones beyond that are dropped the same way.
//
// Rate state outlives peers: when a peer is forgotten (silence, a bad datagram),
// its token bucket is kept per address (IP and port) until it has refilled, so a
// peer that comes back is not given a fresh burst. Kept states are bounded
// (MaxAddressStates(), least recently used go first). A bad datagram closes its
// peer with a line logged at most once per kLogInterval per address (and, for the
// whole endpoint, at most one a second after a first kBadLinesBurst).
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
  // Lines about bad datagrams the endpoint may log at once across all addresses;
  // then one a second (a flood from many addresses must not flood the log).
  static constexpr std::uint64_t kBadLinesBurst = 10;

  // Binds (and for connect endpoints connects) the socket; nothing is served yet.
  // Errors are one line naming the endpoint.
  static Result<std::unique_ptr<UdpEndpoint>> Open(asio::io_context& io, const EndpointSpec& spec,
                                                   SessionContext& context,
                                                   const Clock& clock = SteadyClock::Instance());
  // An endpoint on a bound socket, owned from here: one passed in by systemd (a
  // duplicate), or the socket of the endpoint it replaces at a reload (ReleaseSocket).
  // A connected socket makes a connect endpoint, sending to its peer.
  static Result<std::unique_ptr<UdpEndpoint>> Adopt(asio::io_context& io, const EndpointSpec& spec,
                                                    SessionContext& context, int fd,
                                                    const Clock& clock = SteadyClock::Instance());
  ~UdpEndpoint() override;

  void Start();
  // Forgets every peer and closes the socket. Idempotent.
  void Stop();
  // A peer as ReleaseSocket() hands it over: what it asked and was not answered yet,
  // and its rate state.
  struct HandedPeer {
    PeerAddress address;
    UdpPeer::Unanswered unanswered;
    TokenBucket bucket;
  };
  // What ReleaseSocket() hands to the endpoint that takes over: the socket (-1 if
  // stopped already) and the peers that were owed something.
  struct Handover {
    int fd = -1;
    std::vector<HandedPeer> peers;
  };
  // Forgets every peer, as Stop(), but hands the socket over instead of closing it:
  // datagrams that arrive meanwhile wait in it, and senders are never answered "port
  // unreachable", which QEMU's UDP chardev does not survive. Nor does it survive a
  // request that is never answered (QEMU never sends one again): those are handed
  // over too, for Resume().
  Handover ReleaseSocket();
  // After Start(): a peer handed over from the endpoint this one replaces, under this
  // endpoint's options: a sender allow= now refuses, or one beyond peers=, is dropped.
  // Its requests that were paid for are queued as they are; its datagrams waiting for
  // the rate limit wait on, for a bucket that holds what the old one did (at most the
  // new burst), so a reload never refills it. Returns the requests taken.
  std::size_t Resume(const HandedPeer& handed);

  // The endpoint as bound: a listener's real port, a connect endpoint's real
  // local address.
  const EndpointSpec& spec() const { return spec_; }
  // Appends the peers it serves now (for the per-client stats).
  void AppendPeers(std::vector<const EgdSession*>* out) const;
  // Random bytes sent to its peers since it opened, the forgotten ones included.
  std::uint64_t served_bytes() const;

  SendResult Send(const PeerAddress& to, std::span<const std::uint8_t> datagram,
                  std::string* error) override;
  void WaitWritable(std::shared_ptr<UdpPeer> peer) override;

  // One datagram from `from` (the socket's reader calls this; public for tests).
  void OnDatagram(const PeerAddress& from, std::span<const std::uint8_t> payload,
                  Clock::TimePoint now);
  // Forgets silent peers and rate states that hold nothing (a timer calls this;
  // public for tests).
  void Sweep();

  // Peers one IP address may have at once: all of `peers` when it is at most 16,
  // else a quarter of it, but never fewer than 16.
  std::size_t MaxPeersPerIp() const;
  // Rate states kept for forgotten peers, at most.
  std::size_t MaxAddressStates() const;
  std::size_t peer_count() const { return peers_.size(); }
  std::size_t address_states() const { return states_.size(); }

 private:
  struct AddressState {
    PeerAddress address;
    // The bucket of a forgotten peer; empty while a peer holds it, or if the
    // address never had a peer.
    std::optional<TokenBucket> bucket;
    LogLimiter bad_log{kLogInterval};
  };
  using PeerMap = std::unordered_map<PeerAddress, std::shared_ptr<UdpPeer>, PeerAddressHash>;

  UdpEndpoint(asio::io_context& io, const EndpointSpec& spec, SessionContext& context,
              const Clock& clock);
  bool connected() const { return spec_.role == EndpointRole::kConnect; }

  // Stop() and ReleaseSocket() but for the socket.
  void ForgetPeers(LogLevel level, std::string_view reason);
  // A listener's sender not in allow=: counted and logged (rate-limited).
  bool Denied(const PeerAddress& from);
  // OnDatagram() after the parse; true if the datagram was queued (or delayed).
  // `replayed`: handed over by a reload, counted in udp_delayed_datagrams already.
  bool Dispatch(const PeerAddress& from, const EgdDatagram& datagram, Clock::TimePoint now,
                bool replayed = false);
  void WaitReadable();
  void OnReadable();
  std::shared_ptr<UdpPeer> AddPeer(const PeerAddress& address, Clock::TimePoint now);
  void OnPeerClosed(const UdpPeer* peer, const PeerAddress& address);
  // Erases a closed peer's entry, keeping its bucket.
  void ErasePeer(PeerMap::iterator it);
  // The state kept for `address`, made if there is none, now the most recently used.
  AddressState& TouchState(const PeerAddress& address);
  void LogBadDatagram(const PeerAddress& from, const std::string& problem, Clock::TimePoint now);
  bool PeerLimitReached(const PeerAddress& from);
  std::shared_ptr<UdpPeer> LivePeer(const PeerAddress& address) const;
  // connect: the peer's port is closed (ICMP port unreachable).
  void OnUnreachable();
  void SchedulePrime();
  void Prime();
  void ScheduleSweep();
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
  PeerMap peers_;
  // Entries of peers_ per IP address (IpKey), for the per-address cap.
  std::unordered_map<std::string, std::size_t> peers_per_ip_;
  std::list<AddressState> states_;  // most recently used first
  std::unordered_map<PeerAddress, std::list<AddressState>::iterator, PeerAddressHash> state_index_;
  TokenBucket bad_lines_;
  std::size_t pid_reply_bytes_;
  std::vector<std::weak_ptr<UdpPeer>> blocked_;  // waiting for the socket to take datagrams
  LogLimiter denied_log_{kLogInterval};
  LogLimiter rate_log_{kLogInterval};
  LogLimiter full_log_{kLogInterval};
  LogLimiter error_log_{kLogInterval};
  bool waiting_writable_ = false;
  bool reading_ = false;
  bool peer_unreachable_ = false;  // connect: until the peer sends something
  bool stopped_ = false;
  std::uint64_t forgotten_served_bytes_ = 0;  // by peers no longer in peers_
};

}  // namespace rngmux
