#include "cli/serve_flags.h"

#include "cli/commands.h"
#include "config/config_file.h"

namespace rngmux {

void AddServeFlags(CLI::App& app, ServeFlags& flags) {
  ServeSettings& s = flags.settings;
  auto note = [&flags](CLI::Option* option, const char* key) {
    flags.options.emplace_back(option, key);
  };
  app.add_option("--config", flags.config_file,
                 "Configuration file (TOML; see docs/configuration.md); flags given here "
                 "override its values, and SIGHUP reads it again");
  note(app.add_option("--source", s.sources,
                      "Entropy source: auto (default), getrandom, rdseed, file:PATH, qwqng, "
                      "test:SEED (options: ,entropy=BITS ,block=BYTES ,fips=on); repeat for "
                      "several, most preferred first"),
       "source");
  note(app.add_option("--source-mode", s.source_mode,
                      "With several sources: failover (the best healthy one serves) or mix (the "
                      "XOR of all of them; nothing is served while one is unhealthy)")
           ->capture_default_str(),
       "source-mode");
  note(app.add_option("--mix-min-sources", s.min_mix_sources,
                      "Mix only: go on mixing the healthy sources while at least N of them "
                      "deliver, instead of waiting for all (logged as DEGRADED, mix_degraded=1 "
                      "in stats)"),
       "mix-min-sources");
  note(app.add_option(
           "--listen", s.listen,
           "Endpoint to listen on: tcp:HOST:PORT, tcp:[IPV6]:PORT or unix:PATH, with "
           "options ,qemu ,lead=BYTES ,raw ,mode=OCTAL; or udp:HOST:PORT with ,allow=NET+NET "
           ",rate=BYTES ,burst=BYTES ,idle=SECONDS ,peers=N; or vhost-user:PATH [,mode=OCTAL] "
           "for QEMU's vhost-user-rng-pci (repeatable)"),
       "listen");
  note(app.add_option("--connect", s.connect,
                      "Endpoint to connect to and keep reconnecting: tcp:HOST:PORT or unix:PATH, "
                      "with options ,qemu ,lead=BYTES ,raw; or udp:HOST:PORT with "
                      ",local=ADDR:PORT ,qemu ,lead=BYTES ,rate=BYTES ,burst=BYTES "
                      ",idle=SECONDS; or vhost-user:PATH (QEMU's vhost-user-rng-pci with "
                      "server=on) (repeatable)"),
       "connect");
  note(app.add_option("--qemu-chardev", s.qemu_chardev,
                      "The -chardev value given to QEMU (e.g. 'socket,id=c0,host=127.0.0.1,"
                      "port=1024' or 'udp,id=c0,host=127.0.0.1,port=1024'), or for vhost-user "
                      "'socket,id=c0,path=P -device vhost-user-rng-pci,chardev=c0', or with "
                      "TLS '...,tls-creds=t0 -object tls-creds-x509,id=t0,dir=DIR,endpoint=...' "
                      "(rngmux reads DIR in the other role); rngmux takes the other side with "
                      "QEMU compatibility on (repeatable)"),
       "qemu-chardev");
  note(app.add_option("--pool-size", s.pool_bytes, "Bytes of tested entropy to keep ready")
           ->capture_default_str(),
       "pool-size");
  note(app.add_flag("--allow-test-source", s.allow_test_source,
                    "Allow test:SEED, a predictable source for tests and benchmarks only"),
       "allow-test-source");
  note(app.add_option("--max-queued-requests", s.max_queued_requests,
                      "Requests one client may have waiting before it is disconnected")
           ->capture_default_str(),
       "max-queued-requests");
  note(app.add_option("--max-clients", s.max_clients,
                      "Connections served at once; more are closed at once with a log line")
           ->capture_default_str(),
       "max-clients");
  note(app.add_option("--write-threads", s.write_threads,
                      "Threads that write replies to plain TCP and unix clients, beside the "
                      "event loop (0: it writes them itself)")
           ->capture_default_str(),
       "write-threads");
  note(app.add_option("--health-alpha", s.health_alpha_log2,
                      "False-alarm rate of the SP 800-90B health tests, as N in 2^-N")
           ->capture_default_str(),
       "health-alpha");
  AddLogLevelOption(app, s.log_level);
  note(app.get_option("--log-level"), "log-level");
  note(app.add_option("--control", s.control,
                      "Unix socket for rngmux status, stats and reload (\"none\" for none)")
           ->capture_default_str(),
       "control");
  note(app.add_option("--metrics", s.metrics,
                      "Serve Prometheus metrics over HTTP on tcp:HOST:PORT (default: off)"),
       "metrics");
  note(app.add_option("--user", s.user,
                      "Started as root: once sources are opened and sockets bound, become this "
                      "user (NAME or UID) for good, with no capabilities left"),
       "user");
  note(app.add_option("--group", s.group,
                      "With --user: the group (NAME or GID) to become; default the user's "
                      "primary group"),
       "group");
  note(app.add_option("--seccomp", s.seccomp,
                      "System call filter once started: on (a call outside the allow-list "
                      "kills rngmux), log (such calls are only logged by the kernel; for "
                      "debugging) or off")
           ->capture_default_str(),
       "seccomp");
}

namespace {

void AddGivenFlags(const ServeFlags& flags, ServeSettings& settings) {
  for (const auto& [option, key] : flags.options) {
    if (option->count() > 0) settings.given[key] = "--" + key;
  }
}

}  // namespace

void NoteGivenFlags(ServeFlags& flags) {
  flags.settings.given.clear();
  AddGivenFlags(flags, flags.settings);
  flags.options = {};
}

Result<ServeConfig> LoadServeConfig(const ServeFlags& flags) {
  ServeSettings command_line = flags.settings;
  AddGivenFlags(flags, command_line);  // the parser's own answer, until it was noted
  if (flags.config_file.empty()) return BuildServeConfig(command_line);
  Result<ServeSettings> file = LoadConfigFile(flags.config_file);
  if (!file.ok()) return file.status();
  return BuildServeConfig(OverlaySettings(std::move(file).value(), command_line));
}

}  // namespace rngmux
