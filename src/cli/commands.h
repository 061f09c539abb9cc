#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "common/status.h"

namespace rngmux {

// A subcommand: its CLI11 parser and what to run once it has parsed. Each
// command keeps its raw option values to itself and validates them into an
// immutable config inside `run`, which returns the process exit code.
//
// The parser is freed before `run` starts (a daemon should not carry its option
// tables for its lifetime), so what only the parser knows (which flags were given)
// is read in `parsed`, which runs first, while the parser is alive.
struct Command {
  CLI::App* app;
  std::function<int()> run;
  std::function<void()> parsed = nullptr;
};

Command AddServeCommand(CLI::App& root);
Command AddReadCommand(CLI::App& root);
Command AddFetchCommand(CLI::App& root);
Command AddCheckCommand(CLI::App& root);
Command AddBenchCommand(CLI::App& root);
Command AddCheckConfigCommand(CLI::App& root);
Command AddStatusCommand(CLI::App& root);
Command AddStatsCommand(CLI::App& root);
Command AddReloadCommand(CLI::App& root);

// --log-level, shared by the commands that log.
void AddLogLevelOption(CLI::App& app, std::string& level);
// Sets the process log level from the option's text.
Status ApplyLogLevel(const std::string& level);

// "rngmux: error: <message>" on stderr; returns the exit code for usage errors.
int ReportUsageError(const std::string& message);
// The exit code for usage errors (bad flags, bad specs).
inline constexpr int kUsageExitCode = 2;

}  // namespace rngmux
