#pragma once

#include <sys/socket.h>

#include <asio/any_io_executor.hpp>
#include <asio/steady_timer.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/rate_limit.h"
#include "endpoint/address_filter.h"
#include "protocol/egd_datagram.h"
#include "transport/egd_session.h"

namespace rngmux {

class UdpPeer;

// A UDP peer's address as the socket reports it (sockaddr_in or sockaddr_in6).
struct PeerAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  // Family, address, port (and IPv6 scope) are equal.
  bool operator==(const PeerAddress& other) const;
  // "127.0.0.1:5000" or "[::1]:5000".
  std::string ToString() const;
  IpAddress ip() const;
};

struct PeerAddressHash {
  std::size_t operator()(const PeerAddress& address) const;
};

// A UDP client's identity in logs and stats: its address, IP and port
// ("127.0.0.1:5000", "[::1]:5000"). Every UDP log line and stats row names a peer
// through this one function.
std::string UdpIdentity(const PeerAddress& address);

// Where a UdpPeer's datagrams go: the endpoint's socket (or a fake in tests).
class DatagramSink {
 public:
  enum class SendResult { kSent, kWouldBlock, kFailed };
  virtual ~DatagramSink() = default;
  // Sends one datagram without blocking; on kFailed, *error says why.
  virtual SendResult Send(const PeerAddress& to, std::span<const std::uint8_t> datagram,
                          std::string* error) = 0;
  // After kWouldBlock: calls peer->OnWritable() once the socket takes datagrams again.
  virtual void WaitWritable(std::shared_ptr<UdpPeer> peer) = 0;
};

// One UDP peer address as a client of its own: the same EGD session, fair share,
// exactly-once delivery and wipe rules as a stream connection, fed one datagram at
// a time by its endpoint.
//
// Amplification limits, enforced before a request is queued:
//   * a datagram is answered only if it holds whole, valid requests whose replies
//     together fit in kMaxEgdDatagramBytes (a 2-byte 02 NN is worth NN <= 255 bytes);
//   * the most the replies can take is charged to the peer's token bucket first. If
//     it cannot pay yet, the datagram waits (in order) until the bucket can, as long
//     as the waiting datagrams are worth no more than one burst; beyond that it is
//     dropped unanswered. So a peer that asks faster than its rate is slowed down to
//     it rather than losing requests (QEMU never re-sends one), and what is sent over
//     any T seconds stays within rate * T + burst.
// The bucket may be one the endpoint kept from an earlier peer at the same address
// (so that forgetting a peer never refills its bucket). A bad datagram closes
// (forgets) the peer. Replies leave as datagrams of at most kMaxEgdDatagramBytes,
// made only of complete replies (and lead bytes): the output buffer never holds
// more than one datagram's worth, so each flush is one datagram, and the bytes of a
// 02 NN still being filled stay behind (wiped if the peer is forgotten).
//
// A peer never sends more than its requests asked for, except for the lead, which
// only a connect endpoint (a configured, fixed peer) sets; the lead is charged to
// the bucket when the peer starts, or, if the bucket cannot pay for it yet, as soon
// as it can (the lead is not pushed before). Event-loop thread only.
class UdpPeer final : public EgdSession, public std::enable_shared_from_this<UdpPeer> {
 public:
  // Reply bytes held before the peer stops asking the FairShare for more: chosen so
  // that the whole output buffer (this plus room for two small replies) is one
  // datagram, and a flush never has to cut between replies.
  static constexpr std::size_t kOutputHighWater =
      kMaxEgdDatagramBytes - 2 * (1 + kMaxEgdRequestBytes);

  // Datagrams waiting for the rate limit, at most (besides one burst's worth).
  static constexpr std::size_t kMaxDelayedDatagrams = 256;

  enum class Verdict {
    kAnswered,     // queued (answered at once or when the entropy is there)
    kDelayed,      // over the rate for now: queued once the bucket can pay
    kIgnored,      // empty datagram, or the peer is already closed
    kRateLimited,  // over the peer's rate limit and its backlog: dropped unanswered
    kMalformed,    // bad datagram: the peer has been closed
  };

  UdpPeer(DatagramSink& sink, SessionContext& context, SessionOptions options, PeerAddress address,
          std::string name, const UdpOptions& limits, const Clock& clock,
          asio::any_io_executor executor, std::optional<TokenBucket> bucket = std::nullopt);

  // Starts the session (and the lead, if any); `on_closed` runs once, posted, after
  // Close(). `now` counts as the last time the peer was heard from.
  void Start(std::function<void()> on_closed, Clock::TimePoint now);

  // One datagram from the peer. On kMalformed, *problem says what was wrong.
  Verdict OnDatagram(std::span<const std::uint8_t> payload, Clock::TimePoint now,
                     std::string* problem);
  // The same, for a datagram already parsed with pid_reply_bytes().
  Verdict OnParsed(const EgdDatagram& datagram, Clock::TimePoint now, std::string* problem);
  // What a 04 reply takes here (for ParseEgdDatagram).
  static std::size_t PidReplyBytes();
  // The socket takes datagrams again (after DatagramSink::kWouldBlock).
  void OnWritable();
  // Queues the delayed datagrams the bucket can pay for now (a timer calls this when
  // the first of them becomes affordable).
  void ResumeDelayed(Clock::TimePoint now);
  std::size_t delayed_datagrams() const { return delayed_.size(); }
  // What the peer asked and was not answered yet, for the peer that takes its place
  // (a reload that changes the endpoint's options): the queued requests, paid for
  // already, and the datagrams waiting for the rate limit, in order.
  struct Unanswered {
    std::vector<EgdRequest> paid;
    std::vector<EgdDatagram> delayed;
    bool empty() const { return paid.empty() && delayed.empty(); }
  };
  Unanswered TakeStock() const;
  // Queues requests handed over from the peer this one replaces: paid for and counted
  // there, so neither charged nor counted again.
  void QueuePaid(const std::vector<EgdRequest>& requests);
  // Closes without a log line above debug level (expiry, floods of bad datagrams:
  // the endpoint logs those, rate-limited).
  void CloseQuietly(std::string_view reason) { CloseAt(LogLevel::kDebug, reason); }

  const PeerAddress& address() const { return address_; }
  // The peer's rate state, for the endpoint to keep once the peer is forgotten.
  const TokenBucket& bucket() const { return bucket_; }
  Clock::TimePoint last_heard() const { return last_heard_; }

 private:
  struct Delayed {
    EgdDatagram datagram;
    std::size_t cost;
  };

  void Queue(const std::vector<EgdRequest>& requests, bool counted = false);
  // Charges and starts the lead once the bucket can pay for it.
  void StartLead(Clock::TimePoint now);
  void ScheduleResume(Clock::TimePoint now);
  void Flush() override;
  bool TransportIdle() const override { return true; }
  void CloseTransport() override {
    resume_timer_.cancel();
    lead_timer_.cancel();
    if (counted_) context().counters.udp_peers--;
    counted_ = false;
  }

  DatagramSink& sink_;
  PeerAddress address_;
  const Clock& clock_;
  TokenBucket bucket_;
  std::uint64_t burst_;
  bool counted_ = false;  // in counters.udp_peers
  std::deque<Delayed> delayed_;
  std::size_t delayed_cost_ = 0;
  asio::steady_timer resume_timer_;
  asio::steady_timer lead_timer_;
  std::size_t pid_reply_bytes_;
  Clock::TimePoint last_heard_{};
  bool blocked_ = false;  // waiting for the socket to take datagrams again
  bool flushing_ = false;
  bool flush_again_ = false;
};

}  // namespace rngmux
