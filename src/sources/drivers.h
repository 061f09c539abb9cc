#pragma once

// Private to src/sources: the drivers' factories and the option handling they
// share. Everything outside this folder goes through source.h.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "common/status.h"
#include "sources/source.h"

namespace rngmux {

// The options every driver understands, validated.
struct CommonSourceOptions {
  double entropy_bits_per_byte;  // (0, 8]
  std::size_t block_size;        // [kMinBlockBytes, kMaxBlockBytes]
  std::size_t threads = 1;       // [1, kMaxReaderThreads]; threads= where the kind takes it
};

inline constexpr std::size_t kMinBlockBytes = 16;
inline constexpr std::size_t kMaxBlockBytes = 65536;
inline constexpr std::size_t kDefaultBlockBytes = 4096;
inline constexpr std::size_t kMaxReaderThreads = 64;

// Checks that `spec` has no options beyond entropy=, block= and `extra_options`,
// and returns entropy/block with the driver's defaults filled in. Errors name the
// spec: `source "getrandom,foo=1": unknown option "foo" (known: entropy, block, threads)`.
Result<CommonSourceOptions> ParseCommonSourceOptions(
    const SourceSpec& spec, double default_entropy_bits_per_byte, std::size_t default_block_size,
    const std::set<std::string>& extra_options = {});

// `source "<spec.text>": <message>`, the shape of every factory error.
Status SourceSpecError(const SourceSpec& spec, const std::string& message);

// Whether the CPU executes RDSEED (CPUID leaf 7, EBX bit 18). False off x86-64.
bool CpuHasRdseed();

Result<std::unique_ptr<Source>> CreateGetrandomSource(const SourceSpec& spec,
                                                      const SourceFactoryContext& context);
Result<std::unique_ptr<Source>> CreateRdseedSource(const SourceSpec& spec,
                                                   const SourceFactoryContext& context);
Result<std::unique_ptr<Source>> CreateFileSource(const SourceSpec& spec,
                                                 const SourceFactoryContext& context);
Result<std::unique_ptr<Source>> CreateTestSource(const SourceSpec& spec,
                                                 const SourceFactoryContext& context);
// egd:ENDPOINT, a relay from an upstream EGD server (egd_source.cc).
Result<std::unique_ptr<Source>> CreateEgdSource(const SourceSpec& spec,
                                                const SourceFactoryContext& context);
// Its options beyond entropy=, block= and fips=: requests=, timeout= and the TLS
// options of tls/tls_options.h that a connecting side takes.
const std::set<std::string>& EgdOptionNames();
inline constexpr std::size_t kDefaultEgdRequests = 8;  // "02 FF" requests outstanding
inline constexpr std::size_t kMaxEgdRequests = 64;
inline constexpr unsigned kDefaultEgdTimeoutSeconds = 5;
inline constexpr unsigned kMaxEgdTimeoutSeconds = 300;

// The upstream of an egd: source: "tcp:HOST:PORT" (an IPv6 host in brackets) or
// "unix:PATH". Errors name the text: `egd upstream "tcp:x": expected tcp:HOST:PORT`.
struct EgdUpstream {
  std::string text;  // as written, "tcp:10.0.0.1:7000"
  bool unix_socket = false;
  std::string host;  // tcp, without brackets
  std::uint16_t port = 0;
  std::string path;  // unix
};
Result<EgdUpstream> ParseEgdUpstream(const std::string& text);

Result<std::unique_ptr<Source>> CreateQwqngSource(const SourceSpec& spec,
                                                  const SourceFactoryContext& context);
// Whether this build has libqwqng support (rngmux-qwqng-worker was built).
bool QwqngCompiledIn();
// The driver behind CreateQwqngSource, which first refuses when the support is
// not compiled in. The driver itself holds no vendor code (its worker does), so
// tests run it with a scripted worker (worker=PATH) in any build.
// `worker_seccomp`: the worker's own filter, "off", "on" or "log".
Result<std::unique_ptr<Source>> CreateQwqngDriver(const SourceSpec& spec,
                                                  const std::string& worker_seccomp = "off");

// Where rngmux looks for its QNG worker: beside its own executable.
std::string DefaultQwqngWorkerPath();

// What `auto` learns about a QNG PQ4000KU from sysfs alone (it never opens the
// device, so the probe is cheap and cannot hang).
struct QwqngPresence {
  bool usable = false;       // a device, the support compiled in and the worker installed
  bool device_seen = false;  // a device is there, usable or not
  std::string reason;        // "qwqng (QNG QWR4M004 at /sys/bus/usb/devices/1-1)"
};
QwqngPresence ProbeQwqng(const std::string& sysfs_root);
QwqngPresence ProbeQwqng(const std::string& sysfs_root, const std::string& worker_path,
                         bool compiled_in);

// Where ResolveAutoSource looks; tests point these at a temporary directory.
struct AutoProbe {
  std::string rng_current_path = "/sys/class/misc/hw_random/rng_current";
  std::string hwrng_path = "/dev/hwrng";
  bool (*cpu_has_rdseed)() = CpuHasRdseed;
  std::string sysfs_root = "/sys";
  QwqngPresence (*probe_qwqng)(const std::string& sysfs_root) = ProbeQwqng;
};
AutoChoice ResolveAutoSource(const AutoProbe& probe);

}  // namespace rngmux
