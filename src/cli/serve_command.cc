#include <unistd.h>

#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/serve_flags.h"
#include "common/log.h"
#include "server/server.h"

namespace rngmux {
namespace {

// The configuration with the default control socket left out for a daemon that is
// not root: the default lives in /run, which is root's. A path named by the flag or
// the file is used as given.
Result<ServeConfig> LoadForThisUser(const ServeFlags& flags) {
  Result<ServeConfig> config = LoadServeConfig(flags);
  if (config.ok() && geteuid() != 0 && config->control_path == kDefaultControlPath) {
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
                   // Socket activation: taken before anything else can start a thread or
                   // a child that would see LISTEN_FDS.
                   auto inherited = InheritedSockets::FromEnvironment();
                   if (!inherited.ok()) return ReportUsageError(inherited.status().message());
                   Server server(std::move(config).value());
                   server.SetInheritedSockets(std::move(inherited).value());
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
