#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

namespace rngmux {

// Writes bytes to stdout, raw or as lowercase hex; may be called repeatedly to
// stream. Returns false (after saying why on stderr) if stdout fails.
bool WriteOutput(std::span<const std::uint8_t> bytes, bool hex);
// Ends the output: the newline after hex, and a flush.
bool FinishOutput(bool hex);

// The --json reports of check and bench: one object, keys in insertion order, printed
// on one line to stdout. Non-finite numbers print as null; invalid UTF-8 in strings
// (a path, an error text) is replaced, never thrown on.
using JsonReport = nlohmann::ordered_json;
void PrintJsonReport(const JsonReport& report);

}  // namespace rngmux
