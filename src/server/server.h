#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "admin/control_request.h"
#include "common/rate_limit.h"
#include "common/signal_reader.h"
#include "common/status.h"
#include "endpoint/endpoint_spec.h"
#include "pool/entropy_pool.h"
#include "pool/fair_share.h"
#include "pool/share_group.h"
#include "sandbox/seccomp_filter.h"
#include "server/daemon_status.h"
#include "server/service_notifier.h"
#include "server/stats.h"
#include "sources/source_set.h"
#include "tls/tls_context.h"
#include "transport/connector.h"
#include "transport/inherited_sockets.h"
#include "transport/listener.h"
#include "transport/session_host.h"
#include "transport/udp_endpoint.h"
#include "transport/write_loops.h"

namespace rngmux {

class ControlServer;
class MetricsServer;

// Everything `rngmux serve` was told, validated. Immutable once the server starts.
struct ServeConfig {
  static constexpr std::size_t kDefaultPoolBytes = 256 * 1024;
  std::vector<std::string> sources = {"auto"};  // in order of preference
  SourceMode source_mode = SourceMode::kFailover;
  std::size_t min_mix_sources = 0;  // mix may go on with this many (0 = only with all)
  std::vector<EndpointSpec> endpoints;
  bool print_qemu_arguments = false;  // true when the default endpoint was chosen
  std::size_t pool_bytes = kDefaultPoolBytes;
  bool allow_test_source = false;
  std::size_t max_queued_requests = 4096;
  std::size_t max_clients = 16384;
  // Threads that write replies to plain TCP and unix clients (WriteLoops); 0: the
  // event loop writes them itself. Start-up only.
  std::size_t write_threads = 0;
  double health_alpha_log2 = kDefaultHealthAlphaLog2;
  std::string log_level = "info";  // debug, info, warning or error; applied at reload too
  // The control socket (`rngmux status`, `reload`, `stats`): a unix socket path, or
  // empty for none.
  std::string control_path;
  // Prometheus metrics: "tcp:HOST:PORT" to serve /metrics over HTTP, or empty for off.
  std::string metrics_address;
  // Start-up only (a reload keeps them): the user and group a root daemon drops to
  // once its sources, sockets and file opener are set up ("" for none; an empty
  // group is the user's primary one), and the seccomp filter loaded before serving.
  std::string user;
  std::string group;
  SeccompMode seccomp = SeccompMode::kOn;
  // The configuration file this came from, for status and messages; empty when the
  // command line was all.
  std::string config_file;
};

// A reload matches endpoints by role and address (EndpointSpec::id), so each may be
// given once: "endpoint \"listen tcp:127.0.0.1:1024\" is given twice". Listeners on
// any free port ("tcp:127.0.0.1:0") may repeat, each binding a port of its own: their
// ids are numbered in order ("listen tcp:127.0.0.1:0 #2"), and a reload matches the
// n-th of them to the n-th.
Status IdentifyEndpoints(std::vector<EndpointSpec>& endpoints);

// Lifts RLIMIT_NOFILE's soft limit so that `max_clients` connections fit.
void RaiseDescriptorLimit(std::size_t max_clients, std::size_t write_threads);

// Wires one source (on its own thread) through the health-gated pool to every
// endpoint, on a single event-loop thread. Open() then Run(); SIGTERM/SIGINT
// end Run() cleanly, SIGUSR1 logs stats.
class Server final : public SessionHost {
 public:
  explicit Server(ServeConfig config);
  ~Server() override;

  // Creates the source and binds every listener; nothing is served yet.
  // Errors are one line for the user.
  Status Open();
  // Starts the source, connectors and listeners and runs until a stop signal. Returns 0.
  int Run();

  std::shared_ptr<Session> Adopt(Session::Transport transport, const EndpointSpec& endpoint,
                                 std::string peer, ClientIdentity identity,
                                 std::function<void()> on_closed) override;
  bool Refuse(const EndpointSpec& endpoint, const ClientIdentity& identity) override;
  std::atomic<std::uint64_t>& accept_failures() override { return counters_.accept_failures; }
  void TlsHandshakeFinished(const EndpointSpec& endpoint, const ClientIdentity& identity,
                            const std::string& peer, const TlsHandshakeOutcome& outcome) override;

