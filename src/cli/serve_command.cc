#include <unistd.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "admin/metrics_server.h"
#include "cli/commands.h"
#include "cli/control_client.h"
#include "common/log.h"
#include "endpoint/qemu_chardev.h"
#include "server/server.h"
#include "sources/source.h"

namespace rngmux {
namespace {

constexpr char kDefaultEndpoint[] = "tcp:127.0.0.1:1024,qemu";

struct ServeFlags {
  std::vector<std::string> sources;
  std::string source_mode = "failover";
  std::size_t min_mix_sources = 0;
  std::vector<std::string> listen;
  std::vector<std::string> connect;
  std::vector<std::string> qemu_chardev;
  std::size_t pool_bytes = ServeConfig::kDefaultPoolBytes;
  bool allow_test_source = false;
  // Defaults are the config's own, written once (server.h).
  std::size_t max_queued_requests = ServeConfig{}.max_queued_requests;
  std::size_t max_clients = ServeConfig{}.max_clients;
  double health_alpha_log2 = ServeConfig{}.health_alpha_log2;
  std::string log_level = "info";
  std::string control = kDefaultControlPath;  // "none": no control socket
  std::string metrics = "none";
};

// Raw flags to an immutable config; the first problem is returned as one line.
Result<ServeConfig> BuildConfig(const ServeFlags& flags) {
  ServeConfig config;
  if (!flags.sources.empty()) config.sources = flags.sources;
  for (const std::string& text : config.sources) {
    if (auto spec = ValidateSourceSpec(text); !spec.ok()) return spec.status();
  }
  if (flags.source_mode == "failover") {
    config.source_mode = SourceMode::kFailover;
  } else if (flags.source_mode == "mix") {
    config.source_mode = SourceMode::kMix;
  } else {
    return Status::Error("--source-mode \"" + flags.source_mode + "\": expected failover or mix");
  }
  if (flags.min_mix_sources != 0) {
    if (config.source_mode != SourceMode::kMix) {
      return Status::Error("--mix-min-sources needs --source-mode mix");
    }
    if (flags.min_mix_sources > config.sources.size()) {
      return Status::Error("--mix-min-sources " + std::to_string(flags.min_mix_sources) +
                           ": more than the " + std::to_string(config.sources.size()) +
                           " sources given");
    }
    config.min_mix_sources = flags.min_mix_sources;
  }
  config.allow_test_source = flags.allow_test_source;
  if (flags.pool_bytes < 4096 || flags.pool_bytes > (std::size_t{1} << 30)) {
    return Status::Error("--pool-size " + std::to_string(flags.pool_bytes) +
                         ": must be 4096 to 1073741824 bytes");
  }
  config.pool_bytes = flags.pool_bytes;
  if (flags.max_queued_requests < 1 || flags.max_queued_requests > 1000000) {
    return Status::Error("--max-queued-requests " + std::to_string(flags.max_queued_requests) +
                         ": must be 1 to 1000000");
  }
  config.max_queued_requests = flags.max_queued_requests;
  if (flags.max_clients < 1 || flags.max_clients > 1000000) {
    return Status::Error("--max-clients " + std::to_string(flags.max_clients) +
                         ": must be 1 to 1000000");
  }
  config.max_clients = flags.max_clients;
  if (!(flags.health_alpha_log2 >= 20 && flags.health_alpha_log2 <= 40)) {
    return Status::Error("--health-alpha: must be 20 to 40 (alpha = 2^-N)");
  }
  config.health_alpha_log2 = flags.health_alpha_log2;
  for (const std::string& text : flags.listen) {
    auto spec = ParseEndpointSpec(EndpointRole::kListen, text);
    if (!spec.ok()) return spec.status();
    config.endpoints.push_back(*spec);
  }
  for (const std::string& text : flags.connect) {
    auto spec = ParseEndpointSpec(EndpointRole::kConnect, text);
    if (!spec.ok()) return spec.status();
    config.endpoints.push_back(*spec);
  }
  for (const std::string& text : flags.qemu_chardev) {
    auto spec = ParseQemuChardev(text);
    if (!spec.ok()) return spec.status();
    config.endpoints.push_back(*spec);
  }
  if (flags.control != "none") {
    if (flags.control.empty() || flags.control[0] != '/' || flags.control.size() > 107) {
      return Status::Error("--control \"" + flags.control +
                           "\": expected an absolute path of at most 107 bytes, or none");
    }
    config.control_path = flags.control;
  }
  if (flags.metrics != "none" && !flags.metrics.empty()) {
    if (auto address = ParseMetricsAddress(flags.metrics); !address.ok()) return address.status();
    config.metrics_address = flags.metrics;
  }
  if (config.endpoints.empty()) {
    auto spec = ParseEndpointSpec(EndpointRole::kListen, kDefaultEndpoint);
    if (!spec.ok()) return spec.status();
    config.endpoints.push_back(*spec);
    config.print_qemu_arguments = true;
  }
  return config;
}

}  // namespace

Command AddServeCommand(CLI::App& root) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* app = root.add_subcommand(
      "serve", "Run the daemon: read a source, health-test it, serve it over EGD.");
  app->add_option("--source", flags->sources,
                  "Entropy source: auto (default), getrandom, rdseed, file:PATH, qwqng, test:SEED "
                  "(options: ,entropy=BITS ,block=BYTES ,fips=on); repeat for several, most "
                  "preferred first");
  app->add_option("--source-mode", flags->source_mode,
                  "With several sources: failover (the best healthy one serves) or mix (the "
                  "XOR of all of them; nothing is served while one is unhealthy)")
      ->capture_default_str();
  app->add_option("--mix-min-sources", flags->min_mix_sources,
                  "Mix only: go on mixing the healthy sources while at least N of them "
                  "deliver, instead of waiting for all (logged as DEGRADED, mix_degraded=1 "
                  "in stats)");
  app->add_option(
      "--listen", flags->listen,
      "Endpoint to listen on: tcp:HOST:PORT, tcp:[IPV6]:PORT or unix:PATH, with "
      "options ,qemu ,lead=BYTES ,raw ,mode=OCTAL; or udp:HOST:PORT with ,allow=NET+NET "
      ",rate=BYTES ,burst=BYTES ,idle=SECONDS ,peers=N; or vhost-user:PATH [,mode=OCTAL] "
      "for QEMU's vhost-user-rng-pci (repeatable)");
  app->add_option("--connect", flags->connect,
                  "Endpoint to connect to and keep reconnecting: tcp:HOST:PORT or unix:PATH, "
                  "with options ,qemu ,lead=BYTES ,raw; or udp:HOST:PORT with ,local=ADDR:PORT "
                  ",qemu ,lead=BYTES ,rate=BYTES ,burst=BYTES ,idle=SECONDS; or "
                  "vhost-user:PATH (QEMU's vhost-user-rng-pci with server=on) (repeatable)");
  app->add_option("--qemu-chardev", flags->qemu_chardev,
                  "The -chardev value given to QEMU (e.g. 'socket,id=c0,host=127.0.0.1,"
                  "port=1024' or 'udp,id=c0,host=127.0.0.1,port=1024'), or for vhost-user "
                  "'socket,id=c0,path=P -device vhost-user-rng-pci,chardev=c0'; rngmux takes "
                  "the other side with QEMU compatibility on (repeatable)");
  app->add_option("--pool-size", flags->pool_bytes, "Bytes of tested entropy to keep ready")
      ->capture_default_str();
  app->add_flag("--allow-test-source", flags->allow_test_source,
                "Allow test:SEED, a predictable source for tests and benchmarks only");
  app->add_option("--max-queued-requests", flags->max_queued_requests,
                  "Requests one client may have waiting before it is disconnected")
      ->capture_default_str();
  app->add_option("--max-clients", flags->max_clients,
                  "Connections served at once; more are closed at once with a log line")
      ->capture_default_str();
  app->add_option("--health-alpha", flags->health_alpha_log2,
                  "False-alarm rate of the SP 800-90B health tests, as N in 2^-N")
      ->capture_default_str();
  app->add_option("--control", flags->control,
                  "Control socket for rngmux status, stats and reload (mode 0600), or none")
      ->capture_default_str();
  app->add_option("--metrics", flags->metrics,
                  "Serve Prometheus metrics over HTTP at tcp:HOST:PORT (/metrics), or none")
      ->capture_default_str();
  AddLogLevelOption(*app, flags->log_level);
  app->footer(std::string("With no endpoint, listens on ") + kDefaultEndpoint +
              " and prints the QEMU arguments to use it.");

  return Command{app, [flags, app] {
                   if (Status status = ApplyLogLevel(flags->log_level); !status.ok()) {
                     return ReportUsageError(status.message());
                   }
                   // The default path is root's (/run); others name theirs.
                   if (app->count("--control") == 0 && geteuid() != 0) {
                     LOG_INFO("no control socket (not root); give --control PATH for one");
                     flags->control = "none";
                   }
                   auto config = BuildConfig(*flags);
                   if (!config.ok()) return ReportUsageError(config.status().message());
                   Server server(std::move(config).value());
                   Status opened = server.Open();
                   if (!opened.ok()) {
                     std::fprintf(stderr, "rngmux: error: %s\n", opened.message().c_str());
                     return 1;
                   }
                   return server.Run();
                 }};
}

}  // namespace rngmux
