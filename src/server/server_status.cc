// Server's view from outside: the status snapshot, the control socket's replies, the
// metrics endpoint, and the timer that samples source rates for them.

#include <unistd.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "admin/control_server.h"
#include "admin/metrics_server.h"
#include "admin/prometheus_text.h"
#include "common/log.h"
#include "common/version.h"
#include "server/server.h"

namespace rngmux {
namespace {

std::string Dump(const nlohmann::ordered_json& json) {
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// "stats: a=1 b=x ..." (FormatStats) as an object; numbers stay numbers.
nlohmann::ordered_json StatsLineToJson(const std::string& line) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  std::size_t start = line.find(' ');
  while (start != std::string::npos) {
    const std::size_t end = line.find(' ', start + 1);
    const std::string pair =
        line.substr(start + 1, end == std::string::npos ? end : end - start - 1);
    start = end;
    const std::size_t eq = pair.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = pair.substr(0, eq);
    const std::string value = pair.substr(eq + 1);
    const bool number =
        !value.empty() && value.size() < 20 &&
        std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (number) {
      out[key] = std::stoull(value);
    } else {
      out[key] = value;
    }
  }
  return out;
}

}  // namespace

Status Server::OpenAdmin() {
  if (!config_.control_path.empty()) {
    auto control = ControlServer::Open(
        io_, config_.control_path, [this](ControlCommand command) { return ControlReply(command); },
        counters_);
    if (!control.ok()) return control.status();
    control_ = std::move(control).value();
  }
  if (!config_.metrics_address.empty()) {
    auto address = ParseMetricsAddress(config_.metrics_address);
    if (!address.ok()) return address.status();
    auto metrics = MetricsServer::Open(
        io_, *address, [this] { return RenderMetrics(CollectStatus()); }, counters_);
    if (!metrics.ok()) return metrics.status();
    metrics_ = std::move(metrics).value();
  }
  return Status::Ok();
}

void Server::StartAdmin() {
  started_ = std::chrono::system_clock::now();
  started_steady_ = std::chrono::steady_clock::now();
  SampleSources();
  if (control_) {
    control_->Start();
    LOG_INFO("control socket at ", control_->path());
  }
  if (metrics_) {
    metrics_->Start();
    LOG_INFO("metrics at http://", metrics_->bound_address().substr(4), "/metrics");
    if (metrics_->bound_address().rfind("tcp:127.", 0) != 0 &&
        metrics_->bound_address().rfind("tcp:[::1]", 0) != 0) {
      LOG_WARNING("metrics are served on a non-loopback address (", metrics_->bound_address(),
                  "): anyone who can reach it can read them");
    }
  }
}

void Server::StopAdmin() {
  sample_timer_.cancel();
  if (control_) control_->Stop();
  if (metrics_) metrics_->Stop();
}

void Server::SampleSources() {
  const auto now = std::chrono::steady_clock::now();
  const auto wall = std::chrono::system_clock::now();
  source_samples_.resize(sources_->size());
  for (std::size_t i = 0; i < sources_->size(); ++i) {
    const SourceRunner& runner = sources_->runner(i);
    SourceSample& sample = source_samples_[i];
    const std::string state = sources_->State(i);
    if (sample.name != runner.name()) {
      // A reload put another source at this place: its history starts now.
      sample = SourceSample{};
      sample.name = runner.name();
    } else if (sample.state != state) {
      sample.last_change = wall;
    }
    sample.state = state;
    sample.rate.Sample(now, runner.counters().bytes_accepted);
  }
  sample_timer_.expires_after(kSampleInterval);
  sample_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec && !shutting_down_) SampleSources();
  });
}

