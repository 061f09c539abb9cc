#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/server.h"

namespace rngmux {

// Where `serve` puts its control socket unless told otherwise.
inline constexpr char kDefaultControlPath[] = "/run/rngmux/control.sock";
// With no endpoint at all, `serve` listens here and prints the QEMU arguments.
inline constexpr char kDefaultEndpoint[] = "tcp:127.0.0.1:1024,qemu";

// The settings of `rngmux serve` as written, by command-line flags or configuration-file
// keys, before validation. Each setting has one key, the long flag name without "--"
// ("pool-size", "listen"); the defaults are ServeConfig's.
struct ServeSettings {
  std::vector<std::string> sources;  // empty: ServeConfig's default ("auto")
  std::string source_mode = "failover";
  std::size_t min_mix_sources = 0;
  std::vector<std::string> listen;        // endpoint specs (ParseEndpointSpec)
  std::vector<std::string> connect;       // endpoint specs
  std::vector<std::string> qemu_chardev;  // QEMU -chardev values (ParseQemuChardev)
  std::size_t pool_bytes = ServeConfig::kDefaultPoolBytes;
  bool allow_test_source = false;
  std::size_t max_queued_requests = ServeConfig{}.max_queued_requests;
  std::size_t max_clients = ServeConfig{}.max_clients;
  std::size_t write_threads = ServeConfig{}.write_threads;
  double health_alpha_log2 = ServeConfig{}.health_alpha_log2;
  std::string log_level = "info";
  std::string control = kDefaultControlPath;  // "" or "none": no control socket
  std::string metrics;                        // "" or "none": no metrics endpoint
  std::string user;                           // "": stay who started rngmux
  std::string group;                          // "": the user's primary group
  std::string seccomp = "on";                 // on, off or log
  std::string config_file;                    // the file these came from, if any

  // The keys that were given, each with how an error names it: "--pool-size" for a
  // flag, "rngmux.toml:3: pool-size" for a file key. A key not here has its default.
  std::map<std::string, std::string> given;
};

// Every key of ServeSettings, in the order --help and the example file list them.
const std::vector<std::string>& ServeSettingKeys();

// `over`'s given keys replace `base`'s (a list replaces the whole list of its kind).
ServeSettings OverlaySettings(ServeSettings base, const ServeSettings& over);

// Validates settings into the immutable ServeConfig; opens nothing. The first problem
// is one line that names the setting as it was given (ServeSettings::given):
//   --pool-size 1: must be 4096 to 1073741824 bytes
//   rngmux.toml:3: pool-size 1: must be 4096 to 1073741824 bytes
//   --mix-min-sources needs --source-mode mix
//   --log-level "loud": expected debug, info, warning or error
//   --control "/very/long...": path is longer than 107 bytes
//   --metrics "unix:/x": expected tcp:HOST:PORT
//   --seccomp "maybe": expected on, off or log
//   --group needs --user
//   endpoint "listen tcp:127.0.0.1:1024" is given twice
//   source "test:1": test sources produce predictable bytes; pass --allow-test-source to
//       use one
// Source and endpoint specs fail with their parsers' messages.
Result<ServeConfig> BuildServeConfig(const ServeSettings& settings);

// What an admin should hear about a valid configuration: a metrics endpoint that is
// not on loopback.
std::vector<std::string> ServeConfigWarnings(const ServeConfig& config);

}  // namespace rngmux
