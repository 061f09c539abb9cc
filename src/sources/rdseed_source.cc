#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/secure_memory.h"
#include "sources/drivers.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace rngmux {

#if defined(__x86_64__)
namespace {

// RDSEED reports "no seed ready" by clearing the carry flag when the conditioner
// is drained (several cores hammering it). Intel's guidance is to retry; after this
// many back-to-back misses the thread yields for kPause instead of burning a core.
constexpr int kSpinsBeforePause = 1000;
constexpr std::chrono::microseconds kPause{100};

// Only this function is compiled for RDSEED, so the rest of the binary keeps the
// baseline ISA and the factory can refuse cleanly on CPUs without it.
__attribute__((target("rdseed"))) bool RdseedStep(std::uint64_t* value) {
  unsigned long long raw = 0;
  const bool ok = _rdseed64_step(&raw) != 0;
  *value = raw;
  return ok;
}

class RdseedSource final : public Source {
 public:
  RdseedSource(std::string name, CommonSourceOptions options)
      : name_(std::move(name)), options_(options) {}

  const std::string& name() const override { return name_; }
  double claimed_entropy_bits_per_byte() const override { return options_.entropy_bits_per_byte; }
  std::size_t preferred_block_size() const override { return options_.block_size; }
  std::size_t reader_threads() const override { return options_.threads; }
  std::unique_ptr<Source> NewReader(std::size_t /*k*/) const override {
    return std::make_unique<RdseedSource>(name_, options_);
  }

  Result<std::size_t> Read(std::span<std::uint8_t> out, const Interrupt& stop) override {
    std::size_t filled = 0;
    int misses = 0;
    while (filled < out.size()) {
      std::uint64_t value = 0;
      if (RdseedStep(&value)) {
        const std::size_t n = std::min(sizeof value, out.size() - filled);
        std::memcpy(out.data() + filled, &value, n);
        SecureWipe(&value, sizeof value);  // The part past `n` is never used.
        filled += n;
        misses = 0;
        continue;
      }
      if (++misses < kSpinsBeforePause) {
        _mm_pause();
        continue;
      }
      // Starved: hand over what we have rather than sit on it, else wait a little.
      if (filled > 0) break;
      if (!stop.SleepFor(kPause)) return std::size_t{0};
      misses = 0;
    }
    return filled;
  }

 private:
  std::string name_;
  CommonSourceOptions options_;
};

}  // namespace

bool CpuHasRdseed() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (ebx & bit_RDSEED) != 0;
}

Result<std::unique_ptr<Source>> CreateRdseedSource(const SourceSpec& spec,
                                                   const SourceFactoryContext& /*context*/) {
  Result<CommonSourceOptions> options =
      ParseCommonSourceOptions(spec, 8, kDefaultBlockBytes, {"threads"});
  if (!options.ok()) return options.status();
  if (!CpuHasRdseed()) return Status::Error("rdseed: this CPU has no RDSEED instruction");
  return std::unique_ptr<Source>(std::make_unique<RdseedSource>(spec.text, *options));
}

#else  // !defined(__x86_64__)

bool CpuHasRdseed() { return false; }

// The row stays in the table on other architectures and says why it cannot work.
Result<std::unique_ptr<Source>> CreateRdseedSource(const SourceSpec& /*spec*/,
                                                   const SourceFactoryContext& /*context*/) {
  return Status::Error("rdseed: not compiled in (x86-64 only)");
}

#endif

}  // namespace rngmux
