#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "cli/commands.h"
#include "cli/output.h"
#include "common/secure_memory.h"
#include "pool/entropy_pool.h"
#include "sources/source_runner.h"

namespace rngmux {
namespace {

struct ReadFlags {
  std::string source = "auto";
  std::size_t count = 0;
  bool hex = false;
  double timeout_seconds = 30;
  std::string log_level = "error";
};

// Reads through the same runner, health tests and pool as `serve`, so the bytes
// printed are exactly what the daemon would hand out (for a test source, the
// same stream in the same order).
int RunRead(const ReadFlags& flags) {
  if (Status status = ApplyLogLevel(flags.log_level); !status.ok()) {
    return ReportUsageError(status.message());
  }
  SourceFactoryContext context;
  context.allow_test_source = true;  // Reading is harmless; only serving them is refused.
  auto source = CreateSource(flags.source, context);
  if (!source.ok()) return ReportUsageError(source.status().message());
  const std::string name = (*source)->name();

  EntropyPool pool(64 * 1024);
  std::mutex mutex;
  std::condition_variable ready;
  pool.SetDataReadyCallback([&] {
    std::lock_guard<std::mutex> lock(mutex);
    ready.notify_all();
  });
  SourceRunner runner(std::move(source).value(), pool, SourceRunner::Options{});
  runner.Start();

  SecureBuffer bytes(flags.count);
  std::size_t have = 0;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(flags.timeout_seconds));
  while (have < flags.count) {
    have += pool.Take(bytes.span().subspan(have));
    if (have == flags.count) break;
    // `read` is a check: a source that fails to read is the answer, not a reason to wait.
    if (runner.counters().read_errors > 0) break;
    if (std::chrono::steady_clock::now() >= deadline) break;
    // Data wakes us at once; errors are noticed within a tenth of a second.
    std::unique_lock<std::mutex> lock(mutex);
    ready.wait_for(lock, std::chrono::milliseconds(100), [&] { return pool.Available() > 0; });
  }
  runner.Stop();
  if (const std::string error = runner.last_error(); have < flags.count && !error.empty()) {
    std::fprintf(stderr, "rngmux: error: %s\n", error.c_str());
    return 1;
  }
  if (have < flags.count) {
    std::fprintf(stderr,
                 "rngmux: error: %s: got %zu of %zu bytes within %g s (read errors: %llu, "
                 "failed health-test blocks: %llu)\n",
                 name.c_str(), have, flags.count, flags.timeout_seconds,
                 static_cast<unsigned long long>(runner.counters().read_errors.load()),
                 static_cast<unsigned long long>(runner.counters().blocks_failed.load()));
    return 1;
  }
  const bool written = WriteOutput(std::span<const std::uint8_t>(bytes.data(), have), flags.hex);
  if (!written || !FinishOutput(flags.hex)) return 1;
  // Which source answered is the point of the check (auto may not pick the device
  // the user thinks it does), so say it, on stderr to keep stdout clean.
  std::fprintf(stderr, "rngmux: %zu health-tested bytes from %s\n", have, name.c_str());
  return 0;
}

}  // namespace

Command AddReadCommand(CLI::App& root) {
  auto flags = std::make_shared<ReadFlags>();
  CLI::App* app = root.add_subcommand(
      "read", "Read N health-tested bytes from a source to stdout (check a device works).");
  app->add_option("--source", flags->source,
                  "auto, getrandom, rdseed, file:PATH, qwqng or test:SEED")
      ->capture_default_str();
  app->add_option("-n,--bytes", flags->count, "Number of bytes")
      ->required()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  app->add_flag("--hex", flags->hex, "Print lowercase hex and a newline instead of raw bytes");
  app->add_option("--timeout", flags->timeout_seconds, "Give up after this many seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  AddLogLevelOption(*app, flags->log_level);
  return Command{app, [flags] { return RunRead(*flags); }};
}

}  // namespace rngmux
