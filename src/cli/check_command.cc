#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/output.h"
#include "common/interrupt.h"
#include "common/secure_memory.h"
#include "health/byte_statistics.h"
#include "health/fips140_2.h"
#include "sources/block_gate.h"
#include "sources/source.h"

namespace rngmux {
namespace {

struct CheckFlags {
  std::string source = "auto";
  std::size_t count = 1 << 20;
  bool json = false;
  double timeout_seconds = 300;
  double health_alpha_log2 = kDefaultHealthAlphaLog2;
  std::string log_level = "warning";
};

// FIPS 140-2 fails about 0.1% of good blocks; a check fails beyond 2 + 1% of them.
std::uint64_t AllowedFipsFailures(std::uint64_t blocks) { return 2 + blocks / 100; }

// What one check found; everything the report prints.
struct CheckReport {
  std::string source;
  double claim = 8;
  std::size_t requested = 0;
  std::size_t bytes = 0;
  double seconds = 0;
  std::string read_error;  // "" unless the source failed
  HealthCutoffs cutoffs{};
  std::uint64_t health_blocks_passed = 0;
  std::uint64_t health_blocks_failed = 0;
  std::uint64_t startup_blocks = 0;
  std::string last_health_failure;
  Fips140_2Counters fips;
  ByteStatistics stats;

  bool read_ok() const { return read_error.empty() && bytes == requested; }
  bool health_ok() const { return health_blocks_failed == 0; }
  // FIPS 140-2 expects unbiased bits: judged only for sources that claim 8 bits/byte.
  bool fips_judged() const { return claim >= 8; }
  bool fips_ok() const {
    return !fips_judged() || fips.failed_blocks <= AllowedFipsFailures(fips.blocks);
  }
  bool entropy_ok() const { return stats.min_entropy_upper_bound() + 1e-9 >= claim; }
  bool passed() const { return read_ok() && health_ok() && fips_ok() && entropy_ok(); }
  double rate() const { return seconds > 0 ? static_cast<double>(bytes) / seconds : 0; }
};

// A bar on stderr, redrawn at most ten times a second; only on a terminal.
class Progress {
 public:
  Progress(bool enabled, std::size_t total) : enabled_(enabled), total_(total) {}
  void Update(std::size_t done, double seconds) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    constexpr int kWidth = 30;
    const double fraction = static_cast<double>(done) / static_cast<double>(total_);
    const int filled = static_cast<int>(fraction * kWidth);
    std::fprintf(stderr, "\r[%s%s] %3.0f%%  %zu/%zu bytes  %.1f kB/s ",
                 std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(kWidth - filled), '.').c_str(),
                 fraction * 100, done, total_,
                 seconds > 0 ? static_cast<double>(done) / seconds / 1000 : 0.0);
  }
  void Finish() {
    if (enabled_) std::fputs("\r\033[K", stderr);
  }

 private:
  bool enabled_;
  std::size_t total_;
  std::chrono::steady_clock::time_point last_{};
};

std::string Verdict(bool ok) { return ok ? "PASS" : "FAIL"; }

