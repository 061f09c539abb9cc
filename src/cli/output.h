#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace rngmux {

// Writes bytes to stdout, raw or as lowercase hex; may be called repeatedly to
// stream. Returns false (after saying why on stderr) if stdout fails.
bool WriteOutput(std::span<const std::uint8_t> bytes, bool hex);
// Ends the output: the newline after hex, and a flush.
bool FinishOutput(bool hex);

// `s` as a JSON string literal, quotes included (for the --json reports).
std::string JsonString(const std::string& s);

}  // namespace rngmux
