// Server::Reload: reads the configuration again and applies the difference, keeping
// whatever did not change running (endpoints, their clients and what they are owed,
// sources and their streams, the pool).

#include <sys/resource.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/log.h"
#include "server/server.h"

namespace rngmux {
namespace {

// How long a stopped endpoint object is kept: its cancelled handlers are queued when
// it stops, so this only has to outlast one turn of the loop; it is generous.
constexpr std::chrono::seconds kRetireDelay{30};

std::string Plural(std::size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string Join(const std::vector<std::string>& parts, const char* separator) {
  std::string out;
  for (const std::string& part : parts) out += (out.empty() ? "" : separator) + part;
  return out;
}

// The first endpoint id given twice, or "".
std::string DuplicateEndpoint(const std::vector<EndpointSpec>& endpoints) {
  std::set<std::string> seen;
  for (const EndpointSpec& endpoint : endpoints) {
    if (!seen.insert(endpoint.id).second) return endpoint.id;
  }
  return "";
}

template <typename T>
T* FindById(const std::vector<std::unique_ptr<T>>& objects, const std::string& id) {
  for (const auto& object : objects) {
    if (object->spec().id == id) return object.get();
  }
  return nullptr;
}

// Moves the objects whose id is in `ids` from `from` to `to`.
template <typename T>
void MoveById(std::vector<std::unique_ptr<T>>& from, const std::set<std::string>& ids,
              std::vector<std::unique_ptr<T>>& to) {
  for (auto it = from.begin(); it != from.end();) {
    if (ids.count((*it)->spec().id) != 0) {
      to.push_back(std::move(*it));
      it = from.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace

Status IdentifyEndpoints(std::vector<EndpointSpec>& endpoints) {
  std::map<std::string, std::size_t> any_port_seen;
  for (EndpointSpec& endpoint : endpoints) {
    if (!endpoint.BindsAnyPort()) continue;
    const std::size_t n = ++any_port_seen[endpoint.id];
    if (n > 1) endpoint.id += " #" + std::to_string(n);
  }
  const std::string duplicate = DuplicateEndpoint(endpoints);
  if (duplicate.empty()) return Status::Ok();
  return Status::Error("endpoint \"" + duplicate + "\" is given twice");
}

Status Server::Reload() {
  notifier_.Reloading();
  Status status = ReadAndApply();
  notifier_.Reloaded();
  return status;
}

Status Server::ReadAndApply() {
  LOG_INFO("reloading the configuration",
           config_.config_file.empty() ? "" : " from " + config_.config_file);
  // A server given no way to read its configuration again (no SetReloader) fails the
  // reload, shown as such in status, rather than one that silently did nothing.
  Result<ServeConfig> next =
      reloader_ ? reloader_()
                : Result<ServeConfig>(Status::Error("no configuration to read again"));
  reload_record_.last_time = std::chrono::system_clock::now();
  Result<std::string> applied =
      next.ok() ? Apply(std::move(next).value()) : Result<std::string>(next.status());
  if (!applied.ok()) {
    reload_record_.failed++;
    reload_record_.last_ok = false;
    reload_record_.last_message = applied.status().message();
    LOG_ERROR("reload failed, the running configuration stays: ", applied.status().message());
    return applied.status();
  }
  reload_record_.succeeded++;
  reload_record_.last_ok = true;
  reload_record_.last_message = *applied;
  LOG_INFO("reloaded: ", *applied);
  return Status::Ok();
}

Result<std::string> Server::Apply(ServeConfig next) {
  // Everything that can fail comes first; nothing running changes until it is done.
  LogLevel level;
  if (!ParseLogLevel(next.log_level, &level)) {
    return Status::Error("log-level \"" + next.log_level +
                         "\": expected debug, info, warning or error");
  }
  if (Status adopted = AddInheritedEndpoints(next); !adopted.ok()) return adopted;
  if (Status distinct = IdentifyEndpoints(next.endpoints); !distinct.ok()) return distinct;
  std::vector<std::string> restart_needed;
  // Start-up settings: a changed one is kept as it runs until the next restart.
  auto keep = [&](auto ServeConfig::*member, const char* key) {
    if (next.*member != config_.*member) {
      restart_needed.push_back(key);
      next.*member = config_.*member;
    }
  };
  keep(&ServeConfig::pool_bytes, "pool-size");
  keep(&ServeConfig::write_threads, "write-threads");
  keep(&ServeConfig::control_path, "control");
  keep(&ServeConfig::metrics_address, "metrics");
  keep(&ServeConfig::user, "user");
  keep(&ServeConfig::group, "group");
  keep(&ServeConfig::seccomp, "seccomp");

  // Sources: new drivers are made now; running ones that stay configured keep theirs.
  const bool sources_changed = next.sources != config_.sources ||
                               next.source_mode != config_.source_mode ||
                               next.min_mix_sources != config_.min_mix_sources ||
                               next.health_alpha_log2 != config_.health_alpha_log2;
  std::optional<SourcePlan> source_plan;
  if (sources_changed) {
    auto plan = PlanSources(next, config_.sources);
    if (!plan.ok()) return plan.status();
    source_plan = std::move(plan).value();
  }

  // Endpoints, matched by role and address: new ones are bound before anything else
  // changes, so one that cannot be bound leaves everything as it was.
  std::set<std::string> next_ids;
  std::vector<const EndpointSpec*> added;
  std::vector<const EndpointSpec*> changed;
  for (const EndpointSpec& endpoint : next.endpoints) {
    next_ids.insert(endpoint.id);
    const EndpointSpec* running = nullptr;
    for (const EndpointSpec& old : config_.endpoints) {
      if (old.id == endpoint.id) running = &old;
    }
    if (running == nullptr) {
      added.push_back(&endpoint);
    } else if (running->text != endpoint.text) {
      changed.push_back(&endpoint);
    }
  }
  std::set<std::string> removed;
  for (const EndpointSpec& old : config_.endpoints) {
    if (next_ids.count(old.id) == 0) removed.insert(old.id);
  }
  // TLS endpoints that stay read their certificates, keys, CAs and CRLs again: a
  // renewed certificate applies without a restart, and a broken file changes nothing.
  std::map<std::string, std::shared_ptr<const TlsContext>> tls_contexts;
  for (const EndpointSpec& endpoint : next.endpoints) {
    if (std::find(added.begin(), added.end(), &endpoint) != added.end()) continue;
    auto tls = MakeEndpointTlsContext(endpoint);
    if (!tls.ok()) return tls.status();
    tls_contexts[endpoint.id] = std::move(tls).value();
  }
  EndpointObjects opened;
  for (const EndpointSpec* endpoint : added) {
    if (Status status = OpenEndpoint(*endpoint, opened); !status.ok()) {
      return status;  // `opened` (bound, never started) closes on the way out
    }
  }

  // From here on the new configuration is applied.
  std::vector<std::string> changes;
  std::vector<std::string> errors;
  std::set<std::string> not_running;  // changed endpoints that could not be reopened
  if (source_plan) {
    sources_->Stop();
    std::size_t kept = 0;
    for (const auto& from : source_plan->kept_from) kept += from.has_value() ? 1 : 0;
    std::unique_ptr<SourceSet> replaced = std::move(sources_);
    sources_ = BuildSources(next, std::move(*source_plan), replaced.get());
    replaced.reset();
    sources_->Start();
    changes.push_back("sources " + Join(next.sources, ", ") + " (" + std::to_string(kept) +
                      " kept running)");
  }

  EndpointObjects retired;
  MoveById(listeners_, removed, retired.listeners);
  MoveById(connectors_, removed, retired.connectors);
  MoveById(udp_endpoints_, removed, retired.udp);
  for (auto& listener : retired.listeners) listener->Stop();
  for (auto& connector : retired.connectors) connector->Stop();
  for (auto& udp : retired.udp) udp->Stop();
  for (const std::string& id : removed) {
    CloseEndpointClients(id, "its endpoint was removed by a reload");
    LOG_INFO("endpoint ", id, " removed");
  }

  for (const EndpointSpec* endpoint : changed) {
    if (Listener* listener = FindById(listeners_, endpoint->id)) {
      if (listener->spec().unix_mode != endpoint->unix_mode) {
        LOG_WARNING("endpoint ", endpoint->id, ": a changed mode= applies from the next restart");
      }
      listener->UpdateSpec(*endpoint);
      ApplyToClients(*endpoint);
    } else if (Connector* connector = FindById(connectors_, endpoint->id)) {
      connector->UpdateSpec(*endpoint);
      ApplyToClients(*endpoint);
    } else if (UdpEndpoint* udp = FindById(udp_endpoints_, endpoint->id)) {
      // A UDP endpoint's options live in its peer table: it starts afresh, on the same
      // socket unless local= changed. Closing it would answer datagrams that come
      // meanwhile with "port unreachable", after which QEMU's UDP chardev reads nothing
      // more. What its peers asked and were not answered yet is asked again of the new
      // one (QEMU never sends a request twice); the reply bytes being filled for them
      // are wiped, as when a peer goes idle.
      const EndpointSpec* running = nullptr;
      for (const EndpointSpec& old : config_.endpoints) {
        if (old.id == endpoint->id) running = &old;
      }
      const bool same_socket =
          running != nullptr && (endpoint->role == EndpointRole::kListen ||
                                 running->LocalAddress() == endpoint->LocalAddress());
      // A connect endpoint sending elsewhere now has another peer: nothing to carry
      // (nor is anything carried from a socket that is not handed over).
      const bool same_peers = running != nullptr && (endpoint->role == EndpointRole::kListen ||
                                                     running->Address() == endpoint->Address());
      std::set<std::string> one = {endpoint->id};
      MoveById(udp_endpoints_, one, retired.udp);
      EndpointObjects reopened;
      Status status = Status::Ok();
      UdpEndpoint::Handover handover;
      if (same_socket) handover = udp->ReleaseSocket();
      auto adopted = handover.fd >= 0
                         ? UdpEndpoint::Adopt(io_, *endpoint, context_, handover.fd)
                         : Result<std::unique_ptr<UdpEndpoint>>(Status::Error("no socket"));
      if (adopted.ok()) {
        WarnIfUdpAnswersLoopbackOnly(*endpoint);
        reopened.udp.push_back(std::move(adopted).value());
      } else {
        // Not handed over (or Adopt closed it): bind a new one.
        udp->Stop();
        status = OpenEndpoint(*endpoint, reopened);
      }
      if (!status.ok()) {
        errors.push_back(status.message());
        LOG_ERROR("endpoint ", endpoint->id, " could not be reopened: ", status.message());
        not_running.insert(endpoint->id);
        continue;
      }
      for (auto& object : reopened.udp) {
        object->Start();
        if (same_peers && !handover.peers.empty()) {
          std::size_t asked = 0;
          std::size_t taken = 0;
          for (const UdpEndpoint::HandedPeer& peer : handover.peers) {
            asked += peer.unanswered.paid.size();
            for (const EgdDatagram& datagram : peer.unanswered.delayed) {
              asked += datagram.requests.size();
            }
            taken += object->Resume(peer);
          }
          LOG_INFO("endpoint ", endpoint->id, ": ", taken, " of ", asked,
                   " unanswered requests of ", handover.peers.size(),
                   handover.peers.size() == 1 ? " peer" : " peers",
                   " carried over to its new settings");
        }
        udp_endpoints_.push_back(std::move(object));
      }
    }
    LOG_INFO("endpoint ", endpoint->id, " changed: ", endpoint->Describe());
  }

  for (const auto& [id, tls] : tls_contexts) {
    if (Listener* listener = FindById(listeners_, id)) listener->SetTlsContext(tls);
    if (Connector* connector = FindById(connectors_, id)) connector->SetTlsContext(tls);
    if (tls) LOG_INFO("endpoint ", id, ": TLS files read again");
  }
  for (auto& listener : opened.listeners) {
    listener->Start();
    LOG_INFO("listening on ", listener->bound_address());
    LogQemuArguments(listener->spec(), false);
    listeners_.push_back(std::move(listener));
  }
  for (auto& connector : opened.connectors) {
    connector->Start();
    LogQemuArguments(connector->spec(), false);
    connectors_.push_back(std::move(connector));
  }
  for (auto& udp : opened.udp) {
    udp->Start();
    LOG_INFO("listening on ", udp->spec().Address(), " (answering ",
             udp->spec().access.allow.ToString(), ")");
    udp_endpoints_.push_back(std::move(udp));
  }
  Retire(std::move(retired));
  if (!added.empty()) changes.push_back(Plural(added.size(), "endpoint", "endpoints") + " added");
  if (!removed.empty()) {
    changes.push_back(Plural(removed.size(), "endpoint", "endpoints") + " removed");
  }
  if (!changed.empty()) {
    changes.push_back(Plural(changed.size(), "endpoint", "endpoints") + " changed");
  }

  if (next.log_level != config_.log_level) changes.push_back("log level " + next.log_level);
  SetLogLevel(level);
  if (next.max_clients != config_.max_clients) {
    changes.push_back("max-clients " + std::to_string(next.max_clients));
  }
  if (next.max_queued_requests != config_.max_queued_requests) {
    changes.push_back("max-queued-requests " + std::to_string(next.max_queued_requests));
  }
  context_.max_queued_requests = next.max_queued_requests;
  if (next.max_clients > config_.max_clients) {
    RaiseDescriptorLimit(next.max_clients, config_.write_threads);
  }
  // What is not running is not configured: a later reload that gives it again opens it.
  std::erase_if(next.endpoints,
                [&](const EndpointSpec& endpoint) { return not_running.count(endpoint.id) != 0; });
  next.print_qemu_arguments = config_.print_qemu_arguments;
  config_ = std::move(next);
  RequestPump();

  std::string summary = changes.empty() ? "nothing changed" : Join(changes, "; ");
  if (!restart_needed.empty()) {
    summary += "; " + Join(restart_needed, ", ") + " changed: takes effect at the next restart";
    LOG_WARNING("reload: ", Join(restart_needed, ", "),
                " cannot change while running; the new value takes effect at the next restart");
  }
  if (!errors.empty()) return Status::Error("applied with errors: " + Join(errors, "; "));
  return summary;
}

std::vector<std::shared_ptr<Session>> Server::SessionsOf(const std::string& endpoint_id) {
  std::vector<std::shared_ptr<Session>> sessions;
  for (auto& [key, tenant] : tenants_) {
    if (tenant.endpoint_id != endpoint_id) continue;
    for (const auto& weak : tenant.connections) {
      if (auto session = weak.lock()) sessions.push_back(std::move(session));
    }
  }
  return sessions;
}

void Server::CloseEndpointClients(const std::string& endpoint_id, const std::string& reason) {
  for (auto& session : SessionsOf(endpoint_id)) session->Close(reason);
  std::vector<std::shared_ptr<VhostUserConnection>> devices;
  for (auto& [key, entry] : vhost_devices_) {
    if (entry.endpoint_id == endpoint_id) devices.push_back(entry.device);
  }
  for (auto& device : devices) device->Close(reason);
}

void Server::ApplyToClients(const EndpointSpec& endpoint) {
  std::set<ShareGroup*> updated;
  for (auto& session : SessionsOf(endpoint.id)) {
    // TLS switched on (or off) at the same address: a connection made the other way
    // goes; a client reconnects (a connector at once) the way the endpoint now speaks.
    if (session->identity().tls != endpoint.tls.enabled) {
      session->Close(std::string("the endpoint ") +
                         (endpoint.tls.enabled ? "requires TLS" : "no longer speaks TLS") +
                         " after a reload",
                     true);
      continue;
    }
    if (endpoint.role == EndpointRole::kListen) {
      if (std::optional<std::string> why = AccessDenied(endpoint, session->identity())) {
        counters_.denied_connections++;
        session->Close("no longer allowed on " + endpoint.Address() + " after a reload: " + *why,
                       true);
        continue;
      }
    }
    const std::shared_ptr<ShareGroup>& group = session->share_group();
    if (group && updated.insert(group.get()).second) group->SetLimits(LimitsFor(endpoint));
  }
}

void Server::Retire(EndpointObjects retired) {
  if (retired.listeners.empty() && retired.connectors.empty() && retired.udp.empty()) return;
  retired_.push_back({std::move(retired), std::chrono::steady_clock::now() + kRetireDelay});
  if (retired_.size() == 1) FreeRetiredLater();
}

void Server::FreeRetiredLater() {
  retire_timer_.expires_at(retired_.front().free_at);
  retire_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;  // shutting down: the server's destructor frees them
    const auto now = std::chrono::steady_clock::now();
    while (!retired_.empty() && retired_.front().free_at <= now) retired_.pop_front();
    if (!retired_.empty()) FreeRetiredLater();
  });
}

}  // namespace rngmux
