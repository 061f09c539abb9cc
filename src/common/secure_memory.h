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

// Storage for buffers that hold random bytes for a short while (a client's output
// buffer): pages excluded from core dumps (MADV_DONTDUMP), not locked, so many of
// them cost no RLIMIT_MEMLOCK. A client's buffer is freed and allocated again with
// every drain, so neither is a system call in the common case:
// - up to half a page: a slot of a power-of-two size (64 bytes up) from chunks of
//   such pages that are kept for the life of the process;
// - larger: whole pages, rounded up to a power of two of pages; freed blocks are
//   kept for reuse (a bounded number per size) rather than unmapped.
// Blocks come zero-filled as long as callers keep the rule: the caller wipes what it
// wrote before freeing. Thread-safe. Throws std::bad_alloc.
std::uint8_t* AllocateDumpExcluded(std::size_t size);
// `size` as given to AllocateDumpExcluded.
void FreeDumpExcluded(std::uint8_t* data, std::size_t size);
// How many mappings AllocateDumpExcluded has made so far (for tests and benchmarks).
std::size_t DumpExcludedMappingsMade();

// A unique_ptr deleter for AllocateDumpExcluded's blocks.
struct DumpExcludedDeleter {
  std::size_t size = 0;
  void operator()(std::uint8_t* data) const {
    if (data != nullptr) FreeDumpExcluded(data, size);
  }
};

}  // namespace rngmux
