#include "admin/prometheus_text.h"

#include <charconv>
#include <cmath>

#include "common/version.h"

namespace rngmux {

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void PrometheusWriter::Family(std::string_view name, std::string_view type, std::string_view help) {
  text_ += "# HELP ";
  text_ += name;
  text_ += ' ';
  text_ += EscapeHelp(help);
  text_ += "\n# TYPE ";
  text_ += name;
  text_ += ' ';
  text_ += type;
  text_ += '\n';
}

void PrometheusWriter::Start(std::string_view name, const Labels& labels) {
  text_ += name;
  if (!labels.empty()) {
    text_ += '{';
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (i > 0) text_ += ',';
      text_ += labels[i].first;
      text_ += "=\"";
      text_ += EscapeLabelValue(labels[i].second);
      text_ += '"';
    }
    text_ += '}';
  }
  text_ += ' ';
}

void PrometheusWriter::Sample(std::string_view name, const Labels& labels, std::uint64_t value) {
  Start(name, labels);
  text_ += std::to_string(value);
  text_ += '\n';
}

void PrometheusWriter::Sample(std::string_view name, const Labels& labels, double value) {
  Start(name, labels);
  if (std::isnan(value)) {
    text_ += "NaN";
  } else if (std::isinf(value)) {
    text_ += value > 0 ? "+Inf" : "-Inf";
  } else if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
    text_ += std::to_string(static_cast<std::int64_t>(value));  // exact: below 2^53
  } else {
    // The shortest text that reads back as the same double.
    char number[40];
    const auto result = std::to_chars(number, number + sizeof number, value);
    text_.append(number, result.ptr);
  }
  text_ += '\n';
}

namespace {

constexpr const char* kSourceStates[] = {"serving", "standby", "retrying", "starting"};

template <typename Field>
void SourceFamily(PrometheusWriter& out, const DaemonStatus& status, const char* name,
                  const char* type, const char* help, Field field) {
  out.Family(name, type, help);
  for (const SourceSnapshot& source : status.sources) {
    out.Sample(name, {{"source", source.name}}, field(source));
  }
}

template <typename Field>
void EndpointFamily(PrometheusWriter& out, const DaemonStatus& status, const char* name,
                    const char* type, const char* help, Field field) {
  out.Family(name, type, help);
  for (const EndpointSnapshot& endpoint : status.endpoints) {
    out.Sample(name, {{"endpoint", endpoint.id}}, field(endpoint));
  }
}

}  // namespace

