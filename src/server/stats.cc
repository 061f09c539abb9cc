#include "server/stats.h"

#include <sstream>

#include "pool/entropy_pool.h"
#include "sources/source_runner.h"

namespace rngmux {

std::string FormatStats(const ServerCounters& server, const EntropyPool& pool,
                        const std::vector<const SourceRunner*>& sources) {
  std::ostringstream out;
  out << "stats:";
  for (const SourceRunner* runner : sources) {
    const SourceCounters& c = runner->counters();
    out << " source=" << runner->name() << " source_healthy=" << (c.healthy ? 1 : 0)
        << " source_bytes_read=" << c.bytes_read << " source_bytes_accepted=" << c.bytes_accepted
        << " blocks_passed=" << c.blocks_passed << " blocks_failed=" << c.blocks_failed
        << " startup_blocks=" << c.startup_blocks << " read_errors=" << c.read_errors;
  }
  out << " pool=" << pool.Available() << "/" << pool.capacity()
      << " pool_locked=" << (pool.memory_locked() ? 1 : 0) << " clients=" << server.clients
      << " connections_total=" << server.connections_total
      << " served_bytes=" << server.served_bytes << " requests=" << server.requests
      << " bad_requests=" << server.bad_requests << " queue_overflows=" << server.queue_overflows
      << " entropy_offered_bytes=" << server.entropy_offered_bytes
      << " wiped_undelivered_bytes=" << server.wiped_undelivered_bytes
      << " refused_connections=" << server.refused_connections
      << " udp_datagrams_received=" << server.udp_datagrams_received
      << " udp_datagrams_sent=" << server.udp_datagrams_sent
      << " udp_denied_datagrams=" << server.udp_denied_datagrams
      << " udp_delayed_datagrams=" << server.udp_delayed_datagrams
      << " udp_rate_limited_datagrams=" << server.udp_rate_limited_datagrams
      << " udp_peer_limit_datagrams=" << server.udp_peer_limit_datagrams
      << " udp_expired_peers=" << server.udp_expired_peers;
  return out.str();
}

}  // namespace rngmux
