#include "config/serve_settings.h"

#include <string_view>

#include "common/log.h"
#include "common/option_list.h"
#include "endpoint/qemu_chardev.h"
#include "sources/source.h"

namespace rngmux {
namespace {

// The longest path a unix socket address holds (sun_path less its NUL).
constexpr std::size_t kMaxUnixPathBytes = 107;
constexpr std::size_t kMaxWriteThreads = 64;

// How an error names a setting: as it was given, else as the flag that would set it.
std::string Name(const ServeSettings& settings, const std::string& key) {
  const auto it = settings.given.find(key);
  return it != settings.given.end() ? it->second : "--" + key;
}

bool FromCommandLine(const ServeSettings& settings, const std::string& key) {
  const auto it = settings.given.find(key);
  return it == settings.given.end() || it->second.rfind("--", 0) == 0;
}

// "none" and "" both mean off for control and metrics.
bool IsOff(const std::string& value) { return value.empty() || value == "none"; }

Result<std::string> ValidateMetrics(const ServeSettings& settings) {
  if (IsOff(settings.metrics)) return std::string();
  const std::string prefix = Name(settings, "metrics") + " \"" + settings.metrics + "\": ";
  if (settings.metrics.rfind("tcp:", 0) != 0 || settings.metrics.find(',') != std::string::npos) {
    return Status::Error(prefix + "expected tcp:HOST:PORT");
  }
  Result<EndpointSpec> spec = ParseEndpointSpec(EndpointRole::kListen, settings.metrics);
  if (!spec.ok()) {
    // `listen "tcp:...": why` -> why
    const std::string& message = spec.status().message();
    const std::string echo = "listen \"" + settings.metrics + "\": ";
    return Status::Error(prefix +
                         (message.rfind(echo, 0) == 0 ? message.substr(echo.size()) : message));
  }
  return settings.metrics;
}

}  // namespace

const std::vector<std::string>& ServeSettingKeys() {
  static const std::vector<std::string> keys = {"source",
                                                "source-mode",
                                                "mix-min-sources",
                                                "listen",
                                                "connect",
                                                "qemu-chardev",
                                                "pool-size",
                                                "allow-test-source",
                                                "max-queued-requests",
                                                "max-clients",
                                                "write-threads",
                                                "health-alpha",
                                                "log-level",
                                                "control",
                                                "metrics",
                                                "user",
                                                "group",
                                                "seccomp"};
  return keys;
}

ServeSettings OverlaySettings(ServeSettings base, const ServeSettings& over) {
  for (const auto& [key, name] : over.given) {
    if (key == "source") base.sources = over.sources;
    if (key == "source-mode") base.source_mode = over.source_mode;
    if (key == "mix-min-sources") base.min_mix_sources = over.min_mix_sources;
    if (key == "listen") base.listen = over.listen;
    if (key == "connect") base.connect = over.connect;
    if (key == "qemu-chardev") base.qemu_chardev = over.qemu_chardev;
    if (key == "pool-size") base.pool_bytes = over.pool_bytes;
    if (key == "allow-test-source") base.allow_test_source = over.allow_test_source;
    if (key == "max-queued-requests") base.max_queued_requests = over.max_queued_requests;
    if (key == "max-clients") base.max_clients = over.max_clients;
    if (key == "write-threads") base.write_threads = over.write_threads;
    if (key == "health-alpha") base.health_alpha_log2 = over.health_alpha_log2;
    if (key == "log-level") base.log_level = over.log_level;
    if (key == "control") base.control = over.control;
    if (key == "metrics") base.metrics = over.metrics;
    if (key == "user") base.user = over.user;
    if (key == "group") base.group = over.group;
    if (key == "seccomp") base.seccomp = over.seccomp;
    base.given[key] = name;
  }
  return base;
}

Result<ServeConfig> BuildServeConfig(const ServeSettings& settings) {
  ServeConfig config;
  config.config_file = settings.config_file;
  if (!settings.sources.empty()) config.sources = settings.sources;
  for (const std::string& text : config.sources) {
    auto spec = ValidateSourceSpec(text);
    if (!spec.ok()) return spec.status();
    // The driver refuses it too, but only when it is made: say so before anything opens.
    if (spec->kind == "test" && !settings.allow_test_source) {
      return Status::Error("source \"" + text +
                           "\": test sources produce predictable bytes; pass "
                           "--allow-test-source to use one");
    }
  }
  if (settings.source_mode == "failover") {
    config.source_mode = SourceMode::kFailover;
  } else if (settings.source_mode == "mix") {
    config.source_mode = SourceMode::kMix;
  } else {
    return Status::Error(Name(settings, "source-mode") + " \"" + settings.source_mode +
                         "\": expected failover or mix");
  }
  if (settings.min_mix_sources != 0) {
    if (config.source_mode != SourceMode::kMix) {
      return Status::Error(Name(settings, "mix-min-sources") + " needs " +
                           (FromCommandLine(settings, "source-mode") ? "--source-mode mix"
                                                                     : "source-mode = \"mix\""));
    }
    if (settings.min_mix_sources > config.sources.size()) {
      return Status::Error(Name(settings, "mix-min-sources") + " " +
                           std::to_string(settings.min_mix_sources) + ": more than the " +
                           std::to_string(config.sources.size()) + " sources given");
    }
    config.min_mix_sources = settings.min_mix_sources;
  }
  config.allow_test_source = settings.allow_test_source;
  if (settings.pool_bytes < 4096 || settings.pool_bytes > (std::size_t{1} << 30)) {
    return Status::Error(Name(settings, "pool-size") + " " + std::to_string(settings.pool_bytes) +
                         ": must be 4096 to 1073741824 bytes");
  }
  config.pool_bytes = settings.pool_bytes;
  if (settings.max_queued_requests < 1 || settings.max_queued_requests > 1000000) {
    return Status::Error(Name(settings, "max-queued-requests") + " " +
                         std::to_string(settings.max_queued_requests) + ": must be 1 to 1000000");
  }
  config.max_queued_requests = settings.max_queued_requests;
  if (settings.max_clients < 1 || settings.max_clients > 1000000) {
    return Status::Error(Name(settings, "max-clients") + " " +
                         std::to_string(settings.max_clients) + ": must be 1 to 1000000");
  }
  config.max_clients = settings.max_clients;
  if (settings.write_threads > kMaxWriteThreads) {
    return Status::Error(Name(settings, "write-threads") + " " +
                         std::to_string(settings.write_threads) + ": must be 0 to " +
                         std::to_string(kMaxWriteThreads));
  }
  config.write_threads = settings.write_threads;
  if (!(settings.health_alpha_log2 >= 20 && settings.health_alpha_log2 <= 40)) {
    return Status::Error(Name(settings, "health-alpha") + ": must be 20 to 40 (alpha = 2^-N)");
  }
  config.health_alpha_log2 = settings.health_alpha_log2;
  LogLevel level;
  if (!ParseLogLevel(settings.log_level, &level)) {
    return Status::Error(Name(settings, "log-level") + " \"" + settings.log_level +
                         "\": expected debug, info, warning or error");
  }
  config.log_level = settings.log_level;

  if (!IsOff(settings.control)) {
    const std::string prefix = Name(settings, "control") + " \"" + settings.control + "\": ";
    if (HasNulByte(settings.control)) return Status::Error(prefix + std::string(kNulByteProblem));
    if (settings.control.size() > kMaxUnixPathBytes) {
      return Status::Error(prefix + "path is longer than " + std::to_string(kMaxUnixPathBytes) +
                           " bytes");
    }
    config.control_path = settings.control;
  }
  Result<std::string> metrics = ValidateMetrics(settings);
  if (!metrics.ok()) return metrics.status();
  config.metrics_address = *metrics;
  if (!ParseSeccompMode(settings.seccomp, &config.seccomp)) {
    return Status::Error(Name(settings, "seccomp") + " \"" + settings.seccomp +
                         "\": expected on, off or log");
  }
  for (const char* key : {"user", "group"}) {
    const std::string& value = std::string_view(key) == "user" ? settings.user : settings.group;
    if (HasNulByte(value)) {
      return Status::Error(Name(settings, key) + " \"" + value +
                           "\": " + std::string(kNulByteProblem));
    }
  }
  if (settings.user.empty() && !settings.group.empty()) {
    return Status::Error(Name(settings, "group") + " needs " +
                         (FromCommandLine(settings, "group") ? "--user" : "user"));
  }
  config.user = settings.user;
  config.group = settings.group;

  for (const std::string& text : settings.listen) {
    auto spec = ParseEndpointSpec(EndpointRole::kListen, text);
    if (!spec.ok()) return spec.status();
    config.endpoints.push_back(*spec);
  }
  for (const std::string& text : settings.connect) {
    auto spec = ParseEndpointSpec(EndpointRole::kConnect, text);
    if (!spec.ok()) return spec.status();
    config.endpoints.push_back(*spec);
  }
  for (const std::string& text : settings.qemu_chardev) {
    auto spec = ParseQemuChardev(text);
    if (!spec.ok()) return spec.status();
    config.endpoints.push_back(*spec);
  }
  if (config.endpoints.empty()) {
    auto spec = ParseEndpointSpec(EndpointRole::kListen, kDefaultEndpoint);
    if (!spec.ok()) return spec.status();
    config.endpoints.push_back(*spec);
    config.print_qemu_arguments = true;
  }
  if (Status distinct = IdentifyEndpoints(config.endpoints); !distinct.ok()) return distinct;
  return config;
}

std::vector<std::string> ServeConfigWarnings(const ServeConfig& config) {
  std::vector<std::string> warnings;
  if (!config.metrics_address.empty()) {
    Result<EndpointSpec> spec = ParseEndpointSpec(EndpointRole::kListen, config.metrics_address);
    if (spec.ok() && !IsLoopbackEndpoint(*spec)) {
      warnings.push_back("metrics " + config.metrics_address +
                         " is not a loopback address: anyone who can reach it reads the metrics");
    }
  }
  return warnings;
}

}  // namespace rngmux
