#include "common/secure_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

namespace rngmux {
namespace {

std::size_t RoundUpToPages(std::size_t size) {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return (size + page - 1) / page * page;
}

// Blocks of 2^order pages; larger ones are mapped and unmapped each time.
constexpr std::size_t kCachedOrders = 9;  // up to 256 pages (1 MiB with 4 KiB pages)
constexpr std::size_t kMaxCachedPerOrder = 64;

struct DumpExcludedCache {
  std::mutex mutex;
  std::array<std::vector<std::uint8_t*>, kCachedOrders> free;
};

DumpExcludedCache& Cache() {
  static auto* cache = new DumpExcludedCache();  // never destroyed: used until exit
  return *cache;
}

// The order of the block that holds `size` bytes, and the block's size in bytes.
std::size_t OrderOf(std::size_t size, std::size_t* block_bytes) {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  std::size_t order = 0;
  std::size_t bytes = page;
  while (bytes < size) {
    bytes *= 2;
    ++order;
  }
  *block_bytes = bytes;
  return order;
}

}  // namespace

std::uint8_t* AllocateDumpExcluded(std::size_t size) {
  std::size_t bytes = 0;
  const std::size_t order = OrderOf(size ? size : 1, &bytes);
  if (order < kCachedOrders) {
    DumpExcludedCache& cache = Cache();
    std::lock_guard<std::mutex> lock(cache.mutex);
    if (!cache.free[order].empty()) {
      std::uint8_t* block = cache.free[order].back();
      cache.free[order].pop_back();
      return block;
    }
  }
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw std::bad_alloc();
  madvise(memory, bytes, MADV_DONTDUMP);  // a kernel without it dumps; dumps are off anyway
  return static_cast<std::uint8_t*>(memory);
}

void FreeDumpExcluded(std::uint8_t* data, std::size_t size) {
  if (data == nullptr) return;
  std::size_t bytes = 0;
  const std::size_t order = OrderOf(size ? size : 1, &bytes);
  if (order < kCachedOrders) {
    DumpExcludedCache& cache = Cache();
    std::lock_guard<std::mutex> lock(cache.mutex);
    if (cache.free[order].size() < kMaxCachedPerOrder) {
      cache.free[order].push_back(data);
      return;
    }
  }
  munmap(data, bytes);
}

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
