#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/interrupt.h"
#include "common/status.h"

namespace rngmux {

// An entropy source driver: it only reads bytes. Health tests, accounting,
// back-off and threading live in SourceRunner and apply to every driver alike.
//
// Thread-safety: a Source is used by one thread at a time (its runner's thread).
class Source {
 public:
  virtual ~Source() = default;

  // The spec it was made from, e.g. "file:/dev/hwrng"; names it in logs and stats.
  virtual const std::string& name() const = 0;

  // Claimed min-entropy per byte in bits, (0, 8]. Drives the health-test cutoffs.
  virtual double claimed_entropy_bits_per_byte() const = 0;

  // Reads up to out.size() bytes; blocks until at least one byte is available,
  // `stop` is triggered, or an error occurs. Returns the number of bytes written to
  // out (0 only when `stop` was triggered), or an error naming what failed
  // ("/dev/hwrng: read: Input/output error", "/dev/ttyUSB0: end of file").
  // After an error the caller backs off and calls Read again; a driver that needs
  // to reopen its device does so lazily inside that next Read.
  virtual Result<std::size_t> Read(std::span<std::uint8_t> out, const Interrupt& stop) = 0;

  // Preferred block size for reading and health-testing, in bytes.
  virtual std::size_t preferred_block_size() const { return 4096; }

  // How many threads the runner reads this source on (threads=N on the fast
  // sources, where one thread is the ceiling); 1 for the rest.
  virtual std::size_t reader_threads() const { return 1; }
  // Another reader of the same generator for the runner's thread k, 1 <= k <
  // reader_threads(), with state of its own (each thread's stream is health-tested on
  // its own). Null if the driver cannot be read on more than one thread.
  virtual std::unique_ptr<Source> NewReader(std::size_t /*k*/) const { return nullptr; }

  // Driver-specific "key=value" pairs for the stats line (a device's own
  // statistics, a helper process's restarts): keys in a stable order, values
  // without spaces. Unlike Read, called from any thread: a driver that has such
  // stats guards them itself.
  virtual std::vector<std::pair<std::string, std::string>> ExtraStats() const { return {}; }
};

// Options common to all source specs: "KIND[:ARG][,key=value...]".
//   entropy=BITS   claimed min-entropy per byte, overrides the driver's default
struct SourceSpec {
  std::string kind;                            // "file", "getrandom", ...
  std::string argument;                        // "/dev/hwrng" for "file:/dev/hwrng"
  std::map<std::string, std::string> options;  // "entropy" -> "4"
  std::string text;                            // the spec as written
};

// Parses "file:/dev/hwrng,entropy=6". Errors name the offending input:
//   source "": empty source spec
//   source "file:/x,entropy": option "entropy" needs a value (entropy=...)
Result<SourceSpec> ParseSourceSpec(const std::string& text);
// The spec's fips=on|off (default off): FIPS 140-2 block tests in the runner.
Result<bool> ParseFipsOption(const SourceSpec& spec);

struct SourceFactoryContext {
  bool allow_test_source = false;  // `serve` refuses test sources unless told otherwise.
  // How file: sources open their path (at first and after every end of file or
  // error): by default open() in the daemon itself; a daemon that dropped root asks
  // its file opener (sandbox/file_opener.h). Returns a descriptor the caller owns,
  // opened O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_NOCTTY. Called on source threads.
  std::function<Result<int>(const std::string& path)> open_file;
  // The QNG worker loads a seccomp filter of its own (sandbox/seccomp_filter.h) in
  // this mode: "off", "on" or "log".
  std::string worker_seccomp = "off";
};

// One row of the table of sources, chosen by name (never by position).
struct SourceKind {
  std::string name;         // "getrandom"
  std::string usage;        // "getrandom" or "file:PATH"
  std::string description;  // one line for --help
  // Options beyond the common entropy=, block= and fips=.
  std::set<std::string> options;
  // Builds the driver, or explains why not ("rdseed: this CPU has no RDSEED instruction").
  std::function<Result<std::unique_ptr<Source>>(const SourceSpec&, const SourceFactoryContext&)>
      create;
};

const std::vector<SourceKind>& SourceKinds();

// Checks a spec without making the source: known kind, argument as the kind's usage
// says, known options, valid entropy=, block= and fips= values. The one validation
// both `serve`'s config (a usage error, exit 2) and CreateSource use, so
// "getrandom,foo=1" and "getrandom,fips=maybe" fail alike. Driver-specific values
// (rate=, timeout=) are checked when the driver is made.
Result<SourceSpec> ValidateSourceSpec(const std::string& text);

// Makes a source from a spec string, including "auto" (the best hardware present,
// see ResolveAutoSource). Errors name the spec: `source "foo": unknown kind "foo"
// (known: auto, getrandom, rdseed, file:PATH, qwqng, test:SEED)`.
Result<std::unique_ptr<Source>> CreateSource(const std::string& spec,
                                             const SourceFactoryContext& context);

// The spec "auto" stands for on this host, and whether it is a fallback that
// deserves a warning: a QNG PQ4000KU in sysfs (when rngmux has qwqng support and
// its worker), else a readable /dev/hwrng with an active driver, else rdseed when
// the CPU has it, else getrandom (fallback = true).
struct AutoChoice {
  std::string spec;
  bool fallback = false;
  std::string reason;  // "file:/dev/hwrng (rng_current: virtio_rng.0)"
};
AutoChoice ResolveAutoSource();

}  // namespace rngmux