void PrintHuman(const CheckReport& r) {
  std::printf("rngmux check: %s (claims %g bits/byte)\n", r.source.c_str(), r.claim);
  std::printf("  read         %zu of %zu bytes in %.2f s (%.1f kB/s)%s%s\n", r.bytes, r.requested,
              r.seconds, r.rate() / 1000, r.read_error.empty() ? "" : ": ", r.read_error.c_str());
  const std::string last =
      r.last_health_failure.empty() ? "" : " (last: " + r.last_health_failure + ")";
  std::printf("  SP 800-90B   RCT cutoff %u, APT %u/%u: %llu blocks passed, %llu failed%s  %s\n",
              r.cutoffs.rct_cutoff, r.cutoffs.apt_cutoff, r.cutoffs.apt_window,
              static_cast<unsigned long long>(r.health_blocks_passed),
              static_cast<unsigned long long>(r.health_blocks_failed), last.c_str(),
              Verdict(r.health_ok()).c_str());
  const Fips140_2Counters& f = r.fips;
  std::printf(
      "  FIPS 140-2   %llu blocks, %llu failed (monobit %llu, poker %llu, runs %llu, long run "
      "%llu, continuous %llu)  %s\n",
      static_cast<unsigned long long>(f.blocks), static_cast<unsigned long long>(f.failed_blocks),
      static_cast<unsigned long long>(f.monobit), static_cast<unsigned long long>(f.poker),
      static_cast<unsigned long long>(f.runs), static_cast<unsigned long long>(f.long_run),
      static_cast<unsigned long long>(f.continuous),
      r.fips_judged() ? Verdict(r.fips_ok()).c_str() : "(not judged below 8 bits/byte)");
  std::printf(
      "  entropy      min-entropy %.3f bits/byte (most common value, 99%%), at most %.3f "
      "plausible; Shannon %.4f  %s\n",
      r.stats.min_entropy_estimate(), r.stats.min_entropy_upper_bound(), r.stats.shannon_bits(),
      Verdict(r.entropy_ok()).c_str());
  std::printf("  chi-square   %.1f (255 degrees of freedom), p = %.4f\n", r.stats.chi_square(),
              r.stats.chi_square_p());
  std::printf("  mean         %.4f (127.5 if random), serial correlation %.6f\n", r.stats.mean(),
              r.stats.serial_correlation());
  std::printf("verdict: %s\n", Verdict(r.passed()).c_str());
}

// A text that may be absent: null when empty.
JsonReport OrNull(const std::string& text) {
  return text.empty() ? JsonReport() : JsonReport(text);
}

void PrintJson(const CheckReport& r) {
  const Fips140_2Counters& f = r.fips;
  JsonReport health = {{"rct_cutoff", r.cutoffs.rct_cutoff},
                       {"apt_cutoff", r.cutoffs.apt_cutoff},
                       {"apt_window", r.cutoffs.apt_window},
                       {"startup_blocks", r.startup_blocks},
                       {"blocks_passed", r.health_blocks_passed},
                       {"blocks_failed", r.health_blocks_failed},
                       {"last_failure", OrNull(r.last_health_failure)},
                       {"pass", r.health_ok()}};
  JsonReport fips = {{"blocks", f.blocks},
                     {"failed_blocks", f.failed_blocks},
                     {"monobit", f.monobit},
                     {"poker", f.poker},
                     {"runs", f.runs},
                     {"long_run", f.long_run},
                     {"continuous", f.continuous},
                     {"judged", r.fips_judged()},
                     {"pass", r.fips_ok()}};
  JsonReport entropy = {{"min_entropy_estimate", r.stats.min_entropy_estimate()},
                        {"min_entropy_upper_bound", r.stats.min_entropy_upper_bound()},
                        {"shannon", r.stats.shannon_bits()},
                        {"pass", r.entropy_ok()}};
  PrintJsonReport({{"source", r.source},
                   {"claimed_bits_per_byte", r.claim},
                   {"bytes_requested", r.requested},
                   {"bytes", r.bytes},
                   {"seconds", r.seconds},
                   {"bytes_per_second", r.rate()},
                   {"read_error", OrNull(r.read_error)},
                   {"health", health},
                   {"fips140_2", fips},
                   {"entropy", entropy},
                   {"chi_square", r.stats.chi_square()},
                   {"chi_square_p", r.stats.chi_square_p()},
                   {"mean", r.stats.mean()},
                   {"serial_correlation", r.stats.serial_correlation()},
                   {"pass", r.passed()}});
}

