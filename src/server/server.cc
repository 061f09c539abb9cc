#include "server/server.h"

#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <asio/post.hpp>
#include <csignal>
#include <system_error>

#include "admin/control_server.h"
#include "admin/metrics_server.h"
#include "common/event_loop.h"
#include "common/log.h"
#include "endpoint/qemu_chardev.h"

namespace rngmux {
// Every client is a descriptor (two with write threads); lift the soft limit to the
// hard one so that --max-clients, not a default of 1024, is what bounds them.
void RaiseDescriptorLimit(std::size_t max_clients, std::size_t write_threads) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  constexpr rlim_t kSpareDescriptors = 64;
  const std::size_t per_client = write_threads > 0 ? 2 : 1;
  if (limit.rlim_cur != RLIM_INFINITY &&
      limit.rlim_cur < per_client * max_clients + kSpareDescriptors) {
    LOG_WARNING("open file limit ", limit.rlim_cur, " is below ", per_client == 2 ? "2 x " : "",
                "--max-clients ", max_clients, " + ", kSpareDescriptors,
                per_client == 2 ? " (write threads: two per client)" : "",
                "; connections beyond it will fail to be accepted");
  }
}

Server::Server(ServeConfig config)
    : config_(std::move(config)),
      pool_(config_.pool_bytes),
      fair_share_(pool_),
      context_{
          pool_, fair_share_, counters_, [this] { RequestPump(); }, config_.max_queued_requests,
          8,     &client_log_},
      work_(asio::make_work_guard(io_)),
      signals_(io_, {SIGHUP, SIGINT, SIGTERM, SIGUSR1}),
      reserve_timer_(io_) {}

Server::~Server() {
  if (sources_) sources_->Stop();
}

Result<Server::SourcePlan> Server::PlanSources(const ServeConfig& config,
                                               const std::vector<std::string>& running) {
  SourceFactoryContext factory_context;
  factory_context.allow_test_source = config.allow_test_source;
  factory_context.open_file = open_file_;
  factory_context.worker_seccomp = SeccompModeName(config.seccomp);
  SourcePlan plan;
  std::vector<bool> taken(running.size(), false);
  for (const std::string& text : config.sources) {
    auto spec = ValidateSourceSpec(text);  // validated by the config already: no error
    if (!spec.ok()) return spec.status();
    auto fips = ParseFipsOption(*spec);
    if (!fips.ok()) return fips.status();
    SourceRunner::Options runner_options;
    runner_options.alpha_log2 = config.health_alpha_log2;
    runner_options.fips = *fips;
    plan.options.push_back(runner_options);
    // A source that runs with the same spec keeps its driver: the device stays open
    // and its stream goes on where it was.
    std::optional<std::size_t> kept;
    for (std::size_t i = 0; i < running.size() && !kept; ++i) {
      if (!taken[i] && running[i] == text) kept = i;
    }
    if (kept) {
      taken[*kept] = true;
      plan.kept_from.push_back(kept);
      plan.created.push_back(nullptr);
      continue;
    }
    auto source = CreateSource(text, factory_context);
    if (!source.ok()) return source.status();
    if (*fips && (*source)->claimed_entropy_bits_per_byte() < 8) {
      // FIPS 140-2 expects unbiased bits; raw bits of a low-entropy source fail it by
      // nature. Such a source is screened by RCT/APT and conditioned instead.
      return Status::Error("source \"" + text +
                           "\": fips=on needs a claim of 8 bits/byte (add entropy=8 if the "
                           "device's output is full entropy)");
    }
    plan.kept_from.push_back(std::nullopt);
    plan.created.push_back(std::move(source).value());
  }
  return plan;
}

std::unique_ptr<SourceSet> Server::BuildSources(const ServeConfig& config, SourcePlan plan,
                                                SourceSet* old) {
  std::vector<std::unique_ptr<Source>> drivers;
  for (std::size_t i = 0; i < plan.created.size(); ++i) {
    drivers.push_back(plan.kept_from[i] ? old->TakeSource(*plan.kept_from[i])
                                        : std::move(plan.created[i]));
  }
  SourceSetOptions set_options;
  set_options.mode = config.source_mode;
  set_options.min_mix_sources = config.min_mix_sources;
  auto set =
      std::make_unique<SourceSet>(std::move(drivers), std::move(plan.options), pool_, set_options);
  for (std::size_t i = 0; i < plan.kept_from.size(); ++i) {
    if (plan.kept_from[i]) set->CarryCounters(i, old->runner(*plan.kept_from[i]).counters());
  }
  return set;
}

