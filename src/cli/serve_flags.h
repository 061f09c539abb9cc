#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "config/serve_settings.h"
#include "server/server.h"

namespace rngmux {

// The flags `serve` and `check-config` share: --config and every setting. Registered
// on a command's parser; read after it has parsed.
struct ServeFlags {
  std::string config_file;  // --config: "" for none
  ServeSettings settings;   // the values the flags left (defaults where not given)
  // Each setting's option with its key, to tell the flags given from the defaults.
  // They belong to the parser AddServeFlags registered them on: NoteGivenFlags reads
  // them while it is alive, and clears them.
  std::vector<std::pair<const CLI::Option*, std::string>> options;
};

// Adds --config and the setting flags to `app`, writing into `flags` (which must
// outlive the parse).
void AddServeFlags(CLI::App& app, ServeFlags& flags);

// Records in `flags.settings.given` which settings were given on the command line,
// and forgets the parser's options: called once the parser has parsed and before it
// is freed. Every LoadServeConfig after it (each reload) reads the record.
void NoteGivenFlags(ServeFlags& flags);

// The configuration serve runs with: the file named by --config (if any), with each
// flag given on the command line in place of the file's value (--source, --listen,
// --connect and --qemu-chardev replace the file's list of their kind), validated.
// Reads the file; called again for each reload. Errors are one line. Which flags were
// given comes from the parser until NoteGivenFlags, then from its record.
Result<ServeConfig> LoadServeConfig(const ServeFlags& flags);

}  // namespace rngmux
