#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/serve_flags.h"
#include "common/log.h"
#include "server/server.h"

namespace rngmux {

Command AddServeCommand(CLI::App& root) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* app = root.add_subcommand(
      "serve", "Run the daemon: read a source, health-test it, serve it over EGD.");
  AddServeFlags(*app, *flags);
  app->footer(std::string("With no endpoint, listens on ") + kDefaultEndpoint +
              " and prints the QEMU arguments to use it.");

  return Command{app, [flags] {
                   auto config = LoadServeConfig(*flags);
                   if (!config.ok()) return ReportUsageError(config.status().message());
                   if (Status status = ApplyLogLevel(config->log_level); !status.ok()) {
                     return ReportUsageError(status.message());
                   }
                   for (const std::string& warning : ServeConfigWarnings(*config)) {
                     LOG_WARNING(warning);
                   }
                   Server server(std::move(config).value());
                   // SIGHUP: the file again, with the same command-line flags over it.
                   server.SetReloader([flags] { return LoadServeConfig(*flags); });
                   Status opened = server.Open();
                   if (!opened.ok()) {
                     std::fprintf(stderr, "rngmux: error: %s\n", opened.message().c_str());
                     return 1;
                   }
                   return server.Run();
                 }};
}

}  // namespace rngmux
