// `rngmux status`, `rngmux stats` and `rngmux reload`: clients of the control socket.

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/control_client.h"
#include "cli/output.h"
#include "cli/status_text.h"

namespace rngmux {
namespace {

// Longer than the daemon's own request timeout, so its answer is what is seen.
constexpr std::chrono::seconds kControlTimeout{15};

struct ControlFlags {
  std::string path = kDefaultControlPath;
  bool json = false;
};

void AddControlOptions(CLI::App& app, ControlFlags& flags, bool json) {
  app.add_option("--control", flags.path, "The daemon's control socket")->capture_default_str();
  if (json) app.add_flag("--json", flags.json, "Print one JSON object for scripts");
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "rngmux: error: %s\n", message.c_str());
  return 1;
}

// The reply's field `key`, or the error the daemon gave.
Result<nlohmann::ordered_json> Ask(const ControlFlags& flags, const char* request,
                                   const char* key) {
  auto reply = ControlRequest(flags.path, request, kControlTimeout);
  if (!reply.ok()) return reply.status();
  if (!reply->value("ok", false)) {
    return Status::Error(reply->value("error", std::string("the daemon refused the request")));
  }
  if (!reply->contains(key))
    return Status::Error("the daemon's answer has no \"" + std::string(key) + "\"");
  return (*reply)[key];
}

int RunStatus(const ControlFlags& flags) {
  auto status = Ask(flags, "status", "status");
  if (!status.ok()) return Fail(status.status().message());
  if (flags.json) {
    PrintJsonReport(*status);
  } else {
    std::fputs(FormatStatusText(*status).c_str(), stdout);
  }
  return 0;
}

int RunStats(const ControlFlags& flags) {
  auto stats = Ask(flags, "stats", "stats");
  if (!stats.ok()) return Fail(stats.status().message());
  if (flags.json) {
    PrintJsonReport(*stats);
    return 0;
  }
  for (const auto& [key, value] : stats->items()) {
    const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
    std::printf("%s=%s\n", key.c_str(), text.c_str());
  }
  return 0;
}

int RunReload(const ControlFlags& flags) {
  auto reply = ControlRequest(flags.path, "reload", kControlTimeout);
  if (!reply.ok()) return Fail(reply.status().message());
  if (!reply->value("ok", false)) {
    std::fprintf(stderr, "rngmux: reload failed: %s\n",
                 reply->value("error", std::string("(no reason given)")).c_str());
    return 1;
  }
  std::printf("reloaded: %s\n", reply->value("message", std::string()).c_str());
  return 0;
}

}  // namespace

Command AddStatusCommand(CLI::App& root) {
  auto flags = std::make_shared<ControlFlags>();
  CLI::App* app = root.add_subcommand(
      "status", "Show the running daemon: sources, pool, endpoints, busiest clients, reloads.");
  AddControlOptions(*app, *flags, true);
  return Command{app, [flags] { return RunStatus(*flags); }};
}

Command AddStatsCommand(CLI::App& root) {
  auto flags = std::make_shared<ControlFlags>();
  CLI::App* app =
      root.add_subcommand("stats", "Print the running daemon's counters, one key=value a line.");
  AddControlOptions(*app, *flags, true);
  return Command{app, [flags] { return RunStats(*flags); }};
}

Command AddReloadCommand(CLI::App& root) {
  auto flags = std::make_shared<ControlFlags>();
  CLI::App* app = root.add_subcommand(
      "reload", "Make the running daemon read its configuration again (as SIGHUP does).");
  AddControlOptions(*app, *flags, false);
  return Command{app, [flags] { return RunReload(*flags); }};
}

}  // namespace rngmux
