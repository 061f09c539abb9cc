#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "config/serve_settings.h"

namespace rngmux {

// The configuration file of `rngmux serve` (TOML). Keys are the long flag names
// without "--"; see docs/configuration.md and etc/rngmux.toml.
//
//   log-level = "info"
//   pool-size = 262144
//   qemu-chardev = ["socket,id=c0,host=127.0.0.1,port=1025"]
//
//   [[source]]
//   spec = "file:/dev/hwrng"
//   entropy = 6                 # any source option: folded into the spec as entropy=6
//
//   [[listen]]                  # also [[connect]]
//   address = "tcp:127.0.0.1:1024"
//   qemu = true                 # flag options are booleans
//   weight = 2                  # numbers are integers
//   allow = ["127.0.0.0/8", "::1"]   # "+" lists are arrays of strings
//
// Each [[source]], [[listen]] and [[connect]] table becomes the spec text the command
// line would give ("tcp:127.0.0.1:1024,qemu,weight=2,allow=127.0.0.0/8+::1") and is
// validated by the same parser. Tables are numbered from 0 in messages, in the order
// of the file. Errors are one line, "FILE:LINE: " and the key:
//   rngmux.toml:3: parse error: ...                         (toml++'s description)
//   rngmux.toml:7: unknown key "pool-sise"
//   rngmux.toml:7: listen[0]: unknown key "wieght"
//   rngmux.toml:7: listen[0].weight: expected an integer, got a string
//   rngmux.toml:12: listen[1].allow: "10.0.0.0/4" is too wide: ...
//   rngmux.toml:9: listen[1]: missing key "address"
//   rngmux.toml:14: listen[1].address: endpoint "listen tcp:127.0.0.1:1024" is given twice
//   rngmux.toml:5: source[0]: unknown key "rat" (known: spec, entropy, block, fips, rate)
//   rngmux.toml:4: pool-size: expected an integer, got a string
//   rngmux.toml:2: non-ASCII character outside a comment line (in a string, write it as
//       \uXXXX)        (toml++ 3.3.0 has undefined behaviour on some; see config_file.cc)
// A value error that no single key causes (a combination of options) names the line
// of the table's [[...]] header and the table. Range checks of top-level values are
// BuildServeConfig's, which names them through ServeSettings::given
// ("rngmux.toml:4: pool-size 1: must be 4096 to 1073741824 bytes").
//
// Parses no more than the text it is given: no I/O (user and group names in allow-user=
// and allow-group= are looked up, as on the command line). Fuzzed by config_file_fuzzer.
Result<ServeSettings> ParseConfig(std::string_view text, const std::string& file_name);

// Reads `path` and parses it; a file that cannot be read is one line
// ("/etc/rngmux/rngmux.toml: No such file or directory"). Never blocks: anything but a
// regular file (a FIFO, a device, a socket) is refused ("PATH: not a regular file").
Result<ServeSettings> LoadConfigFile(const std::string& path);

// How an endpoint option is written in the file.
enum class EndpointKeyType {
  kFlag,     // qemu = true        -> ",qemu" (false: left out)
  kInteger,  // weight = 2         -> ",weight=2"
  kString,   // mode = "0660"      -> ",mode=0660"
  kList,     // allow = ["a", "b"] -> ",allow=a+b"
  kOnOff,    // tls-verify = false -> ",tls-verify=off"
};
// The type of an endpoint option key, or nothing for a key the grammar does not have.
std::optional<EndpointKeyType> EndpointKeyTypeOf(std::string_view key);

}  // namespace rngmux
