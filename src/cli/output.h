#pragma once

#include <cstdint>
#include <span>

namespace rngmux {

// Writes bytes to stdout, raw or as lowercase hex; may be called repeatedly to
// stream. Returns false (after saying why on stderr) if stdout fails.
bool WriteOutput(std::span<const std::uint8_t> bytes, bool hex);
// Ends the output: the newline after hex, and a flush.
bool FinishOutput(bool hex);

}  // namespace rngmux
