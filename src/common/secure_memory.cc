#include "common/secure_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <new>

namespace rngmux {
namespace {

std::size_t RoundUpToPages(std::size_t size) {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return (size + page - 1) / page * page;
}

}  // namespace

void SecureWipe(void* data, std::size_t size) {
  if (size != 0) explicit_bzero(data, size);
}

// Whole pages of its own, from mmap: mlock and MADV_DONTDUMP act on pages, and on
// heap memory they would fail (unaligned) or reach into neighbouring allocations.
SecureBuffer::SecureBuffer(std::size_t size) : size_(size) {
  const std::size_t mapped = RoundUpToPages(size ? size : 1);
  void* memory = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw std::bad_alloc();
  data_ = static_cast<std::uint8_t*>(memory);
  locked_ = mlock(data_, mapped) == 0;
  dump_excluded_ = madvise(data_, mapped, MADV_DONTDUMP) == 0;
}

SecureBuffer::~SecureBuffer() {
  const std::size_t mapped = RoundUpToPages(size_ ? size_ : 1);
  SecureWipe(data_, size_);
  if (locked_) munlock(data_, mapped);
  munmap(data_, mapped);
}

}  // namespace rngmux
