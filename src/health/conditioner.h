#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace rngmux {

// Turns bytes that carry less than 8 bits of min-entropy each into full-entropy bytes
// with SHA-256, a vetted conditioning component (SP 800-90B section 3.1.5.1.1).
//
// Why this shape: SP 800-90B (3.1.5.1.2) credits a vetted conditioner's n_out-bit
// output with full entropy only when its input carries at least n_out + 64 bits of
// min-entropy (the same margin SP 800-90C asks of full-entropy sources). So every
// 32-byte output is the SHA-256 of exactly ceil((256 + 64) / H) input bytes, where H
// is the source's claimed min-entropy per byte: a source claiming 4 bits/byte gives
// 32 bytes out for every 80 in; one claiming 1 bit/byte, 32 for every 320. Inputs
// are consumed once and never overlap, so no input byte is credited twice. Health
// tests run on the raw input first (they need the source's own statistics), and the
// output is credited with 8 bits/byte in the pool and in EGD's 0x00 answer.
// A source that claims 8 bits/byte needs no conditioning and is not passed through it.
//
// Stateful across calls: input that does not complete a 32-byte output is kept (and
// wiped when consumed or on destruction). Not thread-safe.
class Conditioner {
 public:
  static constexpr std::size_t kOutputBytes = 32;
  static constexpr unsigned kSafetyMarginBits = 64;

  // entropy_bits_per_byte in (0, 8).
  explicit Conditioner(double entropy_bits_per_byte);
  ~Conditioner();
  Conditioner(const Conditioner&) = delete;
  Conditioner& operator=(const Conditioner&) = delete;

  // Input bytes that make one 32-byte output: ceil((256 + 64) / H).
  std::size_t input_bytes_per_output() const { return input_per_output_; }
  // Upper bound on what Condition() can write for `input_bytes` more input.
  std::size_t MaxOutput(std::size_t input_bytes) const;

  // Feeds `input`; writes whole 32-byte outputs to `out` (which must hold
  // MaxOutput(input.size()) bytes) and returns how many bytes it wrote.
  std::size_t Condition(std::span<const std::uint8_t> input, std::span<std::uint8_t> out);
  // Forgets any partial input (after a health-test failure: never mix a failed
  // block's neighbours into an output).
  void Reset();

 private:
  std::size_t input_per_output_;
  std::size_t pending_ = 0;  // input bytes hashed into ctx_ so far
  EVP_MD_CTX* ctx_;
};

}  // namespace rngmux
