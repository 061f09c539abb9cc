#include "sources/block_gate.h"

#include <algorithm>

namespace rngmux {
namespace {

// "monobit", "poker+runs", ...: which FIPS 140-2 tests a block failed, for logs.
std::string FailedFipsTests(const Fips140_2Result& r) {
  std::string out;
  auto add = [&out](bool ok, const char* name) {
    if (ok) return;
    if (!out.empty()) out += '+';
    out += name;
  };
  add(r.monobit, "monobit");
  add(r.poker, "poker");
  add(r.runs, "runs");
  add(r.long_run, "long-run");
  add(r.continuous, "continuous");
  return out;
}

}  // namespace

BlockGate::BlockGate(double claimed_bits_per_byte, Options options)
    : claim_(claimed_bits_per_byte),
      options_(options),
      monitor_(claimed_bits_per_byte, options.alpha_log2),
      fips_carry_(options.fips == Fips::kCount ? Fips140_2Tester::kBlockBytes : 1) {
  // Below full entropy, what is handed out is SHA-256 conditioned (see conditioner.h).
  if (options_.condition && claim_ < 8) conditioner_.emplace(claim_);
  if (options_.fips != Fips::kOff) fips_.emplace();
}

std::size_t BlockGate::BlockBytesFor(std::size_t preferred, Fips fips) {
  preferred = std::max<std::size_t>(preferred, 1);
  if (fips != Fips::kGate) return preferred;
  const std::size_t unit = Fips140_2Tester::kBlockBytes;
  return (preferred + unit - 1) / unit * unit;
}

std::size_t BlockGate::conditioner_input_bytes() const {
  return conditioner_ ? conditioner_->input_bytes_per_output() : 0;
}

std::string BlockGate::Describe() const {
  std::string out;
  if (options_.fips == Fips::kGate) out += "FIPS 140-2 block tests on";
  if (conditioner_) {
    if (!out.empty()) out += "; ";
    out += "SHA-256 conditioned, " + std::to_string(conditioner_->input_bytes_per_output()) +
           " bytes in per 32 out";
  }
  return out;
}

void BlockGate::Reset() {
  monitor_ = HealthMonitor(claim_, options_.alpha_log2);
  if (conditioner_) conditioner_->Reset();
  if (fips_) fips_->Reset();
  SecureWipe(fips_carry_.span());
  fips_carry_size_ = 0;
  WipeOutput();
}

void BlockGate::WipeOutput() {
  if (conditioned_) SecureWipe(conditioned_->data(), conditioned_size_);
  conditioned_size_ = 0;
}

std::string BlockGate::RunFips(std::span<const std::uint8_t> bytes) {
  constexpr std::size_t kUnit = Fips140_2Tester::kBlockBytes;
  std::string failed;
  auto test = [&](const std::uint8_t* at) {
    const Fips140_2Result r = fips_->Test(std::span<const std::uint8_t, kUnit>(at, kUnit));
    fips_counters_.Add(r);
    if (!r.passed() && failed.empty()) failed = FailedFipsTests(r);
  };
  if (options_.fips == Fips::kGate) {
    // Stop at the first failing block: the whole block is dropped anyway.
    for (std::size_t at = 0; at + kUnit <= bytes.size() && failed.empty(); at += kUnit) {
      test(bytes.data() + at);
    }
    return failed;
  }
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t n = std::min(bytes.size() - i, kUnit - fips_carry_size_);
    std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(i), n,
                fips_carry_.data() + fips_carry_size_);
    fips_carry_size_ += n;
    i += n;
    if (fips_carry_size_ == kUnit) {
      test(fips_carry_.data());
      SecureWipe(fips_carry_.span());
      fips_carry_size_ = 0;
    }
  }
  return failed;
}

BlockGate::Outcome BlockGate::Check(std::span<const std::uint8_t> block) {
  WipeOutput();
  Outcome outcome;
  switch (monitor_.Check(block)) {
    case HealthMonitor::Verdict::kStartupInProgress:
      outcome.verdict = Verdict::kStartupInProgress;
      break;
    case HealthMonitor::Verdict::kPass:
      outcome.verdict = Verdict::kPass;
      break;
    case HealthMonitor::Verdict::kFail:
      outcome.verdict = Verdict::kFail;
      outcome.failure = monitor_.last_failure();
      break;
  }
  // Counting looks at every byte; gating only at bytes that would otherwise pass.
  if (options_.fips == Fips::kCount) {
    RunFips(block);
  } else if (options_.fips == Fips::kGate && outcome.verdict == Verdict::kPass) {
    if (std::string failed = RunFips(block); !failed.empty()) {
      outcome.verdict = Verdict::kFail;
      outcome.failure = "FIPS 140-2 " + failed;
      outcome.fips_failed = true;
    }
  }
  if (outcome.verdict != Verdict::kPass) return outcome;
  if (!conditioner_) {
    outcome.output = block;
    return outcome;
  }
  const std::size_t need = conditioner_->MaxOutput(block.size());
  if (!conditioned_ || conditioned_->size() < need) {
    conditioned_.emplace(need + Conditioner::kOutputBytes);
  }
  conditioned_size_ = conditioner_->Condition(block, conditioned_->span().first(need));
  outcome.output = std::span<const std::uint8_t>(conditioned_->data(), conditioned_size_);
  return outcome;
}

}  // namespace rngmux
