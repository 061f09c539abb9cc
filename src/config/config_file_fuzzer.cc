// libFuzzer target for ParseConfig (the TOML configuration file) and the validation
// after it. Traps unless a rejected file says why with "FILE:LINE: ", and unless an
// accepted one renders (RenderConfig, what check-config prints) to text that parses
// and validates back to a configuration rendering the same.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config_file.h"
#include "config/config_render.h"
#include "config/serve_settings.h"

namespace {

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

constexpr char kFileName[] = "fuzz.toml";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rngmux;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const Result<ServeSettings> settings = ParseConfig(text, kFileName);
  if (!settings.ok()) {
    Check(settings.status().message().rfind(std::string(kFileName) + ":", 0) == 0);
    return 0;
  }
  const Result<ServeConfig> config = BuildServeConfig(settings.value());
  if (!config.ok()) {
    Check(!config.status().message().empty());
    return 0;
  }
  const std::string rendered = RenderConfig(config.value());
  const Result<ServeSettings> again = ParseConfig(rendered, kFileName);
  Check(again.ok());
  const Result<ServeConfig> config_again = BuildServeConfig(again.value());
  Check(config_again.ok());
  Check(RenderConfig(config_again.value()) == rendered);
  return 0;
}
