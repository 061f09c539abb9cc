#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "config/serve_settings.h"  // kDefaultControlPath

namespace rngmux {

// Where `rngmux serve` puts its control socket unless told otherwise.

// Sends one request line to the control socket at `path` and returns the daemon's
// JSON reply. Errors are one line: "cannot reach the daemon at PATH: connect: ...",
// "the daemon at PATH closed the connection without an answer (...)".
Result<nlohmann::ordered_json> ControlRequest(const std::string& path, const std::string& request,
                                              std::chrono::milliseconds timeout);

}  // namespace rngmux
