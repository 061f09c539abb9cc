#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "common/clock.h"
#include "common/log.h"
#include "common/number_text.h"
#include "common/secure_memory.h"
#include "sources/drivers.h"

namespace rngmux {
namespace {

// If the consumer stalls, the rate limit lets the source catch up by at most this
// much, like a device with a small output FIFO: a paused pool is followed by a short
// burst, not by everything the device "would have" produced meanwhile.
constexpr std::chrono::milliseconds kMaxCatchUp{100};
// Rate-limited reads are cut into pieces of about this much time, so that slow
// rates still deliver steadily instead of one block at a time.
constexpr std::uint64_t kPiecesPerSecond = 20;
constexpr std::uint64_t kNanosPerSecond = 1'000'000'000;
constexpr int kMaxCipherChunk = 1 << 20;

// A deterministic stand-in for hardware, for tests and demos ONLY: the AES-256-CTR
// keystream under key SHA-256(SEED) and a zero IV. The same SEED always yields the
// same bytes, so anyone who knows the seed knows the output. Its name says so in
// every log line and stat, and the factory refuses it unless explicitly allowed.
class TestSource final : public Source {
 public:
  TestSource(std::string name, const std::string& seed, CommonSourceOptions options,
             std::uint64_t rate_bytes_per_second, const Clock& clock)
      : name_(std::move(name)),
        seed_(seed),
        options_(options),
        rate_(rate_bytes_per_second),
        clock_(clock),
        cipher_(EVP_CIPHER_CTX_new()) {
    std::uint8_t key[32];
    std::uint8_t iv[16] = {};
    unsigned key_size = 0;
    const bool ok =
        cipher_ != nullptr &&
        EVP_Digest(seed.data(), seed.size(), key, &key_size, EVP_sha256(), nullptr) == 1 &&
        EVP_EncryptInit_ex(cipher_, EVP_aes_256_ctr(), nullptr, key, iv) == 1;
    SecureWipe(key, sizeof key);
    if (!ok) throw std::runtime_error("test source: OpenSSL AES-256-CTR setup failed");
  }
  ~TestSource() override { EVP_CIPHER_CTX_free(cipher_); }
  TestSource(const TestSource&) = delete;
  TestSource& operator=(const TestSource&) = delete;

  const std::string& name() const override { return name_; }
  double claimed_entropy_bits_per_byte() const override { return options_.entropy_bits_per_byte; }
  std::size_t preferred_block_size() const override { return options_.block_size; }
  std::size_t reader_threads() const override { return options_.threads; }
  // Thread k > 0 reads the stream of seed "SEED/k": every byte served is still in a
  // stream a test can compute.
  std::unique_ptr<Source> NewReader(std::size_t k) const override {
    return std::make_unique<TestSource>(name_, seed_ + "/" + std::to_string(k), options_, rate_,
                                        clock_);
  }

  Result<std::size_t> Read(std::span<std::uint8_t> out, const Interrupt& stop) override {
    std::size_t size = out.size();
    if (rate_ != 0) {
      size = std::min<std::size_t>(size, std::max<std::uint64_t>(1, rate_ / kPiecesPerSecond));
      // ready_at_ is when the bytes handed out so far are "paid for" at rate_; the
      // long-run rate is exact because the schedule is cumulative, not per read.
      const Clock::TimePoint now = clock_.Now();
      if (!started_) {
        ready_at_ = now;
        started_ = true;
      } else if (ready_at_ < now - kMaxCatchUp) {
        ready_at_ = now - kMaxCatchUp;
      }
      if (ready_at_ > now && !stop.SleepFor(ready_at_ - now)) return std::size_t{0};
      nanos_owed_ += size * kNanosPerSecond;
      ready_at_ += Clock::Duration(static_cast<Clock::Duration::rep>(nanos_owed_ / rate_));
      nanos_owed_ %= rate_;
    }
    // The keystream is the encryption of zeros; in-place is fine for a stream cipher.
    std::memset(out.data(), 0, size);
    for (std::size_t done = 0; done < size;) {
      const int chunk = static_cast<int>(std::min<std::size_t>(size - done, kMaxCipherChunk));
      int written = 0;
      if (EVP_EncryptUpdate(cipher_, out.data() + done, &written, out.data() + done, chunk) != 1 ||
          written != chunk) {
        return Status::Error(name_ + ": AES-256-CTR failed");
      }
      done += static_cast<std::size_t>(chunk);
    }
    return size;
  }

 private:
  std::string name_;
  std::string seed_;
  CommonSourceOptions options_;
  std::uint64_t rate_;  // bytes per second, 0 = unlimited
  const Clock& clock_;
  EVP_CIPHER_CTX* cipher_;
  bool started_ = false;
  Clock::TimePoint ready_at_{};
  std::uint64_t nanos_owed_ = 0;  // remainder of bytes * 1e9 not yet turned into time
};

}  // namespace

Result<std::unique_ptr<Source>> CreateTestSource(const SourceSpec& spec,
                                                 const SourceFactoryContext& context) {
  if (!context.allow_test_source) {
    return SourceSpecError(
        spec, "test sources produce predictable bytes; pass --allow-test-source to use one");
  }
  Result<CommonSourceOptions> options =
      ParseCommonSourceOptions(spec, 8, kDefaultBlockBytes, {"rate", "threads"});
  if (!options.ok()) return options.status();
  std::uint64_t rate = 0;
  if (const auto it = spec.options.find("rate"); it != spec.options.end()) {
    const std::optional<std::uint64_t> parsed =
        ParseNumber<std::uint64_t>(it->second, 1, std::numeric_limits<std::uint64_t>::max());
    if (!parsed) {
      return SourceSpecError(
          spec, "rate must be a positive number of bytes per second, got \"" + it->second + "\"");
    }
    rate = *parsed;
    if (options->threads > 1) {
      return SourceSpecError(spec, "rate= paces one stream; give it without threads=");
    }
  }
  LOG_WARNING("source ", spec.text, ": TEST SOURCE, its bytes are predictable from the seed");
  return std::unique_ptr<Source>(std::make_unique<TestSource>(
      spec.text + "[TEST-ONLY]", spec.argument, *options, rate, SteadyClock::Instance()));
}

}  // namespace rngmux