  // Reads the configuration again (the file and the command line that overrides it).
  // How file: sources open their path (SourceFactoryContext::open_file); set before
  // Open() by a daemon that will drop root. Empty: they open it themselves.
  using FileOpenFunction = std::function<Result<int>(const std::string& path)>;
  void SetFileOpener(FileOpenFunction open_file) { open_file_ = std::move(open_file); }
  using Reloader = std::function<Result<ServeConfig>()>;
  void SetReloader(Reloader reloader) { reloader_ = std::move(reloader); }
  // The sockets systemd passed (socket activation), before Open(): each is adopted by
  // the listen endpoint that names it (name=) or has its address; one that no endpoint
  // claims becomes an endpoint of its own with the default endpoint's options, and
  // then the default endpoint itself is not bound. Kept across reloads.
  void SetInheritedSockets(InheritedSockets sockets) { inherited_ = std::move(sockets); }
  // SIGHUP and the control socket's reload: re-reads through the reloader and applies
  // the result. A configuration that does not validate, or an endpoint that cannot be
  // opened, changes nothing. Event-loop thread only.
  Status Reload();
  const ReloadRecord& last_reload() const { return reload_record_; }
  // A snapshot of everything `rngmux status` and the metrics show. Event-loop thread
  // only (the control socket and the metrics endpoint call it there).
  DaemonStatus CollectStatus() const;
  // How often source rates are sampled (and state changes noticed).
  static constexpr std::chrono::seconds kSampleInterval{2};
  std::shared_ptr<VhostUserConnection> AdoptVhostUser(Session::Socket socket,
                                                      const EndpointSpec& endpoint,
                                                      std::string peer, ClientIdentity identity,
                                                      std::function<void()> on_closed) override;

 private:
  void RequestPump();
  // What Open() and Reload() make of the configured sources, before anything runs:
  // for each, in order, a new driver or the index of the running source whose
  // driver (and so its open device and stream position) it keeps.
  struct SourcePlan {
    std::vector<std::unique_ptr<Source>> created;  // nullptr where kept
    std::vector<std::optional<std::size_t>> kept_from;
    std::vector<SourceRunner::Options> options;
  };
  Result<SourcePlan> PlanSources(const ServeConfig& config,
                                 const std::vector<std::string>& running);
  // `old` (stopped) gives the kept drivers and their counts; nullptr at start.
  std::unique_ptr<SourceSet> BuildSources(const ServeConfig& config, SourcePlan plan,
                                          SourceSet* old);
  struct EndpointObjects {
    std::vector<std::unique_ptr<Listener>> listeners;
    std::vector<std::unique_ptr<Connector>> connectors;
    std::vector<std::unique_ptr<UdpEndpoint>> udp;
  };
  // A UDP listener on a non-loopback address that answers loopback senders only
  // (allow= left at its default) is almost always a mistake: says so.
  void WarnIfUdpAnswersLoopbackOnly(const EndpointSpec& endpoint);
  // Binds a listener or UDP socket (or adopts a passed one), or makes a connector
  // (started later).
  Status OpenEndpoint(const EndpointSpec& endpoint, EndpointObjects& into);
  // Adds to `config` an endpoint for each passed socket none of its endpoints claims
  // (see SetInheritedSockets).
  Status AddInheritedEndpoints(ServeConfig& config) const;
  // Why `identity` may not use `endpoint` (allow=, allow-user=...), or nothing.
  static std::optional<std::string> AccessDenied(const EndpointSpec& endpoint,
                                                 const ClientIdentity& identity);
  // Reload() between systemd's RELOADING=1 and READY=1.
  Status ReadAndApply();
  // Applies a validated configuration (Reload's second half); returns what changed.
  Result<std::string> Apply(ServeConfig next);
  // The sessions and devices of one endpoint (by EndpointSpec::id).
  std::vector<std::shared_ptr<Session>> SessionsOf(const std::string& endpoint_id);
  void CloseEndpointClients(const std::string& endpoint_id, const std::string& reason);
  // A reload changed a stream endpoint's options: clients no longer allowed go,
  // the others' shares take the new weight and rate.
  void ApplyToClients(const EndpointSpec& endpoint);
  // Keeps endpoint objects a reload stopped until their cancelled handlers have run.
  void Retire(EndpointObjects retired);
  void FreeRetiredLater();
  // The QEMU arguments for endpoints that need QEMU's cooperation (lead, vhost-user).
  void LogQemuArguments(const EndpointSpec& endpoint, bool always);
  static ShareGroup::Limits LimitsFor(const EndpointSpec& endpoint);
  // The tenant (endpoint + identity) a new connection belongs to: its share group,
  // and its connections for the max-conns limit.
  struct Tenant {
    std::string endpoint_id;                        // EndpointSpec::id
    std::shared_ptr<ShareGroup> group;              // nullptr with share=connection
    std::list<std::weak_ptr<Session>> connections;  // oldest first
  };
  std::shared_ptr<ShareGroup> MakeGroup(const std::string& name, const EndpointSpec& endpoint);
  void WaitForSignal();
  void Shutdown();
  // --write-threads: starts them, or logs why not and goes on without them.
  void StartWriteLoops();
  // The control socket and the metrics endpoint, if configured (server_status.cc).
  Status OpenAdmin();
  void StartAdmin();
  void StopAdmin();
  // One control request's JSON reply.
  std::string ControlReply(ControlCommand command);
  // Samples source rates and states; reschedules itself every kSampleInterval.
  void SampleSources();
  // One line for systemd's STATUS=: "serving from hwrng; 3 clients".
  std::string ServiceStatus() const;
  // SIGUSR1: a line per client (at most kMaxClientStatsLines), then the summary.
  void LogStats();
  // Shutdown: the client lines only; the summary follows when the loop has run out.
  void LogClientStats();
  static constexpr std::size_t kMaxClientStatsLines = 64;