// Reads the source directly (no pool, no back-off): every raw block goes through the
// same BlockGate `serve` uses (FIPS 140-2 counted, not gating) and the statistics.
// A failed block is counted, not retried: the report says how the source behaves.
int RunCheck(const CheckFlags& flags) {
  if (Status status = ApplyLogLevel(flags.log_level); !status.ok()) {
    return ReportUsageError(status.message());
  }
  SourceFactoryContext context;
  context.allow_test_source = true;  // Checking is harmless; only serving them is refused.
  auto created = CreateSource(flags.source, context);
  if (!created.ok()) return ReportUsageError(created.status().message());
  std::unique_ptr<Source> source = std::move(created).value();

  CheckReport report;
  report.source = source->name();
  report.claim = source->claimed_entropy_bits_per_byte();
  report.requested = flags.count;
  // The gate `serve` uses, with FIPS 140-2 counted over every byte instead of gating,
  // and no conditioning: the report is about the source's raw bytes.
  BlockGate::Options gate_options;
  gate_options.alpha_log2 = flags.health_alpha_log2;
  gate_options.fips = BlockGate::Fips::kCount;
  gate_options.condition = false;
  BlockGate gate(report.claim, gate_options);
  report.cutoffs = gate.cutoffs();
  SecureBuffer block(BlockGate::BlockBytesFor(source->preferred_block_size(), gate_options.fips));

  // The deadline is enforced by interrupting the source, which may block in the kernel.
  Interrupt stop;
  std::thread watchdog([&stop, &flags] {
    stop.SleepFor(std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(flags.timeout_seconds)));
    stop.Trigger();
  });

  Progress progress(!flags.json && isatty(STDERR_FILENO) != 0, flags.count);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  while (report.bytes < flags.count && !stop.triggered()) {
    const std::size_t want = std::min(block.size(), flags.count - report.bytes);
    Result<std::size_t> got = source->Read(block.span().first(want), stop);
    if (!got.ok()) {
      report.read_error = got.status().message();
      break;
    }
    if (*got == 0) continue;  // interrupted, or nothing yet
    const auto raw = block.span().first(*got);
    report.bytes += raw.size();
    report.stats.Add(raw);
    const BlockGate::Outcome outcome = gate.Check(raw);
    switch (outcome.verdict) {
      case BlockGate::Verdict::kStartupInProgress:
        report.startup_blocks++;
        break;
      case BlockGate::Verdict::kPass:
        report.health_blocks_passed++;
        break;
      case BlockGate::Verdict::kFail:
        report.health_blocks_failed++;
        report.last_health_failure = outcome.failure;
        break;
    }
    SecureWipe(block.data(), block.size());
    progress.Update(report.bytes, elapsed());
  }
  report.seconds = elapsed();
  report.fips = gate.fips_counters();
  stop.Trigger();
  watchdog.join();
  progress.Finish();
  if (report.read_error.empty() && report.bytes < flags.count) {
    std::ostringstream why;
    why << "timed out after " << flags.timeout_seconds << " s";
    report.read_error = why.str();
  }

  if (flags.json) {
    PrintJson(report);
  } else {
    PrintHuman(report);
  }
  return report.passed() ? 0 : 1;
}

}  // namespace

Command AddCheckCommand(CLI::App& root) {
  auto flags = std::make_shared<CheckFlags>();
  CLI::App* app = root.add_subcommand(
      "check",
      "Read a source through the health tests and report: rate, SP 800-90B and FIPS 140-2 "
      "results, entropy estimates, chi-square, serial correlation. Exit 0 = pass, 1 = fail.");
  app->add_option("--source", flags->source, "auto, getrandom, rdseed, file:PATH or test:SEED")
      ->capture_default_str();
  app->add_option("-n,--bytes", flags->count, "Number of bytes to test")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 34));
  app->add_flag("--json", flags->json, "Print one JSON object instead of the report");
  app->add_option("--timeout", flags->timeout_seconds, "Give up after this many seconds")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 1e6));
  app->add_option("--health-alpha", flags->health_alpha_log2, "False-alarm rate of RCT/APT is 2^-N")
      ->capture_default_str()
      ->check(CLI::Range(20.0, 40.0));
  AddLogLevelOption(*app, flags->log_level);
  return Command{app, [flags] { return RunCheck(*flags); }};
}

}  // namespace rngmux
