#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/serve_flags.h"
#include "config/config_render.h"
#include "transport/tls_handshake.h"

namespace rngmux {

Command AddCheckConfigCommand(CLI::App& root) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* app = root.add_subcommand(
      "check-config",
      "Validate the configuration serve would run with (--config and serve's flags) and "
      "print it as a configuration file; reads the TLS files endpoints name, opens no "
      "socket.");
  AddServeFlags(*app, *flags);
  return Command{app,
                 [flags] {
                   auto config = LoadServeConfig(*flags);
                   if (!config.ok()) return ReportUsageError(config.status().message());
                   // Certificates and keys load now, as serve would load them.
                   for (const EndpointSpec& endpoint : config->endpoints) {
                     auto tls = MakeEndpointTlsContext(endpoint);
                     if (!tls.ok()) return ReportUsageError(tls.status().message());
                   }
                   for (const std::string& warning : ServeConfigWarnings(*config)) {
                     std::fprintf(stderr, "rngmux: warning: %s\n", warning.c_str());
                   }
                   const std::string text = RenderConfig(*config);
                   std::fwrite(text.data(), 1, text.size(), stdout);
                   return std::fflush(stdout) == 0 ? 0 : 1;
                 },
                 [flags] { NoteGivenFlags(*flags); }};
}

}  // namespace rngmux
