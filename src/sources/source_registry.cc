#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <fstream>
#include <optional>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/log.h"
#include "common/number_text.h"
#include "common/option_list.h"
#include "sources/drivers.h"
#include "sources/source.h"

namespace rngmux {
namespace {

Status SpecTextError(const std::string& text, const std::string& message) {
  return Status::Error("source \"" + text + "\": " + message);
}

std::string JoinNames(const std::set<std::string>& extra) {
  std::string names = "entropy, block";
  for (const std::string& name : extra) names += ", " + name;
  return names;
}

// "auto" is a row of the table like any other; it resolves to another spec and
// keeps the options it was given ("auto,entropy=6" -> "rdseed,entropy=6").
Result<std::unique_ptr<Source>> CreateAutoSource(const SourceSpec& spec,
                                                 const SourceFactoryContext& context) {
  Status options = ParseCommonSourceOptions(spec, 8, kDefaultBlockBytes).status();
  if (!options.ok()) return options;
  const AutoChoice choice = ResolveAutoSource();
  if (choice.fallback) {
    LOG_WARNING("source auto: no hardware entropy source found, using ", choice.reason);
  } else {
    LOG_INFO("source auto: using ", choice.reason);
  }
  const std::size_t comma = spec.text.find(',');
  const std::string suffix = comma == std::string::npos ? "" : spec.text.substr(comma);
  return CreateSource(choice.spec + suffix, context);
}

}  // namespace

Status SourceSpecError(const SourceSpec& spec, const std::string& message) {
  return SpecTextError(spec.text, message);
}

Result<SourceSpec> ParseSourceSpec(const std::string& text) {
  if (text.empty()) return SpecTextError(text, "empty source spec");
  if (HasNulByte(text)) return SpecTextError(text, std::string(kNulByteProblem));
  SourceSpec spec;
  spec.text = text;

  // The argument runs up to the first comma: paths with commas are not supported.
  const std::size_t comma = text.find(',');
  const std::string head = text.substr(0, comma);
  const std::size_t colon = head.find(':');
  spec.kind = head.substr(0, colon);
  if (colon != std::string::npos) spec.argument = head.substr(colon + 1);
  if (spec.kind.empty()) return SpecTextError(text, "missing source kind before \":\"");

  if (comma == std::string::npos) return spec;
  const std::optional<std::vector<OptionItem>> items =
      ParseOptionList(std::string_view(text).substr(comma + 1));
  if (!items) return SpecTextError(text, std::string(kNulByteProblem));
  for (const OptionItem& item : *items) {
    if (item.empty) return SpecTextError(text, "empty option between commas");
    if (item.key.empty()) return SpecTextError(text, "option \"" + item.text + "\" has no name");
    // "tls" alone switches TLS on (egd: sources); it is kept with an empty value.
    if (item.key == "tls" && !item.has_value) {
      if (item.repeated) return SpecTextError(text, "option \"tls\" given twice");
      spec.options.emplace(item.key, "");
      continue;
    }
    if (!item.has_value || item.value.empty()) {
      return SpecTextError(text,
                           "option \"" + item.key + "\" needs a value (" + item.key + "=...)");
    }
    if (item.repeated) return SpecTextError(text, "option \"" + item.key + "\" given twice");
    spec.options.emplace(item.key, item.value);
  }
  return spec;
}

Result<CommonSourceOptions> ParseCommonSourceOptions(const SourceSpec& spec,
                                                     double default_entropy_bits_per_byte,
                                                     std::size_t default_block_size,
                                                     const std::set<std::string>& extra_options) {
  for (const auto& [key, value] : spec.options) {
    // fips= is the runner's (ParseRunnerOptions), valid on every source.
    if (key != "entropy" && key != "block" && key != "fips" && !extra_options.contains(key)) {
      return SourceSpecError(
          spec, "unknown option \"" + key + "\" (known: " + JoinNames(extra_options) + ")");
    }
  }
  CommonSourceOptions options{default_entropy_bits_per_byte, default_block_size};
  if (const auto it = spec.options.find("entropy"); it != spec.options.end()) {
    const std::optional<double> bits = ParseNumber(it->second, 0.0, 8.0);
    if (!bits || *bits <= 0) {
      return SourceSpecError(spec,
                             "entropy must be bits per byte in (0, 8], got \"" + it->second + "\"");
    }
    options.entropy_bits_per_byte = *bits;
  }
  if (const auto it = spec.options.find("block"); it != spec.options.end()) {
    const std::optional<std::size_t> bytes =
        ParseNumber(it->second, kMinBlockBytes, kMaxBlockBytes);
    if (!bytes) {
      return SourceSpecError(
          spec, "block must be a byte count from " + std::to_string(kMinBlockBytes) + " to " +
                    std::to_string(kMaxBlockBytes) + ", got \"" + it->second + "\"");
    }
    options.block_size = *bytes;
  }
  if (const auto it = spec.options.find("threads"); it != spec.options.end()) {
    const std::optional<std::size_t> n = ParseNumber(it->second, std::size_t{1}, kMaxReaderThreads);
    if (!n) {
      return SourceSpecError(spec, "threads must be a number from 1 to " +
                                       std::to_string(kMaxReaderThreads) + ", got \"" + it->second +
                                       "\"");
    }
    options.threads = *n;
  }
  return options;
}

const std::vector<SourceKind>& SourceKinds() {
  static const std::vector<SourceKind> kinds = {
      {"auto",
       "auto",
       "the best hardware present: a QNG, else /dev/hwrng, else rdseed, else getrandom",
       {},
       CreateAutoSource},
      {"getrandom",
       "getrandom",
       "the kernel's CSPRNG via getrandom(2); not a hardware source; threads=N",
       {"threads"},
       CreateGetrandomSource},
      {"rdseed",
       "rdseed",
       "the CPU's RDSEED instruction (x86-64); threads=N",
       {"threads"},
       CreateRdseedSource},
      {"file",
       "file:PATH",
       "a device, tty or FIFO: /dev/hwrng, a serial TRNG",
       {},
       CreateFileSource},
      {"qwqng",
       "qwqng",
       "a QNG PQ4000KU through libqwqng, in a worker process; worker=PATH, timeout=SECONDS",
       {"worker", "sysfs", "timeout"},
       CreateQwqngSource},
      {"egd", "egd:ENDPOINT",
       "a relay from an upstream EGD server (another rngmux): egd:tcp:HOST:PORT or "
       "egd:unix:PATH; requests=N, timeout=SECONDS, TLS options",
       EgdOptionNames(), CreateEgdSource},
      {"test",
       "test:SEED",
       "TEST ONLY: predictable AES-CTR bytes from SEED; rate=BYTES_PER_SEC, threads=N",
       {"rate", "threads"},
       CreateTestSource},
  };
  return kinds;
}

Result<const SourceKind*> ValidateSourceSpec(const SourceSpec& spec) {
  const SourceKind* row = nullptr;
  for (const SourceKind& kind : SourceKinds()) {
    if (kind.name == spec.kind) row = &kind;
  }
  if (row == nullptr) {
    std::string known;
    for (const SourceKind& kind : SourceKinds()) {
      known += (known.empty() ? "" : ", ") + kind.usage;
    }
    return SourceSpecError(spec, "unknown kind \"" + spec.kind + "\" (known: " + known + ")");
  }
  const bool takes_argument = row->usage.find(':') != std::string::npos;
  if (takes_argument && spec.argument.empty()) {
    return SourceSpecError(spec, spec.kind + " needs an argument (" + row->usage + ")");
  }
  if (!takes_argument && !spec.argument.empty()) {
    return SourceSpecError(spec, spec.kind + " takes no argument");
  }
  // Keys and the values of the common options; the defaults do not matter here.
  if (Status common = ParseCommonSourceOptions(spec, 8, kDefaultBlockBytes, row->options).status();
      !common.ok()) {
    return common;
  }
  if (Status fips = ParseFipsOption(spec).status(); !fips.ok()) return fips;
  return row;
}

Result<SourceSpec> ValidateSourceSpec(const std::string& text) {
  Result<SourceSpec> spec = ParseSourceSpec(text);
  if (!spec.ok()) return spec.status();
  if (Status valid = ValidateSourceSpec(*spec).status(); !valid.ok()) return valid;
  return spec;
}

Result<std::unique_ptr<Source>> CreateSource(const std::string& text,
                                             const SourceFactoryContext& context) {
  Result<SourceSpec> spec = ParseSourceSpec(text);
  if (!spec.ok()) return spec.status();
  Result<const SourceKind*> kind = ValidateSourceSpec(*spec);
  if (!kind.ok()) return kind.status();
  return (*kind)->create(*spec, context);
}

AutoChoice ResolveAutoSource(const AutoProbe& probe) {
  // Order of preference, best first.
  const QwqngPresence qng = probe.probe_qwqng(probe.sysfs_root);
  if (qng.usable) return {"qwqng", false, qng.reason};
  if (qng.device_seen) LOG_WARNING("source auto: ", qng.reason, "; skipping it");
  std::string hwrng_missing;
  std::ifstream current_file(probe.rng_current_path);
  std::string current;
  if (!current_file || !std::getline(current_file, current)) {
    hwrng_missing = "no hardware RNG driver (" + probe.rng_current_path + " missing)";
  } else {
    while (!current.empty() && std::isspace(static_cast<unsigned char>(current.back()))) {
      current.pop_back();
    }
    if (current.empty() || current == "none") {
      hwrng_missing = "no active hardware RNG driver (rng_current: none)";
    } else if (const int fd = open(probe.hwrng_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
               fd < 0) {
      hwrng_missing = Status::FromErrno(probe.hwrng_path + ": open", errno).message();
      // A device that is there but unreadable is almost always a permissions
      // mistake; say so loudly instead of quietly serving something else.
      LOG_WARNING("source auto: hardware RNG ", current, " is present but ", hwrng_missing,
                  "; skipping it (grant read access to ", probe.hwrng_path, " to use it)");
    } else {
      close(fd);
      const std::string spec = "file:" + probe.hwrng_path;
      return {spec, false, spec + " (rng_current: " + current + ")"};
    }
  }
  if (probe.cpu_has_rdseed()) return {"rdseed", false, "rdseed (" + hwrng_missing + ")"};
  return {"getrandom", true,
          "getrandom (" + hwrng_missing +
              "; the CPU has no RDSEED; the kernel CSPRNG is a "
              "fallback, not a hardware source)"};
}

AutoChoice ResolveAutoSource() { return ResolveAutoSource(AutoProbe{}); }

Result<bool> ParseFipsOption(const SourceSpec& spec) {
  const auto it = spec.options.find("fips");
  if (it == spec.options.end() || it->second == "off") return false;
  if (it->second == "on") return true;
  return SourceSpecError(spec, "fips must be on or off, got \"" + it->second + "\"");
}

}  // namespace rngmux
