#include "server/daemon_status.h"

#include <nlohmann/json.hpp>

namespace rngmux {

std::vector<CounterValue> CounterValues(const ServerCounters& c) {
  return {
      {"connections_total", c.connections_total, "Connections accepted or made", false},
      {"clients", c.clients, "Client sessions open now", true},
      {"served_bytes", c.served_bytes, "Random bytes sent to clients", false},
      {"requests", c.requests, "Complete EGD requests parsed", false},
      {"bad_requests", c.bad_requests, "Connections closed for a malformed EGD request", false},
      {"queue_overflows", c.queue_overflows, "Connections closed for too many queued requests",
       false},
      {"entropy_offered_bytes", c.entropy_offered_bytes,
       "Bytes clients offered with EGD 0x03, read and discarded", false},
      {"wiped_undelivered_bytes", c.wiped_undelivered_bytes,
       "Bytes handed to clients that left or were let go, wiped before their socket took them",
       false},
      {"refused_connections", c.refused_connections,
       "Connections closed at once because --max-clients were connected", false},
      {"denied_connections", c.denied_connections,
       "Connections closed because the endpoint does not allow the client", false},
      {"replaced_connections", c.replaced_connections,
       "Connections closed for a newer one of the same client (max-conns)", false},
      {"accept_failures", c.accept_failures,
       "Accepts that failed (no descriptor or memory left), retried shortly", false},
      {"handler_failures", c.handler_failures, "Event handlers that ran out of memory", false},
      {"write_thread_sent_bytes", c.write_thread_sent_bytes,
       "Reply bytes (random bytes and other answers) sent on write threads", false},
      {"udp_datagrams_received", c.udp_datagrams_received, "UDP datagrams received", false},
      {"udp_datagrams_sent", c.udp_datagrams_sent, "UDP datagrams sent", false},
      {"udp_denied_datagrams", c.udp_denied_datagrams, "UDP datagrams dropped: sender not allowed",
       false},
      {"udp_delayed_datagrams", c.udp_delayed_datagrams,
       "UDP datagrams that waited for the peer's rate", false},
      {"udp_rate_limited_datagrams", c.udp_rate_limited_datagrams,
       "UDP datagrams dropped over the peer's rate", false},
      {"udp_peer_limit_datagrams", c.udp_peer_limit_datagrams,
       "UDP datagrams dropped: too many peers", false},
      {"udp_expired_peers", c.udp_expired_peers, "UDP peers forgotten after their idle time",
       false},
      {"vhost_user_bad_messages", c.vhost_user_bad_messages,
       "vhost-user devices closed for a malformed message", false},
      {"vhost_user_bad_rings", c.vhost_user_bad_rings,
       "vhost-user devices closed for a bad virtqueue", false},
      {"control_refused_peers", c.control_refused_peers,
       "Control socket connections refused: neither root nor the daemon's user", false},
      {"control_bad_requests", c.control_bad_requests,
       "Control socket connections closed for a bad, oversized or stalled request", false},
      {"metrics_bad_requests", c.metrics_bad_requests,
       "Metrics HTTP connections closed for a bad, oversized or stalled request", false},
      {"control_busy_refusals", c.control_busy_refusals,
       "Control socket connections closed at once: 16 were open", false},
      {"metrics_busy_refusals", c.metrics_busy_refusals,
       "Metrics HTTP connections closed at once: 64 were open", false},
      {"tls_handshakes", c.tls_handshakes, "TLS handshakes completed (either side)", false},
      {"tls_handshake_failures", c.tls_handshake_failures,
       "TLS handshakes that failed or timed out (either side); the log says why", false},
      {"tls_handshake_timeouts", c.tls_handshake_timeouts,
       "TLS handshakes cut off by their time limit (tls-timeout=)", false},
  };
}

double UnixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

nlohmann::ordered_json CountersToJson(const std::vector<CounterValue>& counters) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const CounterValue& counter : counters) out[counter.name] = counter.value;
  return out;
}

nlohmann::ordered_json StatusToJson(const DaemonStatus& s) {
  using nlohmann::ordered_json;
  ordered_json out;
  out["version"] = s.version;
  out["pid"] = s.pid;
  out["started"] = UnixSeconds(s.started);
  out["now"] = UnixSeconds(s.now);
  out["uptime_seconds"] = s.uptime_seconds;
  out["config_file"] = s.config_file;
  out["source_mode"] = s.source_mode;
  out["serving"] = s.serving;
  out["source_switches"] = s.source_switches;
  ordered_json sources = ordered_json::array();
  for (const SourceSnapshot& source : s.sources) {
    ordered_json j;
    j["name"] = source.name;
    j["state"] = source.state;
    j["healthy"] = source.healthy;
    j["serving"] = source.serving;
    j["bytes_read"] = source.bytes_read;
    j["bytes_accepted"] = source.bytes_accepted;
    j["rate_bytes_per_second"] = source.rate_bytes_per_second;
    j["blocks_passed"] = source.blocks_passed;
    j["blocks_failed"] = source.blocks_failed;
    j["fips_failures"] = source.fips_failures;
    j["read_errors"] = source.read_errors;
    j["last_change"] = UnixSeconds(source.last_change);
    j["last_error"] = source.last_error;
    sources.push_back(std::move(j));
  }
  out["sources"] = std::move(sources);
  out["pool"] = {{"available", s.pool.available},
                 {"capacity", s.pool.capacity},
                 {"bytes_in", s.pool.bytes_in},
                 {"bytes_out", s.pool.bytes_out},
                 {"locked", s.pool.locked}};
  ordered_json endpoints = ordered_json::array();
  for (const EndpointSnapshot& endpoint : s.endpoints) {
    endpoints.push_back({{"id", endpoint.id},
                         {"address", endpoint.address},
                         {"clients", endpoint.clients},
                         {"served_bytes", endpoint.served_bytes},
                         {"denied", endpoint.denied},
                         {"refused", endpoint.refused},
                         {"tls_failures", endpoint.tls_failures}});
  }
  out["endpoints"] = std::move(endpoints);
  ordered_json clients = ordered_json::array();
  for (const ClientSnapshot& client : s.clients) {
    clients.push_back({{"identity", client.identity},
                       {"endpoint", client.endpoint},
                       {"connections", client.connections},
                       {"served_bytes", client.served_bytes}});
  }
  out["clients"] = std::move(clients);
  out["client_groups"] = s.client_groups;
  out["reload"] = {{"succeeded", s.reload.succeeded},
                   {"failed", s.reload.failed},
                   {"last_ok", s.reload.last_ok},
                   {"last_time", UnixSeconds(s.reload.last_time)},
                   {"last_message", s.reload.last_message}};
  out["counters"] = CountersToJson(s.counters);
  return out;
}

void RateTracker::Sample(std::chrono::steady_clock::time_point now, std::uint64_t total) {
  if (sampled_ && now > last_time_) {
    const double seconds = std::chrono::duration<double>(now - last_time_).count();
    // A total that went down (a source replaced by a reload) restarts the count.
    rate_ = total >= last_total_ ? static_cast<double>(total - last_total_) / seconds : 0;
  }
  sampled_ = true;
  last_time_ = now;
  last_total_ = total;
}

}  // namespace rngmux
