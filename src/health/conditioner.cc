#include "health/conditioner.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace rngmux {

namespace {

// ceil((256 + 64) / H), after checking H: a claim of 0 would divide into infinity.
std::size_t InputPerOutput(double entropy_bits_per_byte) {
  if (!(entropy_bits_per_byte > 0 && entropy_bits_per_byte < 8)) {
    throw std::invalid_argument("conditioner: entropy per byte must be in (0, 8)");
  }
  return static_cast<std::size_t>(std::ceil(
      (Conditioner::kOutputBytes * 8.0 + Conditioner::kSafetyMarginBits) / entropy_bits_per_byte));
}

}  // namespace

Conditioner::Conditioner(double entropy_bits_per_byte)
    : input_per_output_(InputPerOutput(entropy_bits_per_byte)), ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx_);
    throw std::runtime_error("conditioner: OpenSSL SHA-256 setup failed");
  }
}

Conditioner::~Conditioner() { EVP_MD_CTX_free(ctx_); }  // frees and cleanses the state

std::size_t Conditioner::MaxOutput(std::size_t input_bytes) const {
  return (pending_ + input_bytes) / input_per_output_ * kOutputBytes;
}

std::size_t Conditioner::Condition(std::span<const std::uint8_t> input,
                                   std::span<std::uint8_t> out) {
  std::size_t written = 0;
  while (!input.empty()) {
    const std::size_t take = std::min(input.size(), input_per_output_ - pending_);
    if (EVP_DigestUpdate(ctx_, input.data(), take) != 1) {
      throw std::runtime_error("conditioner: SHA-256 update failed");
    }
    pending_ += take;
    input = input.subspan(take);
    if (pending_ == input_per_output_) {
      unsigned size = 0;
      if (EVP_DigestFinal_ex(ctx_, out.data() + written, &size) != 1 || size != kOutputBytes ||
          EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("conditioner: SHA-256 final failed");
      }
      written += kOutputBytes;
      pending_ = 0;
    }
  }
  return written;
}

void Conditioner::Reset() {
  if (EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("conditioner: SHA-256 reset failed");
  }
  pending_ = 0;
}

}  // namespace rngmux