  // Order matters for destruction: the loop (and any handler still holding a
  // session) goes before the pool, fair share and counters that sessions use.
  ServeConfig config_;
  EntropyPool pool_;
  FairShare fair_share_;
  ServerCounters counters_;
  SessionContext context_;
  std::atomic<bool> pump_posted_{false};
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  // After io_: gone before it, since a write's answer is posted to io_.
  std::unique_ptr<WriteLoops> write_loops_;  // set by StartWriteLoops()
  SignalReader signals_;
  // Re-pumps once reserves for briefly idle clients have expired, so bytes set
  // aside for a client that left reach the waiting ones even if no new bytes come.
  asio::steady_timer reserve_timer_;
  std::unique_ptr<SourceSet> sources_;
  InheritedSockets inherited_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<Connector>> connectors_;
  std::vector<std::unique_ptr<UdpEndpoint>> udp_endpoints_;
  std::unordered_map<Session*, std::shared_ptr<Session>> sessions_;
  std::unordered_map<std::string, Tenant> tenants_;  // by endpoint and identity key
  KeyedLogLimiter client_log_{std::chrono::seconds(10)};
  struct VhostDevice {
    std::shared_ptr<VhostUserConnection> device;
    std::string identity;  // ClientIdentity::Key(), for stats
    std::string endpoint_id;
  };
  std::unordered_map<VhostUserConnection*, VhostDevice> vhost_devices_;
  bool shutting_down_ = false;
  Reloader reloader_;
  FileOpenFunction open_file_;
  ReloadRecord reload_record_;
  struct Retired {
    EndpointObjects objects;
    std::chrono::steady_clock::time_point free_at;
  };
  std::list<Retired> retired_;
  asio::steady_timer retire_timer_{io_};

  // Status and metrics (server_status.cc).
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<MetricsServer> metrics_;
  asio::steady_timer sample_timer_{io_};
  std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
  std::chrono::steady_clock::time_point started_steady_ = std::chrono::steady_clock::now();
  struct SourceSample {
    std::string name;
    std::string state;
    RateTracker rate;
    std::chrono::system_clock::time_point last_change{};
  };
  std::vector<SourceSample> source_samples_;  // by source index, as of the last sample
  // What an endpoint's clients that have gone were served, and the connections it
  // closed at once, by EndpointSpec::id.
  struct EndpointTotals {
    std::uint64_t served_bytes = 0;
    std::uint64_t denied = 0;
    std::uint64_t refused = 0;
    std::uint64_t tls_failures = 0;
  };
  std::unordered_map<std::string, EndpointTotals> endpoint_totals_;
  std::unordered_map<Session*, std::string> session_endpoints_;  // EndpointSpec::id
  // systemd's READY/RELOADING/STOPPING/STATUS and watchdog (nothing without systemd).
  ServiceNotifier notifier_{io_, [this] { return ServiceStatus(); }};
};

}  // namespace rngmux
