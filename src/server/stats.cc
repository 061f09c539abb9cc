#include "server/stats.h"

#include <sstream>

#include "pool/entropy_pool.h"
#include "sources/source_set.h"

namespace rngmux {

std::string FormatStats(const ServerCounters& server, const EntropyPool& pool,
                        const SourceSet& sources) {
  std::ostringstream out;
  out << "stats:";
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const SourceRunner& runner = sources.runner(i);
    const SourceCounters& c = runner.counters();
    const std::string source = i == 0 ? "source" : "source" + std::to_string(i + 1);
    const std::string plain = i == 0 ? "" : source + "_";
    out << " " << source << "=" << runner.name() << " " << source << "_state=" << sources.State(i)
        << " " << source << "_healthy=" << (c.healthy ? 1 : 0) << " " << source
        << "_bytes_read=" << c.bytes_read << " " << source << "_bytes_accepted=" << c.bytes_accepted
        << " " << plain << "blocks_passed=" << c.blocks_passed << " " << plain
        << "blocks_failed=" << c.blocks_failed << " " << plain
        << "fips_failures=" << c.fips_failures << " " << plain
        << "startup_blocks=" << c.startup_blocks << " " << plain << "read_errors=" << c.read_errors;
    for (const auto& [key, value] : runner.extra_stats())
      out << ' ' << plain << key << '=' << value;
  }
  out << " serving=" << sources.Serving() << " source_switches=" << sources.switches();
  if (sources.mode() == SourceMode::kMix) out << " mix_degraded=" << (sources.Degraded() ? 1 : 0);
  out << " pool=" << pool.Available() << "/" << pool.capacity()
      << " pool_locked=" << (pool.memory_locked() ? 1 : 0) << " clients=" << server.clients
      << " connections_total=" << server.connections_total
      << " served_bytes=" << server.served_bytes << " requests=" << server.requests
      << " bad_requests=" << server.bad_requests << " queue_overflows=" << server.queue_overflows
      << " entropy_offered_bytes=" << server.entropy_offered_bytes
      << " wiped_undelivered_bytes=" << server.wiped_undelivered_bytes
      << " refused_connections=" << server.refused_connections
      << " denied_connections=" << server.denied_connections
      << " replaced_connections=" << server.replaced_connections
      << " accept_failures=" << server.accept_failures
      << " handler_failures=" << server.handler_failures
      << " write_thread_sent_bytes=" << server.write_thread_sent_bytes
      << " udp_datagrams_received=" << server.udp_datagrams_received
      << " udp_datagrams_sent=" << server.udp_datagrams_sent
      << " udp_denied_datagrams=" << server.udp_denied_datagrams
      << " udp_delayed_datagrams=" << server.udp_delayed_datagrams
      << " udp_rate_limited_datagrams=" << server.udp_rate_limited_datagrams
      << " udp_peer_limit_datagrams=" << server.udp_peer_limit_datagrams
      << " udp_expired_peers=" << server.udp_expired_peers
      << " vhost_user_bad_messages=" << server.vhost_user_bad_messages
      << " vhost_user_bad_rings=" << server.vhost_user_bad_rings
      << " tls_handshakes=" << server.tls_handshakes
      << " tls_handshake_failures=" << server.tls_handshake_failures
      << " tls_handshake_timeouts=" << server.tls_handshake_timeouts;
  return out.str();
}

std::string FormatClientStats(const std::string& peer, const std::string& identity,
                              std::uint64_t served_bytes, std::uint64_t requests,
                              std::size_t queued_requests) {
  std::ostringstream out;
  out << "peer=" << peer << " identity=" << identity << " served_bytes=" << served_bytes
      << " requests=" << requests << " queued=" << queued_requests;
  return out.str();
}

}  // namespace rngmux