Status Server::AddInheritedEndpoints(ServeConfig& config) const {
  if (inherited_.empty()) return Status::Ok();
  // The default endpoint stands in for "no endpoint configured": passed sockets take
  // its place (one of them may well be its address).
  if (config.print_qemu_arguments && config.endpoints.size() == 1) {
    config.endpoints.clear();
  }
  for (const InheritedSocket* socket : inherited_.Unclaimed(config.endpoints)) {
    // The default endpoint's options: QEMU compatibility on stream sockets.
    std::string text = socket->address;
    if (socket->type == SOCK_STREAM) text += ",qemu";
    if (!socket->name.empty()) text += ",name=" + socket->name;
    Result<EndpointSpec> spec = ParseEndpointSpec(EndpointRole::kListen, text);
    if (!spec.ok()) {
      return Status::Error("passed socket " + socket->Describe() + ": " + spec.status().message());
    }
    LOG_INFO("passed socket ", socket->Describe(),
             " matches no configured endpoint: serving it as listen ", text);
    config.endpoints.push_back(std::move(spec).value());
  }
  return Status::Ok();
}

void Server::WarnIfUdpAnswersLoopbackOnly(const EndpointSpec& endpoint) {
  if (endpoint.role == EndpointRole::kListen && !IsLoopbackEndpoint(endpoint) &&
      endpoint.access.allow.LoopbackOnly()) {
    LOG_WARNING("udp listener on ", endpoint.Address(),
                " answers loopback senders only (allow=", endpoint.access.allow.ToString(),
                "); add allow=NETWORKS to answer others");
  }
}

Status Server::OpenEndpoint(const EndpointSpec& endpoint, EndpointObjects& into) {
  Result<const InheritedSocket*> passed = inherited_.Find(endpoint);
  if (!passed.ok()) return passed.status();
  const InheritedSocket* socket = *passed;
  const int fd = socket != nullptr ? DuplicateForEndpoint(*socket) : -1;
  if (socket != nullptr && fd < 0) {
    return Status::FromErrno(
        "listen \"" + endpoint.text + "\": duplicating passed socket " + socket->Describe(), errno);
  }
  if (socket != nullptr) {
    LOG_INFO("endpoint ", endpoint.id, " adopts the socket systemd passed: ", socket->Describe());
  }
  if (endpoint.transport == TransportKind::kUdp) {
    auto udp = fd >= 0 ? UdpEndpoint::Adopt(io_, endpoint, context_, fd)
                       : UdpEndpoint::Open(io_, endpoint, context_);
    if (!udp.ok()) return udp.status();
    WarnIfUdpAnswersLoopbackOnly(endpoint);
    into.udp.push_back(std::move(udp).value());
    return Status::Ok();
  }
  auto tls = MakeEndpointTlsContext(endpoint);
  if (!tls.ok()) return tls.status();
  if (endpoint.role == EndpointRole::kConnect) {
    into.connectors.push_back(std::make_unique<Connector>(io_, endpoint, *this));
    into.connectors.back()->SetTlsContext(*tls);
    return Status::Ok();
  }
  auto listener =
      fd >= 0 ? Listener::Adopt(io_, endpoint, *this, fd) : Listener::Open(io_, endpoint, *this);
  if (!listener.ok()) return listener.status();
  if (!IsLoopbackEndpoint(endpoint) && !(*tls && (*tls)->verify())) {
    LOG_WARNING("listening on a non-loopback address (", endpoint.Address(),
                *tls ? ") with TLS but without verifying clients (tls-verify=off or no CA): "
                     : ") without TLS: ",
                "anyone who can reach it can draw entropy from this host");
  }
  (*listener)->SetTlsContext(*tls);
  into.listeners.push_back(std::move(listener).value());
  return Status::Ok();
}

