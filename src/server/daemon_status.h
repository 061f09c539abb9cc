#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "server/stats.h"

namespace rngmux {

// What the last reload did, for `rngmux status` and the metrics.
struct ReloadRecord {
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
  bool last_ok = true;
  std::chrono::system_clock::time_point last_time{};  // epoch: never reloaded
  std::string last_message;  // "" or the error (file:line: key: ...) or what changed
};

// One daemon-wide counter by name ("served_bytes"), for `rngmux stats` and the metrics.
struct CounterValue {
  const char* name;
  std::uint64_t value;
  const char* help;
  bool gauge;  // a level (clients now), not a count since start
};

// Every ServerCounters field, in a fixed order.
std::vector<CounterValue> CounterValues(const ServerCounters& counters);

struct SourceSnapshot {
  std::string name;   // the spec as configured ("test:1,entropy=4")
  std::string state;  // SourceSet::State: serving, standby, retrying, starting
  bool healthy = false;
  bool serving = false;
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_accepted = 0;  // entered the pool
  std::uint64_t blocks_passed = 0;
  std::uint64_t blocks_failed = 0;  // health test failures (RCT/APT, FIPS 140-2)
  std::uint64_t fips_failures = 0;
  std::uint64_t read_errors = 0;
  // Bytes accepted per second over the last sampling interval (0 before the first).
  double rate_bytes_per_second = 0;
  // When the state last changed as seen by the sampler; epoch: not since the start.
  std::chrono::system_clock::time_point last_change{};
  std::string last_error;
};

struct PoolSnapshot {
  std::size_t available = 0;
  std::size_t capacity = 0;
  std::uint64_t bytes_in = 0;   // put by the sources since the start
  std::uint64_t bytes_out = 0;  // taken for clients since the start
  bool locked = false;
};

struct EndpointSnapshot {
  std::string id;                  // EndpointSpec::id: "listen tcp:127.0.0.1:0"
  std::string address;             // as bound: "tcp:127.0.0.1:40123"
  std::uint64_t clients = 0;       // connections, devices or UDP peers now
  std::uint64_t served_bytes = 0;  // random bytes sent through it since it opened
  std::uint64_t denied = 0;        // connections closed at once: not allowed
  std::uint64_t tls_failures = 0;  // TLS handshakes that failed on it
  std::uint64_t refused = 0;       // connections closed at once: --max-clients
};

// The connected clients of one identity on one endpoint.
struct ClientSnapshot {
  std::string identity;  // ClientIdentity::Key(): "uid:1000", "addr:10.0.0.5"
  std::string endpoint;  // EndpointSpec::id
  std::uint64_t connections = 0;
  std::uint64_t served_bytes = 0;  // by its connections open now
};

// A snapshot of the daemon, taken on the event loop (Server::CollectStatus) and then
// read anywhere: the control socket's `status` and the Prometheus metrics.
struct DaemonStatus {
  // Identities listed in `clients`, the busiest first.
  static constexpr std::size_t kMaxListedClients = 20;

  std::string version;
  long pid = 0;
  std::chrono::system_clock::time_point started{};
  std::chrono::system_clock::time_point now{};
  double uptime_seconds = 0;
  std::string config_file;
  std::string source_mode;  // SourceSet::Describe()
  std::string serving;      // SourceSet::Serving()
  std::uint64_t source_switches = 0;
  std::vector<SourceSnapshot> sources;
  PoolSnapshot pool;
  std::vector<EndpointSnapshot> endpoints;
  std::vector<ClientSnapshot> clients;  // the busiest, at most kMaxListedClients
  std::size_t client_groups = 0;        // identity-endpoint pairs connected, listed or not
  ReloadRecord reload;
  std::vector<CounterValue> counters;
};

// Seconds since the epoch, 0 for the epoch itself ("never").
double UnixSeconds(std::chrono::system_clock::time_point t);

// The snapshot as one JSON object (`rngmux status --json`); times are Unix seconds.
nlohmann::ordered_json StatusToJson(const DaemonStatus& status);
// {"served_bytes": N, ...}: every counter (`rngmux stats`).
nlohmann::ordered_json CountersToJson(const std::vector<CounterValue>& counters);

// Bytes per second over a sampling interval: Sample() is given the running total
// and the time, by a timer; rate() is the increase over the last interval.
class RateTracker {
 public:
  void Sample(std::chrono::steady_clock::time_point now, std::uint64_t total);
  double rate() const { return rate_; }

 private:
  bool sampled_ = false;
  std::chrono::steady_clock::time_point last_time_{};
  std::uint64_t last_total_ = 0;
  double rate_ = 0;
};

}  // namespace rngmux
