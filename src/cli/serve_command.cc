#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/serve_flags.h"
#include "common/log.h"
#include "sandbox/file_opener.h"
#include "sandbox/privileges.h"
#include "sandbox/seccomp_filter.h"
#include "server/server.h"
#include "sources/source.h"

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

int Fail(const std::string& message) {
  std::fprintf(stderr, "rngmux: error: %s\n", message.c_str());
  return 1;
}

// The user to drop to, if rngmux is to drop at all: only root drops. A daemon that
// already runs as that user (systemd's User=) goes on as it is.
Result<std::optional<TargetIdentity>> PlanDrop(const ServeConfig& config) {
  if (config.user.empty()) return std::optional<TargetIdentity>();
  Result<TargetIdentity> target = ResolveIdentity(config.user, "user", config.group, "group");
  if (!target.ok()) return target.status();
  if (geteuid() == 0 && target->uid != 0) return std::optional<TargetIdentity>(*target);
  if (geteuid() == target->uid && getegid() == target->gid) return std::optional<TargetIdentity>();
  return Status::Error("user \"" + config.user + "\": only root can become another user");
}

// The paths of the file: sources the file opener may open for a daemon without root.
std::vector<std::string> FileSourcePaths(const ServeConfig& config) {
  std::vector<std::string> paths;
  for (const std::string& text : config.sources) {
    Result<SourceSpec> spec = ValidateSourceSpec(text);
    if (spec.ok() && spec->kind == "file") paths.push_back(spec->argument);
  }
  return paths;
}

// Unix socket files bound as root, given to the user rngmux becomes so that it can
// remove them at a reload or at shutdown (in a sticky directory such as /tmp only the
// owner may). lchown: never follow a link someone put in the socket's place.
// Socket files systemd passed in are systemd's and keep their owner.
void GiveSocketFiles(const ServeConfig& config, const TargetIdentity& target,
                     const std::vector<std::string>& passed) {
  std::vector<std::string> paths;
  for (const EndpointSpec& endpoint : config.endpoints) {
    if (endpoint.role == EndpointRole::kListen && IsUnixSocketEndpoint(endpoint) &&
        std::find(passed.begin(), passed.end(), "unix:" + endpoint.path) == passed.end()) {
      paths.push_back(endpoint.path);
    }
  }
  if (!config.control_path.empty()) paths.push_back(config.control_path);
  for (const std::string& path : paths) {
    if (lchown(path.c_str(), target.uid, target.gid) != 0) {
      LOG_WARNING(Status::FromErrno(path + ": lchown", errno).message(),
                  "; it may be left behind at shutdown");
    }
  }
}

}  // namespace

Command AddServeCommand(CLI::App& root) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* app = root.add_subcommand(
      "serve", "Run the daemon: read a source, health-test it, serve it over EGD.");
  AddServeFlags(*app, *flags);
  app->footer(std::string("With no endpoint, listens on ") + kDefaultEndpoint +
              " and prints the QEMU arguments to use it.");

  return Command{
      app,
      [flags] {
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
        // The order matters (docs/security.md): no core dumps from the
        // start; the file opener forked while there is one thread; sources
        // and sockets set up as root; the drop; the filter last, before
        // any client is served.
        if (Status status = DisableCoreDumps(); !status.ok()) {
          return Fail(status.message());
        }
        // Socket activation: taken before any thread or child could see LISTEN_FDS.
        auto inherited = InheritedSockets::FromEnvironment();
        if (!inherited.ok()) return ReportUsageError(inherited.status().message());
        std::vector<std::string> passed_addresses;
        for (const InheritedSocket& socket : inherited->sockets()) {
          passed_addresses.push_back(socket.address);
        }
        auto drop = PlanDrop(*config);
        if (!drop.ok()) return Fail(drop.status().message());
        const std::optional<TargetIdentity> target = *drop;
        const ServeConfig start_config = *config;
        std::shared_ptr<FileOpener> opener;
        if (target) {
          auto started = FileOpener::Start(FileSourcePaths(*config));
          if (!started.ok()) return Fail(started.status().message());
          opener = std::move(started).value();
        }
        Server server(std::move(config).value());
        server.SetInheritedSockets(std::move(inherited).value());
        if (opener) {
          server.SetFileOpener([opener](const std::string& path) { return opener->Open(path); });
        }
        // SIGHUP: the file again, with the same command-line flags over it.
        server.SetReloader([flags] { return LoadForThisUser(*flags); });
        Status opened = server.Open();
        if (!opened.ok()) return Fail(opened.message());
        if (target) {
          GiveSocketFiles(start_config, *target, passed_addresses);
          if (Status dropped = DropPrivileges(*target); !dropped.ok()) {
            return Fail(dropped.message());
          }
          LOG_INFO("running as user ", target->user, " (uid ", target->uid, "), group ",
                   target->group, " (gid ", target->gid, "), without capabilities");
        }
        const std::string failed = LoadSeccompFilter(SeccompProfile::kDaemon, start_config.seccomp);
        if (!failed.empty()) return Fail("seccomp: " + failed);
        if (start_config.seccomp == SeccompMode::kLog) {
          LOG_WARNING("seccomp filter in log mode: calls outside it are only logged");
        }
        return server.Run();
      },
      [flags] { NoteGivenFlags(*flags); }};
}

}  // namespace rngmux