Status Server::Open() {
  if (!signals_.error().empty()) return Status::Error(signals_.error());
  auto plan = PlanSources(config_, {});
  if (!plan.ok()) return plan.status();
  // Sources that claim less than 8 bits/byte are conditioned to full entropy before
  // they enter the pool, so every pooled byte counts 8 bits in 0x00 answers.
  context_.entropy_bits_per_byte = 8;
  RaiseDescriptorLimit(config_.max_clients, config_.write_threads);
  sources_ = BuildSources(config_, std::move(plan).value(), nullptr);

  if (Status adopted = AddInheritedEndpoints(config_); !adopted.ok()) return adopted;
  if (Status distinct = IdentifyEndpoints(config_.endpoints); !distinct.ok()) {
    return distinct;
  }
  EndpointObjects opened;
  for (const EndpointSpec& endpoint : config_.endpoints) {
    if (Status status = OpenEndpoint(endpoint, opened); !status.ok()) return status;
  }
  listeners_ = std::move(opened.listeners);
  connectors_ = std::move(opened.connectors);
  udp_endpoints_ = std::move(opened.udp);
  return OpenAdmin();
}

void Server::StartWriteLoops() {
  try {
    write_loops_ = std::make_unique<WriteLoops>(config_.write_threads, counters_.handler_failures,
                                                counters_.write_thread_sent_bytes);
  } catch (const std::system_error& e) {
    // An option for speed: the event loop writes every reply itself, as by default.
    LOG_ERROR("cannot start ", config_.write_threads, " write threads (", e.what(),
              "); the event loop writes every reply");
    return;
  }
  context_.write_loops = write_loops_.get();
  LOG_INFO("writing replies to plain TCP and unix clients on ", config_.write_threads,
           config_.write_threads == 1 ? " thread" : " threads", " beside the event loop");
}

int Server::Run() {
  pool_.SetDataReadyCallback([this] { RequestPump(); });
  if (!pool_.memory_locked()) {
    LOG_WARNING("could not lock the ", pool_.capacity(),
                "-byte pool in memory (RLIMIT_MEMLOCK); it may be swapped out");
  }
  std::string names;
  for (std::size_t i = 0; i < sources_->size(); ++i) {
    names += (i == 0 ? "" : ", ") + sources_->runner(i).name();
  }
  LOG_INFO("serving entropy from ", names,
           sources_->size() < 2                        ? ""
           : sources_->mode() == SourceMode::kFailover ? " (failover, in this order)"
                                                       : " (" + sources_->Describe() + ")",
           " (pool ", pool_.capacity(), " bytes)");
  if (config_.write_threads > 0) StartWriteLoops();
  sources_->Start();
  for (auto& connector : connectors_) connector->Start();
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    listeners_[i]->Start();
    LOG_INFO("listening on ", listeners_[i]->bound_address());
  }
  for (auto& udp : udp_endpoints_) {
    udp->Start();
    if (udp->spec().role == EndpointRole::kListen) {
      LOG_INFO("listening on ", udp->spec().Address(), " (answering ",
               udp->spec().access.allow.ToString(), ")");
    }
  }
  std::vector<EndpointSpec> bound;
  for (const auto& listener : listeners_) bound.push_back(listener->spec());
  for (const auto& udp : udp_endpoints_) bound.push_back(udp->spec());
  for (const EndpointSpec& endpoint : config_.endpoints) {
    if (endpoint.role == EndpointRole::kConnect && endpoint.transport != TransportKind::kUdp) {
      bound.push_back(endpoint);
    }
  }
  for (const EndpointSpec& endpoint : bound)
    LogQemuArguments(endpoint, config_.print_qemu_arguments);
  StartAdmin();
  notifier_.Ready();  // every listener is bound and accepting
  // What start-up allocated and freed (the command line, the configuration, opening)
  // stays resident until the heap is trimmed: give it back before serving.
  malloc_trim(0);
  WaitForSignal();
  RunSurvivingHandlerFailures(io_, counters_.handler_failures);
  // Every session is closed and every write's answer is back (they keep io_ running).
  if (write_loops_) {
    write_loops_->Stop();
    LOG_INFO("write threads sent ", write_loops_->sent(), " bytes");
  }
  LOG_INFO(FormatStats(counters_, pool_, *sources_));
  LOG_INFO("stopped");
  return 0;
}

