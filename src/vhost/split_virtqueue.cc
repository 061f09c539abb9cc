#include "vhost/split_virtqueue.h"

#include <atomic>
#include <cstdio>
#include <cstring>

namespace rngmux {
namespace {

constexpr std::uint16_t kDescNext = 1;
constexpr std::uint16_t kDescWrite = 2;
constexpr std::uint16_t kDescIndirect = 4;
constexpr std::uint16_t kAvailNoInterrupt = 1;
constexpr std::size_t kDescBytes = 16;

struct Desc {
  std::uint64_t addr;
  std::uint32_t len;
  std::uint16_t flags;
  std::uint16_t next;
};
static_assert(sizeof(Desc) == kDescBytes);

Desc CopyDesc(const std::uint8_t* table, std::uint32_t index) {
  Desc d;
  std::memcpy(&d, table + std::size_t{index} * kDescBytes, sizeof d);
  return d;
}

std::uint16_t LoadU16Acquire(std::uint8_t* p) {
  return std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(p))
      .load(std::memory_order_acquire);
}

void StoreU16Release(std::uint8_t* p, std::uint16_t v) {
  std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(p))
      .store(v, std::memory_order_release);
}

std::string Hex(std::uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

std::uint16_t LoadU16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

bool SplitVirtqueue::ValidSize(std::uint32_t num) {
  return num >= 1 && num <= kMaxSize && (num & (num - 1)) == 0;
}

bool SplitVirtqueue::Aligned(const Layout& layout) {
  const auto at = [](const std::uint8_t* p) { return reinterpret_cast<std::uintptr_t>(p); };
  return at(layout.desc) % 16 == 0 && at(layout.avail) % 2 == 0 && at(layout.used) % 4 == 0;
}

bool SplitVirtqueue::Start(const Layout& layout, std::uint16_t next_avail, bool event_idx) {
  layout_ = layout;
  event_idx_ = event_idx;
  used_idx_ = LoadU16Acquire(layout_.used + 2);
  last_avail_ = next_avail;
  started_ = true;
  if (last_avail_ != used_idx_) {
    last_avail_ = used_idx_;
    return false;
  }
  return true;
}

std::uint16_t SplitVirtqueue::LoadAvailIdx() const { return LoadU16Acquire(layout_.avail + 2); }

void SplitVirtqueue::ArmNotification() {
  // avail_event sits after the used ring's last element.
  StoreU16Release(layout_.used + 4 + 8 * std::size_t{layout_.num}, last_avail_);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

SplitVirtqueue::PopResult SplitVirtqueue::Pop(const GuestMemory& memory, Chain* chain,
                                              std::string* error) {
  if (!started_) return PopResult::kEmpty;
  std::uint16_t avail_idx = LoadAvailIdx();
  if (avail_idx == last_avail_) {
    ArmNotification();
    avail_idx = LoadAvailIdx();  // a buffer added before the driver saw avail_event
    if (avail_idx == last_avail_) return PopResult::kEmpty;
  }
  const std::uint16_t pending = static_cast<std::uint16_t>(avail_idx - last_avail_);
  if (pending > layout_.num) {
    *error = "avail index jumped from " + std::to_string(last_avail_) + " to " +
             std::to_string(avail_idx) + " in a ring of " + std::to_string(layout_.num);
    return PopResult::kBad;
  }
  const std::uint16_t head = LoadU16(
      layout_.avail + 4 + 2 * std::size_t{static_cast<std::uint16_t>(last_avail_ % layout_.num)});
  chain->head = head;
  chain->segments.clear();
  chain->capacity = 0;
  if (!Walk(memory, head, chain, error)) return PopResult::kBad;
  ++last_avail_;
  return PopResult::kChain;
}

bool SplitVirtqueue::Walk(const GuestMemory& memory, std::uint16_t head, Chain* chain,
                          std::string* error) const {
  const std::uint32_t num = layout_.num;
  if (head >= num) {
    *error = "head descriptor " + std::to_string(head) + " >= ring size " + std::to_string(num);
    return false;
  }
  const std::uint8_t* table = layout_.desc;
  std::uint32_t table_size = num;
  std::uint32_t index = head;
  bool indirect = false;
  // Every descriptor visited counts, direct or indirect: a chain longer than the
  // ring is a loop or a lie either way.
  for (std::uint32_t visited = 0;; ++visited) {
    if (visited >= num) {
      *error = "descriptor chain from " + std::to_string(head) + " is longer than the ring (" +
               std::to_string(num) + "): a loop?";
      return false;
    }
    const Desc d = CopyDesc(table, index);
    if (d.flags & kDescIndirect) {
      if (indirect) {
        *error = "nested indirect descriptor table";
        return false;
      }
      if (d.flags & kDescNext) {
        *error = "indirect descriptor with NEXT set";
        return false;
      }
      if (d.len == 0 || d.len % kDescBytes != 0) {
        *error = "indirect table of " + std::to_string(d.len) + " bytes";
        return false;
      }
      const std::uint8_t* indirect_table = memory.FromGuest(d.addr, d.len);
      if (indirect_table == nullptr) {
        *error = "indirect table at " + Hex(d.addr) + " (+" + std::to_string(d.len) +
                 ") is outside guest memory";
        return false;
      }
      table = indirect_table;
      table_size = d.len / kDescBytes;
      index = 0;
      indirect = true;
      continue;
    }
    if (!(d.flags & kDescWrite)) {
      *error = "device-readable descriptor in a virtio-rng chain";
      return false;
    }
    std::uint8_t* host = memory.FromGuest(d.addr, d.len);
    if (host == nullptr) {
      *error = "buffer at guest address " + Hex(d.addr) + " (+" + std::to_string(d.len) +
               ") is not inside one memory region";
      return false;
    }
    chain->segments.push_back({host, d.len});
    chain->capacity += d.len;
    if (!(d.flags & kDescNext)) return true;
    if (d.next >= table_size) {
      *error = "next descriptor " + std::to_string(d.next) + " >= table size " +
               std::to_string(table_size);
      return false;
    }
    index = d.next;
  }
}

bool SplitVirtqueue::Push(std::uint16_t head, std::uint32_t len) {
  std::uint8_t* element =
      layout_.used + 4 + 8 * std::size_t{static_cast<std::uint16_t>(used_idx_ % layout_.num)};
  const std::uint32_t id = head;
  std::memcpy(element, &id, sizeof id);
  std::memcpy(element + 4, &len, sizeof len);
  const std::uint16_t old = used_idx_;
  ++used_idx_;
  StoreU16Release(layout_.used + 2, used_idx_);
  // The driver's used_event/flags must be read after our used index is visible.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (event_idx_) {
    const std::uint16_t used_event =
        LoadU16Acquire(layout_.avail + 4 + 2 * std::size_t{layout_.num});
    return static_cast<std::uint16_t>(used_idx_ - used_event - 1) <
           static_cast<std::uint16_t>(used_idx_ - old);
  }
  return (LoadU16Acquire(layout_.avail) & kAvailNoInterrupt) == 0;
}

}  // namespace rngmux
