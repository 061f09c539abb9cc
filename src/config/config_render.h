#pragma once

#include <string>

#include "server/server.h"

namespace rngmux {

// The configuration file (TOML) that gives `config`: every top-level key with its
// effective value, then a [[source]] per source and a [[listen]] or [[connect]] per
// endpoint (QEMU -chardev endpoints as the endpoints they stand for, the default
// endpoint written out). ParseConfig accepts it back, and the configuration it gives
// renders to the same text (`rngmux check-config` prints this; round trip tested).
std::string RenderConfig(const ServeConfig& config);

}  // namespace rngmux