std::shared_ptr<Session> Server::Adopt(Session::Transport transport, const EndpointSpec& endpoint,
                                       std::string peer, ClientIdentity identity,
                                       std::function<void()> on_closed) {
  const std::string tenant_key = endpoint.id + "\n" + identity.Key();
  Tenant& tenant = tenants_[tenant_key];
  tenant.endpoint_id = endpoint.id;
  // Over the limit: the tenant's oldest connection makes room. A QEMU that
  // reconnects is let in, and the connection it left behind (if the daemon has not
  // seen it close yet) is the one that goes.
  tenant.connections.remove_if([](const std::weak_ptr<Session>& s) { return s.expired(); });
  while (endpoint.role == EndpointRole::kListen &&
         tenant.connections.size() >= endpoint.share.max_connections) {
    std::shared_ptr<Session> oldest = tenant.connections.front().lock();
    tenant.connections.pop_front();
    if (!oldest || oldest->closed()) continue;
    counters_.replaced_connections++;
    oldest->Close("replaced by a newer connection of " + identity.Describe() +
                      " (max-conns=" + std::to_string(endpoint.share.max_connections) + ")",
                  true);
  }

  auto session =
      std::make_shared<Session>(std::move(transport), context_, endpoint.session, std::move(peer));
  session->set_identity(identity);
  if (endpoint.share.per_connection) {
    session->SetShareGroup(MakeGroup(session->peer(), endpoint));
  } else {
    if (!tenant.group) tenant.group = MakeGroup(identity.Key(), endpoint);
    session->SetShareGroup(tenant.group);
  }
  tenant.connections.push_back(session);
  LogClientEvent(context_, identity, "connected", LogLevel::kInfo,
                 "client " + session->peer() + " (" + identity.Describe() + "): connected on " +
                     endpoint.Address());
  Session* key = session.get();
  sessions_.emplace(key, session);
  session_endpoints_[key] = endpoint.id;
  session->Start([this, key, tenant_key, on_closed = std::move(on_closed)] {
    if (auto it = sessions_.find(key); it != sessions_.end()) {
      endpoint_totals_[session_endpoints_[key]].served_bytes += it->second->served_bytes();
    }
    session_endpoints_.erase(key);
    sessions_.erase(key);
    // The tenant (and its share) goes with its last connection.
    if (auto it = tenants_.find(tenant_key); it != tenants_.end()) {
      auto& connections = it->second.connections;
      connections.remove_if([](const std::weak_ptr<Session>& s) { return s.expired(); });
      if (connections.empty()) tenants_.erase(it);
    }
    if (on_closed) on_closed();
  });
  return session;
}

std::shared_ptr<VhostUserConnection> Server::AdoptVhostUser(Session::Socket socket,
                                                            const EndpointSpec& endpoint,
                                                            std::string peer,
                                                            ClientIdentity identity,
                                                            std::function<void()> on_closed) {
  auto device = std::make_shared<VhostUserConnection>(std::move(socket), context_, std::move(peer));
  VhostUserConnection* key = device.get();
  vhost_devices_.emplace(key, VhostDevice{device, identity.Key(), endpoint.id});
  device->Start([this, key, on_closed = std::move(on_closed)] {
    if (auto it = vhost_devices_.find(key); it != vhost_devices_.end()) {
      endpoint_totals_[it->second.endpoint_id].served_bytes += it->second.device->served_bytes();
    }
    vhost_devices_.erase(key);
    if (on_closed) on_closed();
  });
  return device;
}

ShareGroup::Limits Server::LimitsFor(const EndpointSpec& endpoint) {
  ShareGroup::Limits limits;
  limits.weight = endpoint.share.weight;
  limits.rate_bytes_per_second = endpoint.share.rate_bytes_per_second;
  limits.burst_bytes = endpoint.share.burst_bytes;
  return limits;
}

