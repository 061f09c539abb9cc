#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "common/secure_memory.h"
#include "health/conditioner.h"
#include "health/fips140_2.h"
#include "health/health_monitor.h"

namespace rngmux {

// The one pipeline every raw block of a source goes through, in `serve` (SourceRunner)
// and in `check` alike: SP 800-90B RCT/APT (with the start-up test), optionally the
// FIPS 140-2 block tests, then, for a source that claims less than 8 bits/byte, the
// SHA-256 conditioner. Pure: no I/O, no threads, no clock; the caller reads, backs
// off, logs and counts. Not thread-safe.
//
//   BlockGate gate(source.claimed_entropy_bits_per_byte(), {.fips = BlockGate::Fips::kGate});
//   BlockGate::Outcome o = gate.Check(block);
//   if (o.verdict == BlockGate::Verdict::kPass) pool.Put(o.output);  // o.output lives in gate
//   if (o.verdict == BlockGate::Verdict::kFail) gate.Reset();        // prove it again
class BlockGate {
 public:
  enum class Fips {
    kOff,    // not run
    kGate,   // a block that fails any FIPS 140-2 test fails (blocks must be whole
             // multiples of Fips140_2Tester::kBlockBytes; see BlockBytesFor)
    kCount,  // every byte is tested and counted in fips_counters(), verdicts unaffected
             // (what `check` reports); a tail shorter than 2500 bytes waits for more
  };
  struct Options {
    double alpha_log2 = kDefaultHealthAlphaLog2;
    Fips fips = Fips::kOff;
    bool condition = true;  // condition below 8 bits/byte (`check` looks at raw bytes)
  };
  enum class Verdict {
    kStartupInProgress,  // consumed by the start-up test; nothing to hand out
    kPass,               // `output` may be handed out
    kFail,               // wipe and drop the block; `failure` says why
  };
  struct Outcome {
    Verdict verdict = Verdict::kStartupInProgress;
    // kPass: the bytes to hand out, the block itself or conditioned bytes held by the
    // gate (possibly empty while the conditioner gathers input). Valid until the next
    // Check/Reset; the caller wipes it with WipeOutput().
    std::span<const std::uint8_t> output;
    // kFail: "RCT", "APT" or "FIPS 140-2 monobit+runs".
    std::string failure;
    bool fips_failed = false;  // kFail by a FIPS 140-2 test
  };

  BlockGate(double claimed_bits_per_byte, Options options);

  // The block size to read: `preferred` rounded up to whole FIPS 140-2 blocks under
  // Fips::kGate.
  static std::size_t BlockBytesFor(std::size_t preferred, Fips fips);

  Outcome Check(std::span<const std::uint8_t> block);
  // After a break in the stream (read error, failure, standby): start-up test again,
  // conditioner and FIPS continuous test forget their carry.
  void Reset();
  // Wipes conditioned output held by the gate.
  void WipeOutput();

  const HealthCutoffs& cutoffs() const { return monitor_.cutoffs(); }
  bool startup_complete() const { return monitor_.startup_complete(); }
  bool conditioning() const { return conditioner_.has_value(); }
  // Conditioner input bytes per 32 bytes out (0 when not conditioning).
  std::size_t conditioner_input_bytes() const;
  const Fips140_2Counters& fips_counters() const { return fips_counters_; }
  // "FIPS 140-2 block tests on; SHA-256 conditioned, 80 bytes in per 32 out" (for logs).
  std::string Describe() const;

 private:
  // Runs FIPS 140-2 on whole blocks of `bytes` (kGate) or on the carried stream
  // (kCount); returns the failed tests of the first failing block, "" if none.
  std::string RunFips(std::span<const std::uint8_t> bytes);

  const double claim_;
  const Options options_;
  HealthMonitor monitor_;
  std::optional<Conditioner> conditioner_;
  std::optional<Fips140_2Tester> fips_;
  Fips140_2Counters fips_counters_;
  SecureBuffer fips_carry_;  // kCount: a partial 2500-byte block
  std::size_t fips_carry_size_ = 0;
  std::optional<SecureBuffer> conditioned_;
  std::size_t conditioned_size_ = 0;
};

}  // namespace rngmux
