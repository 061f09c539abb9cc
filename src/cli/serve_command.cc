#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/serve_flags.h"
#include "common/log.h"
#include "server/server.h"

namespace rngmux {
namespace {

// The configuration with the default control socket left out for a daemon that is
// not root and cannot write its directory: the default lives in /run, which is root's,
// unless the service manager made /run/rngmux the daemon's (RuntimeDirectory=). A
// path other than the default is used as given.
Result<ServeConfig> LoadForThisUser(const ServeFlags& flags) {
  Result<ServeConfig> config = LoadServeConfig(flags);
  if (config.ok() && geteuid() != 0 && config->control_path == kDefaultControlPath &&
      access(std::filesystem::path(kDefaultControlPath).parent_path().c_str(), W_OK) != 0) {
    config->control_path.clear();
  }
  return config;
}

}  // namespace

Command AddServeCommand(CLI::App& root) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* app = root.add_subcommand(
      "serve", "Run the daemon: read a source, health-test it, serve it over EGD.");
  AddServeFlags(*app, *flags);
  app->footer(std::string("With no endpoint, listens on ") + kDefaultEndpoint +
              " and prints the QEMU arguments to use it.");

  return Command{app, [flags] {
                   auto config = LoadForThisUser(*flags);
                   if (!config.ok()) return ReportUsageError(config.status().message());
                   if (Status status = ApplyLogLevel(config->log_level); !status.ok()) {
                     return ReportUsageError(status.message());
                   }
                   for (const std::string& warning : ServeConfigWarnings(*config)) {
                     LOG_WARNING(warning);
                   }
                   if (config->control_path.empty() && geteuid() != 0) {
                     LOG_INFO("no control socket (not root); give --control PATH for one");
                   }
                   Server server(std::move(config).value());
                   // SIGHUP: the file again, with the same command-line flags over it.
                   server.SetReloader([flags] { return LoadForThisUser(*flags); });
                   Status opened = server.Open();
                   if (!opened.ok()) {
                     std::fprintf(stderr, "rngmux: error: %s\n", opened.message().c_str());
                     return 1;
                   }
                   return server.Run();
                 }};
}

}  // namespace rngmux
