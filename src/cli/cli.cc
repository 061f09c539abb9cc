#include "cli/cli.h"

#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/log.h"
#include "common/version.h"

namespace rngmux {

void AddLogLevelOption(CLI::App& app, std::string& level) {
  app.add_option("--log-level", level, "debug, info, warning or error")->capture_default_str();
}

Status ApplyLogLevel(const std::string& level) {
  LogLevel parsed;
  if (!ParseLogLevel(level, &parsed)) {
    return Status::Error("--log-level \"" + level + "\": expected debug, info, warning or error");
  }
  SetLogLevel(parsed);
  return Status::Ok();
}

int ReportUsageError(const std::string& message) {
  std::fprintf(stderr, "rngmux: error: %s\n", message.c_str());
  return kUsageExitCode;
}

namespace {
constexpr char kCommandList[] =
    "serve, read, fetch, check, bench, check-config, status, stats or reload";
}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app(
      "rngmux: serves true random numbers from hardware generators to virtual "
      "machines and other consumers over the EGD protocol.",
      "rngmux");
  app.set_version_flag("--version", std::string("rngmux ") + kVersion);
  app.require_subcommand(1);
  app.failure_message([](const CLI::App*, const CLI::Error& e) { return std::string(e.what()); });

  std::vector<Command> commands = {
      AddServeCommand(app),  AddReadCommand(app),  AddFetchCommand(app),
      AddCheckCommand(app),  AddBenchCommand(app), AddCheckConfigCommand(app),
      AddStatusCommand(app), AddStatsCommand(app), AddReloadCommand(app)};
  // CLI11 would only say "A subcommand is required"; name the word it did not know.
  if (argc > 1 && argv[1][0] != '-') {
    const std::string word = argv[1];
    bool known = false;
    for (const Command& command : commands) known |= command.app->get_name() == word;
    if (!known) {
      return ReportUsageError("unknown command \"" + word + "\" (expected " + kCommandList + ")");
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return ReportUsageError(e.what());
  }
  for (const Command& command : commands) {
    if (command.app->parsed()) return command.run();
  }
  return ReportUsageError(std::string("no subcommand given (") + kCommandList + "); see --help");
}

}  // namespace rngmux
