#include "cli/cli.h"

#include <cstdio>
#include <functional>
#include <string>
#include <utility>
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

// Parses the command line. Returns the command to run, or sets `exit_code` and
// returns nothing when parsing was the whole answer (help, version, a usage error).
std::function<int()> ParseCommandLine(int argc, char** argv, int& exit_code) {
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
      exit_code =
          ReportUsageError("unknown command \"" + word + "\" (expected " + kCommandList + ")");
      return nullptr;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    exit_code = app.exit(e);
    return nullptr;
  } catch (const CLI::CallForAllHelp& e) {
    exit_code = app.exit(e);
    return nullptr;
  } catch (const CLI::CallForVersion& e) {
    exit_code = app.exit(e);
    return nullptr;
  } catch (const CLI::ParseError& e) {
    exit_code = ReportUsageError(e.what());
    return nullptr;
  }
  for (Command& command : commands) {
    if (!command.app->parsed()) continue;
    if (command.parsed) command.parsed();
    return std::move(command.run);
  }
  exit_code =
      ReportUsageError(std::string("no subcommand given (") + kCommandList + "); see --help");
  return nullptr;
}

}  // namespace

int RunCli(int argc, char** argv) {
  int exit_code = 0;
  std::function<int()> run = ParseCommandLine(argc, argv, exit_code);
  // The parser and its option tables are gone by now: a daemon runs without them.
  return run ? run() : exit_code;
}

}  // namespace rngmux
