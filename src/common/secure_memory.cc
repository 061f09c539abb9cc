#include "common/secure_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
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

// Blocks below half a page are slots carved from dump-excluded chunks, one free list
// per power-of-two class from 64 bytes up; chunks are kept for the life of the
// process. A guest's reply buffer comes and goes with every request: that is a
// free-list pop and push, not an mmap and munmap (whose TLB shootdowns cost a
// quarter of the daemon's CPU under a thousand guests).
constexpr std::size_t kSmallestSlot = 64;
constexpr std::size_t kSlotClasses = 6;  // 64 .. 2048 bytes
constexpr std::size_t kSlabChunkBytes = 64 * 1024;

// Blocks of 2^order pages; larger ones are mapped and unmapped each time.
constexpr std::size_t kCachedOrders = 9;  // up to 256 pages (1 MiB with 4 KiB pages)
constexpr std::size_t kMaxCachedPerOrder = 64;

struct DumpExcludedCache {
  std::mutex mutex;
  std::array<std::vector<std::uint8_t*>, kSlotClasses> free_slots;
  std::array<std::vector<std::uint8_t*>, kCachedOrders> free;
  std::size_t mappings = 0;
};

DumpExcludedCache& Cache() {
  static auto* cache = new DumpExcludedCache();  // never destroyed: used until exit
  return *cache;
}

std::uint8_t* MapDumpExcluded(DumpExcludedCache& cache, std::size_t bytes) {
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw std::bad_alloc();
  madvise(memory, bytes, MADV_DONTDUMP);  // a kernel without it dumps; dumps are off anyway
  cache.mappings++;
  return static_cast<std::uint8_t*>(memory);
}

// The slot class that holds `size` bytes (slot 64 << class), or kSlotClasses when the
// largest slot is too small. Pages are at least 4 KiB on Linux, so every slot is at
// most half a page.
std::size_t SlotClassOf(std::size_t size) {
  const std::size_t slot = std::bit_ceil(std::max(size, kSmallestSlot));
  const auto slot_class = static_cast<std::size_t>(std::countr_zero(slot / kSmallestSlot));
  return std::min(slot_class, kSlotClasses);
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
  DumpExcludedCache& cache = Cache();
  const std::size_t slot_class = SlotClassOf(size);
  if (slot_class < kSlotClasses) {
    std::lock_guard<std::mutex> lock(cache.mutex);
    std::vector<std::uint8_t*>& slots = cache.free_slots[slot_class];
    if (slots.empty()) {
      const std::size_t slot = kSmallestSlot << slot_class;
      std::uint8_t* chunk = MapDumpExcluded(cache, kSlabChunkBytes);
      slots.reserve(slots.size() + kSlabChunkBytes / slot);
      // Handed out from the chunk's start: the last pushed is the first popped.
      for (std::size_t offset = kSlabChunkBytes; offset > 0; offset -= slot) {
        slots.push_back(chunk + offset - slot);
      }
    }
    std::uint8_t* block = slots.back();
    slots.pop_back();
    return block;
  }
  std::size_t bytes = 0;
  const std::size_t order = OrderOf(size, &bytes);
  std::lock_guard<std::mutex> lock(cache.mutex);
  if (order < kCachedOrders && !cache.free[order].empty()) {
    std::uint8_t* block = cache.free[order].back();
    cache.free[order].pop_back();
    return block;
  }
  return MapDumpExcluded(cache, bytes);
}

void FreeDumpExcluded(std::uint8_t* data, std::size_t size) {
  if (data == nullptr) return;
  DumpExcludedCache& cache = Cache();
  const std::size_t slot_class = SlotClassOf(size);
  std::lock_guard<std::mutex> lock(cache.mutex);
  if (slot_class < kSlotClasses) {
    cache.free_slots[slot_class].push_back(data);
    return;
  }
  std::size_t bytes = 0;
  const std::size_t order = OrderOf(size, &bytes);
  if (order < kCachedOrders && cache.free[order].size() < kMaxCachedPerOrder) {
    cache.free[order].push_back(data);
    return;
  }
  munmap(data, bytes);
}

std::size_t DumpExcludedMappingsMade() {
  DumpExcludedCache& cache = Cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  return cache.mappings;
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
