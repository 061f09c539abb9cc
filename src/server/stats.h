#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rngmux {

class EntropyPool;
class SourceSet;

// Daemon-wide counters. Written on the event loop, read by the stats reporter.
struct ServerCounters {
  std::atomic<std::uint64_t> connections_total{0};
  std::atomic<std::uint64_t> clients{0};          // open sessions now
  std::atomic<std::uint64_t> udp_peers{0};        // of those, UDP peers: --max-clients spares them
  std::atomic<std::uint64_t> served_bytes{0};     // random bytes that left in replies
  std::atomic<std::uint64_t> requests{0};         // complete EGD requests parsed
  std::atomic<std::uint64_t> bad_requests{0};     // connections closed for a bad command
  std::atomic<std::uint64_t> queue_overflows{0};  // connections closed for too many requests
  std::atomic<std::uint64_t> entropy_offered_bytes{0};    // 0x03 payload bytes read and discarded
  std::atomic<std::uint64_t> wiped_undelivered_bytes{0};  // owed to clients gone or let go
  std::atomic<std::uint64_t> refused_connections{0};      // closed at once: --max-clients
  std::atomic<std::uint64_t> denied_connections{0};  // closed at once: not allowed on the endpoint
  std::atomic<std::uint64_t> replaced_connections{0};  // closed for a newer one: max-conns
  std::atomic<std::uint64_t> accept_failures{0};   // accept() failed (no descriptor left): retried
  std::atomic<std::uint64_t> handler_failures{0};  // out of memory in a handler, survived
  std::atomic<std::uint64_t> write_thread_sent_bytes{0};  // reply bytes sent on write threads
  // UDP: datagrams in and out, those held back by a peer's rate limit, those dropped
  // unanswered (on the wire a dropped datagram looks lost), and peers forgotten.
  std::atomic<std::uint64_t> udp_datagrams_received{0};
  std::atomic<std::uint64_t> udp_datagrams_sent{0};
  std::atomic<std::uint64_t> udp_denied_datagrams{0};        // sender not in allow=
  std::atomic<std::uint64_t> udp_delayed_datagrams{0};       // waited for the peer's rate=
  std::atomic<std::uint64_t> udp_rate_limited_datagrams{0};  // over rate= and a burst waiting
  std::atomic<std::uint64_t> udp_peer_limit_datagrams{0};    // new peer beyond peers=N
  std::atomic<std::uint64_t> udp_expired_peers{0};           // silent for idle=SECONDS
  // vhost-user devices closed for a malformed message, or for a bad ring.
  std::atomic<std::uint64_t> vhost_user_bad_messages{0};
  std::atomic<std::uint64_t> vhost_user_bad_rings{0};
  // The control socket and the metrics endpoint: peers refused (neither root nor the
  // daemon's user) and connections closed for a bad, oversized or stalled request.
  std::atomic<std::uint64_t> control_refused_peers{0};
  std::atomic<std::uint64_t> control_bad_requests{0};
  std::atomic<std::uint64_t> metrics_bad_requests{0};
  // ... and connections closed at once because as many as each serves were open.
  std::atomic<std::uint64_t> control_busy_refusals{0};
  std::atomic<std::uint64_t> metrics_busy_refusals{0};
  // TLS endpoints (both sides): handshakes done, and failed (timeouts included).
  std::atomic<std::uint64_t> tls_handshakes{0};
  std::atomic<std::uint64_t> tls_handshake_failures{0};
  std::atomic<std::uint64_t> tls_handshake_timeouts{0};
};

// One line of "key=value" pairs: what SIGUSR1 logs and tests parse.
// The first source's keys are unprefixed (source=, source_healthy=, blocks_passed=...);
// the n-th's (n >= 2) are prefixed "sourceN" (source2=, source2_healthy=,
// source2_blocks_passed=...). serving= names the source(s) serving now.
std::string FormatStats(const ServerCounters& server, const EntropyPool& pool,
                        const SourceSet& sources);

// "peer=P identity=K served_bytes=N requests=N queued=N": one client, for the SIGUSR1
// report; K is ClientIdentity::Key() ("uid:1000", "addr:10.0.0.5").
std::string FormatClientStats(const std::string& peer, const std::string& identity,
                              std::uint64_t served_bytes, std::uint64_t requests,
                              std::size_t queued_requests);

}  // namespace rngmux