std::shared_ptr<ShareGroup> Server::MakeGroup(const std::string& name,
                                              const EndpointSpec& endpoint) {
  auto group = std::make_shared<ShareGroup>(
      name, LimitsFor(endpoint), fair_share_, SteadyClock::Instance(), [this] { RequestPump(); },
      nullptr);
  std::weak_ptr<ShareGroup> weak = group;
  // The rate limit's wake-up: a one-shot timer per wait (a group has at most one).
  group->set_wake_at([this, weak](Clock::TimePoint when) {
    auto timer = std::make_shared<asio::steady_timer>(io_);
    timer->expires_at(std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(when.time_since_epoch())));
    timer->async_wait([timer, weak](const asio::error_code& ec) {
      if (ec) return;
      if (auto live = weak.lock()) live->Wake();
    });
  });
  return group;
}

bool Server::Refuse(const EndpointSpec& endpoint, const ClientIdentity& identity) {
  // Connections (and vhost-user devices) only: UDP peers count in `clients` too, but
  // their endpoint's peers= bounds them, and a flood of them must not lock stream
  // clients out. Both counts drop as a client closes, not a turn later.
  const std::uint64_t clients = counters_.clients;
  const std::uint64_t udp_peers = std::min<std::uint64_t>(counters_.udp_peers, clients);
  if (clients - udp_peers >= config_.max_clients) {
    endpoint_totals_[endpoint.id].refused++;
    const std::uint64_t refused = ++counters_.refused_connections;
    // 1st, 2nd, 4th, 8th...: enough to notice, never a flood.
    if ((refused & (refused - 1)) == 0) {
      LOG_WARNING("refusing connection: ", config_.max_clients,
                  " clients already connected (--max-clients); ", refused, " refused so far");
    }
    return true;
  }
  const std::optional<std::string> why = AccessDenied(endpoint, identity);
  if (!why) return false;
  counters_.denied_connections++;
  endpoint_totals_[endpoint.id].denied++;
  LogClientEvent(context_, identity, "denied", LogLevel::kWarning,
                 "denied " + identity.Describe() + " on " + endpoint.Address() + ": " + *why);
  return true;
}

std::optional<std::string> Server::AccessDenied(const EndpointSpec& endpoint,
                                                const ClientIdentity& identity) {
  const bool address_allowed = endpoint.transport != TransportKind::kTcp ||
                               endpoint.role != EndpointRole::kListen ||
                               (identity.ip && endpoint.access.allow.Allows(*identity.ip));
  if (!address_allowed) return "address not in allow=" + endpoint.access.allow.ToString();
  if (!endpoint.access.users.Admits(identity)) return "not in " + endpoint.access.users.ToString();
  // Before its handshake a TLS client has no certificate yet: this is checked after.
  const std::vector<std::string>& admitted = endpoint.tls.allow_subjects;
  if (!admitted.empty() && identity.tls) {
    const auto& names = identity.certificate_names;
    const bool listed = std::any_of(names.begin(), names.end(), [&](const std::string& name) {
      return std::find(admitted.begin(), admitted.end(), name) != admitted.end();
    });
    if (!listed) {
      std::string all;
      for (const std::string& name : names) all += (all.empty() ? "" : ", ") + name;
      std::string allowed;
      for (const std::string& name : admitted) allowed += (allowed.empty() ? "" : "+") + name;
      return "certificate names (" + (all.empty() ? std::string("none") : all) +
             ") not in allow-subject=" + allowed;
    }
  }
  return std::nullopt;
}

void Server::TlsHandshakeFinished(const EndpointSpec& endpoint, const ClientIdentity& identity,
                                  const std::string& peer, const TlsHandshakeOutcome& outcome) {
  if (outcome.stream) {
    counters_.tls_handshakes++;
    return;
  }
  counters_.tls_handshake_failures++;
  if (outcome.timed_out) counters_.tls_handshake_timeouts++;
  endpoint_totals_[endpoint.id].tls_failures++;
  const std::string where = endpoint.role == EndpointRole::kListen
                                ? "TLS handshake with " + peer + " on " + endpoint.Address()
                                : "TLS handshake with " + endpoint.Address();
  LogClientEvent(context_, identity, "tls", LogLevel::kWarning,
                 where + " (" + identity.Describe() + ") failed: " + outcome.error);
}

void Server::RequestPump() {
  // Called from source threads and the loop; many requests collapse into one pump.
  if (pump_posted_.exchange(true)) return;
  asio::post(io_, [this] {
    pump_posted_ = false;
    EgdSession::PumpAndFlush(context_);
    if (fair_share_.reserved_bytes() > 0 && fair_share_.active_count() > 0 && !shutting_down_) {
      reserve_timer_.expires_after(FairShare::kDefaultGrace + std::chrono::milliseconds(10));
      reserve_timer_.async_wait([this](const asio::error_code& ec) {
        if (!ec) RequestPump();
      });
    }
  });
}