DaemonStatus Server::CollectStatus() const {
  DaemonStatus status;
  status.version = kVersion;
  status.pid = static_cast<long>(getpid());
  status.started = started_;
  status.now = std::chrono::system_clock::now();
  status.uptime_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_steady_).count();
  status.config_file = config_.config_file;
  status.source_mode = sources_->Describe();
  status.serving = sources_->Serving();
  status.source_switches = sources_->switches();
  for (std::size_t i = 0; i < sources_->size(); ++i) {
    const SourceRunner& runner = sources_->runner(i);
    const SourceCounters& c = runner.counters();
    SourceSnapshot source;
    source.name = runner.name();
    source.state = sources_->State(i);
    source.healthy = c.healthy;
    source.serving = source.state == "serving";
    source.bytes_read = c.bytes_read;
    source.bytes_accepted = c.bytes_accepted;
    source.blocks_passed = c.blocks_passed;
    source.blocks_failed = c.blocks_failed;
    source.fips_failures = c.fips_failures;
    source.read_errors = c.read_errors;
    source.last_error = runner.last_error();
    if (i < source_samples_.size() && source_samples_[i].name == source.name) {
      source.rate_bytes_per_second = source_samples_[i].rate.rate();
      source.last_change = source_samples_[i].last_change;
    }
    status.sources.push_back(std::move(source));
  }
  status.pool.available = pool_.Available();
  status.pool.capacity = pool_.capacity();
  status.pool.bytes_in = pool_.bytes_in();
  status.pool.bytes_out = pool_.bytes_out();
  status.pool.locked = pool_.memory_locked();

  // Clients by endpoint and identity; endpoints' live bytes.
  std::map<std::pair<std::string, std::string>, ClientSnapshot> groups;
  std::map<std::string, EndpointSnapshot> live;
  auto count = [&](const std::string& endpoint_id, const std::string& identity,
                   std::uint64_t served) {
    ClientSnapshot& group = groups[{endpoint_id, identity}];
    group.endpoint = endpoint_id;
    group.identity = identity;
    group.connections++;
    group.served_bytes += served;
    EndpointSnapshot& endpoint = live[endpoint_id];
    endpoint.clients++;
    endpoint.served_bytes += served;
  };
  for (const auto& [key, session] : sessions_) {
    auto it = session_endpoints_.find(key);
    if (it == session_endpoints_.end()) continue;
    if (session->closed()) {
      // Gone, but not yet moved to endpoint_totals_: its bytes still count.
      live[it->second].served_bytes += session->served_bytes();
      continue;
    }
    count(it->second, session->identity().Key(), session->served_bytes());
  }
  for (const auto& [key, entry] : vhost_devices_) {
    count(entry.endpoint_id, entry.identity, entry.device->served_bytes());
  }
  for (const auto& udp : udp_endpoints_) {
    std::vector<const EgdSession*> peers;
    udp->AppendPeers(&peers);
    for (const EgdSession* peer : peers) count(udp->spec().id, peer->identity().Key(), 0);
  }

  for (const EndpointSpec& spec : config_.endpoints) {
    EndpointSnapshot endpoint;
    endpoint.id = spec.id;
    endpoint.address = spec.Address();
    for (const auto& listener : listeners_) {
      if (listener->spec().id == spec.id) endpoint.address = listener->bound_address();
    }
    if (auto it = live.find(spec.id); it != live.end()) {
      endpoint.clients = it->second.clients;
      endpoint.served_bytes = it->second.served_bytes;
    }
    for (const auto& udp : udp_endpoints_) {
      if (udp->spec().id == spec.id) {
        endpoint.address = udp->spec().Address();
        endpoint.served_bytes = udp->served_bytes();
      }
    }
    if (auto it = endpoint_totals_.find(spec.id); it != endpoint_totals_.end()) {
      endpoint.served_bytes += it->second.served_bytes;
      endpoint.denied = it->second.denied;
      endpoint.tls_failures = it->second.tls_failures;
      endpoint.refused = it->second.refused;
    }
    status.endpoints.push_back(std::move(endpoint));
  }
  // UDP peers' own bytes (counted as 0 above for the endpoint's live sum).
  for (const auto& udp : udp_endpoints_) {
    std::vector<const EgdSession*> peers;
    udp->AppendPeers(&peers);
    for (const EgdSession* peer : peers) {
      groups[{udp->spec().id, peer->identity().Key()}].served_bytes += peer->served_bytes();
    }
  }

  status.client_groups = groups.size();
  for (auto& [key, group] : groups) status.clients.push_back(std::move(group));
  const std::size_t listed = std::min(status.clients.size(), DaemonStatus::kMaxListedClients);
  std::partial_sort(status.clients.begin(),
                    status.clients.begin() + static_cast<std::ptrdiff_t>(listed),
                    status.clients.end(), [](const ClientSnapshot& a, const ClientSnapshot& b) {
                      return a.served_bytes > b.served_bytes;
                    });
  status.clients.resize(listed);
  status.reload = reload_record_;
  status.counters = CounterValues(counters_);
  return status;
}

std::string Server::ControlReply(ControlCommand command) {
  nlohmann::ordered_json reply;
  switch (command) {
    case ControlCommand::kStatus:
      reply["ok"] = true;
      reply["status"] = StatusToJson(CollectStatus());
      break;
    case ControlCommand::kStats: {
      reply["ok"] = true;
      nlohmann::ordered_json stats = StatsLineToJson(FormatStats(counters_, pool_, *sources_));
      stats["control_refused_peers"] = counters_.control_refused_peers.load();
      stats["control_bad_requests"] = counters_.control_bad_requests.load();
      stats["metrics_bad_requests"] = counters_.metrics_bad_requests.load();
      stats["control_busy_refusals"] = counters_.control_busy_refusals.load();
      stats["metrics_busy_refusals"] = counters_.metrics_busy_refusals.load();
      reply["stats"] = std::move(stats);
      break;
    }
    case ControlCommand::kReload: {
      LOG_INFO("reload requested on the control socket");
      const Status reloaded = Reload();
      reply["ok"] = reloaded.ok();
      if (reloaded.ok()) {
        reply["message"] = reload_record_.last_message;
      } else {
        reply["error"] = reloaded.message();
      }
      break;
    }
  }
  return Dump(reply);
}

}  // namespace rngmux
