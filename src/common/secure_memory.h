#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace rngmux {

// Overwrites memory with zeros in a way the compiler may not elide.
void SecureWipe(void* data, std::size_t size);
inline void SecureWipe(std::span<std::uint8_t> bytes) { SecureWipe(bytes.data(), bytes.size()); }

// A fixed-size buffer for secret bytes, in pages of its own: locked in RAM where
// the process is allowed to (mlock; failure is reported by locked(), never fatal),
// excluded from core dumps (MADV_DONTDUMP), zero-filled when made and wiped before
// it is freed. Not copyable. Costs at least one page: for long-lived buffers.
class SecureBuffer {
 public:
  explicit SecureBuffer(std::size_t size);
  ~SecureBuffer();
  SecureBuffer(const SecureBuffer&) = delete;
  SecureBuffer& operator=(const SecureBuffer&) = delete;

  std::uint8_t* data() { return data_; }
  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<std::uint8_t> span() { return {data_, size_}; }
  bool locked() const { return locked_; }
  bool dump_excluded() const { return dump_excluded_; }

 private:
  std::uint8_t* data_;
  std::size_t size_;
  bool locked_ = false;
  bool dump_excluded_ = false;
};

}  // namespace rngmux