std::string RenderMetrics(const DaemonStatus& status) {
  PrometheusWriter out;
  out.Family("rngmux_build_info", "gauge", "Always 1; the version of the running daemon");
  out.Sample("rngmux_build_info", {{"version", kVersion}}, std::uint64_t{1});
  out.Family("rngmux_start_time_seconds", "gauge", "When the daemon started, in Unix seconds");
  out.Sample("rngmux_start_time_seconds", {}, UnixSeconds(status.started));
  out.Family("rngmux_uptime_seconds", "gauge", "Seconds since the daemon started");
  out.Sample("rngmux_uptime_seconds", {}, status.uptime_seconds);

  SourceFamily(out, status, "rngmux_source_bytes_read_total", "counter",
               "Raw bytes read from the source",
               [](const SourceSnapshot& s) { return s.bytes_read; });
  SourceFamily(out, status, "rngmux_source_bytes_accepted_total", "counter",
               "Bytes of the source that passed the health tests and entered the pool",
               [](const SourceSnapshot& s) { return s.bytes_accepted; });
  SourceFamily(out, status, "rngmux_source_health_failures_total", "counter",
               "Blocks of the source discarded by the health tests (RCT/APT, FIPS 140-2)",
               [](const SourceSnapshot& s) { return s.blocks_failed; });
  SourceFamily(out, status, "rngmux_source_fips_failures_total", "counter",
               "Blocks of the source discarded by FIPS 140-2",
               [](const SourceSnapshot& s) { return s.fips_failures; });
  SourceFamily(out, status, "rngmux_source_read_errors_total", "counter",
               "Read errors of the source", [](const SourceSnapshot& s) { return s.read_errors; });
  SourceFamily(out, status, "rngmux_source_healthy", "gauge",
               "1 when the source passed its start-up tests and has not failed since",
               [](const SourceSnapshot& s) { return std::uint64_t{s.healthy ? 1u : 0u}; });
  SourceFamily(out, status, "rngmux_source_serving", "gauge",
               "1 when the source feeds the pool now",
               [](const SourceSnapshot& s) { return std::uint64_t{s.serving ? 1u : 0u}; });
  SourceFamily(out, status, "rngmux_source_rate_bytes_per_second", "gauge",
               "Bytes the source put into the pool per second over the last sampling interval",
               [](const SourceSnapshot& s) { return s.rate_bytes_per_second; });
  out.Family("rngmux_source_state", "gauge",
             "1 for the state the source is in (serving, standby, retrying, starting)");
  for (const SourceSnapshot& source : status.sources) {
    for (const char* state : kSourceStates) {
      out.Sample("rngmux_source_state", {{"source", source.name}, {"state", state}},
                 std::uint64_t{source.state == state ? 1u : 0u});
    }
  }
  out.Family("rngmux_source_switches_total", "counter",
             "Times the serving source changed (failover)");
  out.Sample("rngmux_source_switches_total", {}, status.source_switches);
  std::uint64_t health_failures = 0;
  for (const SourceSnapshot& source : status.sources) health_failures += source.blocks_failed;
  out.Family("rngmux_health_failures_total", "counter",
             "Blocks discarded by the health tests, all sources");
  out.Sample("rngmux_health_failures_total", {}, health_failures);

  out.Family("rngmux_pool_available_bytes", "gauge", "Tested bytes waiting in the pool");
  out.Sample("rngmux_pool_available_bytes", {}, std::uint64_t{status.pool.available});
  out.Family("rngmux_pool_capacity_bytes", "gauge", "Size of the pool");
  out.Sample("rngmux_pool_capacity_bytes", {}, std::uint64_t{status.pool.capacity});
  out.Family("rngmux_pool_in_bytes_total", "counter", "Bytes the sources put into the pool");
  out.Sample("rngmux_pool_in_bytes_total", {}, status.pool.bytes_in);
  out.Family("rngmux_pool_out_bytes_total", "counter", "Bytes taken out of the pool for clients");
  out.Sample("rngmux_pool_out_bytes_total", {}, status.pool.bytes_out);
  out.Family("rngmux_pool_locked", "gauge", "1 when the pool is locked in memory");
  out.Sample("rngmux_pool_locked", {}, std::uint64_t{status.pool.locked ? 1u : 0u});

  EndpointFamily(out, status, "rngmux_endpoint_clients", "gauge",
                 "Clients connected through the endpoint now",
                 [](const EndpointSnapshot& e) { return e.clients; });
  EndpointFamily(out, status, "rngmux_endpoint_served_bytes_total", "counter",
                 "Random bytes sent through the endpoint",
                 [](const EndpointSnapshot& e) { return e.served_bytes; });
  EndpointFamily(out, status, "rngmux_endpoint_denied_connections_total", "counter",
                 "Connections the endpoint closed at once: client not allowed",
                 [](const EndpointSnapshot& e) { return e.denied; });
  EndpointFamily(out, status, "rngmux_endpoint_refused_connections_total", "counter",
                 "Connections the endpoint closed at once: --max-clients reached",
                 [](const EndpointSnapshot& e) { return e.refused; });
  EndpointFamily(out, status, "rngmux_endpoint_tls_handshake_failures_total", "counter",
                 "TLS handshakes on the endpoint that failed or timed out",
                 [](const EndpointSnapshot& e) { return e.tls_failures; });

  out.Family("rngmux_client_served_bytes", "gauge",
             "Bytes sent to the open connections of one of the busiest client identities");
  for (const ClientSnapshot& client : status.clients) {
    out.Sample("rngmux_client_served_bytes",
               {{"identity", client.identity}, {"endpoint", client.endpoint}}, client.served_bytes);
  }
  out.Family("rngmux_client_connections", "gauge",
             "Open connections of one of the busiest client identities");
  for (const ClientSnapshot& client : status.clients) {
    out.Sample("rngmux_client_connections",
               {{"identity", client.identity}, {"endpoint", client.endpoint}}, client.connections);
  }

  for (const CounterValue& counter : status.counters) {
    std::string name = std::string("rngmux_") + counter.name;
    if (!counter.gauge && !name.ends_with("_total")) name += "_total";
    out.Family(name, counter.gauge ? "gauge" : "counter", counter.help);
    out.Sample(name, {}, counter.value);
  }

  out.Family("rngmux_reloads_succeeded_total", "counter", "Reloads applied");
  out.Sample("rngmux_reloads_succeeded_total", {}, status.reload.succeeded);
  out.Family("rngmux_reloads_failed_total", "counter", "Reloads that failed and changed nothing");
  out.Sample("rngmux_reloads_failed_total", {}, status.reload.failed);
  out.Family("rngmux_last_reload_success", "gauge",
             "1 when the last reload was applied (or there was none), 0 when it failed");
  out.Sample("rngmux_last_reload_success", {}, std::uint64_t{status.reload.last_ok ? 1u : 0u});
  out.Family("rngmux_last_reload_timestamp_seconds", "gauge",
             "When the last reload was tried, in Unix seconds (0: never)");
  out.Sample("rngmux_last_reload_timestamp_seconds", {}, UnixSeconds(status.reload.last_time));
  return out.text();
}

}  // namespace rngmux