void Server::LogQemuArguments(const EndpointSpec& endpoint, bool always) {
  if (always || endpoint.session.lead_bytes > 0 ||
      endpoint.transport == TransportKind::kVhostUser) {
    LOG_INFO("QEMU arguments for ", endpoint.Describe(), ": ", QemuArgumentsFor(endpoint));
  }
}

void Server::WaitForSignal() {
  signals_.AsyncWait([this](int signal_number) {
    // Waiting for the next one first: a handler that fails (out of memory) must not
    // leave the daemon deaf to SIGTERM.
    if (signal_number == SIGUSR1) {
      WaitForSignal();
      LogStats();
      return;
    }
    if (signal_number == SIGHUP) {
      WaitForSignal();
      (void)Reload();  // logs its outcome
      return;
    }
    LOG_INFO("received ", signal_number == SIGTERM ? "SIGTERM" : "SIGINT", "; shutting down");
    Shutdown();
  });
}

void Server::Shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  notifier_.Stopping();
  for (auto& listener : listeners_) listener->Stop();
  for (auto& connector : connectors_) connector->Stop();
  for (auto& udp : udp_endpoints_) udp->Stop();
  std::vector<std::shared_ptr<Session>> open;
  for (auto& [key, session] : sessions_) open.push_back(session);
  for (auto& session : open) session->Close("shutting down");
  std::vector<std::shared_ptr<VhostUserConnection>> devices;
  for (auto& [key, entry] : vhost_devices_) devices.push_back(entry.device);
  for (auto& device : devices) device->Close("shutting down");
  StopAdmin();
  sources_->Stop();
  // The summary follows once the loop has run out (Run): a write that was in progress
  // counts what it never sent when its handler runs.
  LogClientStats();
  signals_.Cancel();
  reserve_timer_.cancel();
  retire_timer_.cancel();
  work_.reset();
}

std::string Server::ServiceStatus() const {
  const std::size_t clients = sessions_.size() + vhost_devices_.size();
  const std::string serving = sources_->Serving();
  return (serving == "none" ? std::string("no source serving yet") : "serving from " + serving) +
         "; " + std::to_string(clients) + (clients == 1 ? " client" : " clients");
}

void Server::LogStats() {
  // Per-client lines first, the summary last: whoever waits for the summary has them all.
  LogClientStats();
  LOG_INFO(FormatStats(counters_, pool_, *sources_));
}

void Server::LogClientStats() {
  // The busiest clients are listed; a host with thousands of guests gets a bounded log.
  std::vector<const EgdSession*> clients;
  clients.reserve(sessions_.size());
  for (const auto& [key, session] : sessions_) clients.push_back(session.get());
  for (const auto& udp : udp_endpoints_) udp->AppendPeers(&clients);
  const std::size_t listed = std::min(clients.size(), kMaxClientStatsLines);
  std::partial_sort(clients.begin(), clients.begin() + static_cast<std::ptrdiff_t>(listed),
                    clients.end(), [](const EgdSession* a, const EgdSession* b) {
                      return a->served_bytes() > b->served_bytes();
                    });
  for (std::size_t i = 0; i < listed; ++i) {
    LOG_INFO("client stats: ", FormatClientStats(clients[i]->peer(), clients[i]->identity().Key(),
                                                 clients[i]->served_bytes(), clients[i]->requests(),
                                                 clients[i]->queued_requests()));
  }
  // vhost-user devices: requests= counts guest buffers filled, queued= buffers held.
  for (const auto& [key, entry] : vhost_devices_) {
    const VhostUserConnection& device = *entry.device;
    LOG_INFO("client stats: ",
             FormatClientStats(device.peer(), entry.identity, device.served_bytes(),
                               device.buffers_used(), device.held_buffers()));
  }
  if (clients.size() > listed) {
    LOG_INFO("client stats: ", clients.size() - listed, " less busy clients not listed");
  }
}

}  // namespace rngmux
