#pragma once

#include <cstdint>
#include <cstring>
#include <memory>

#include "vhost/guest_memory.h"
#include "vhost/split_virtqueue.h"

namespace rngmux {

// A guest's memory and one split ring in plain process memory, for tests and the
// fuzzer: the driver's side written by hand. Guest physical addresses start at
// kGuestBase; QEMU's view of the same bytes starts at kQemuBase.
class FakeGuestRing {
 public:
  static constexpr std::uint64_t kGuestBase = 0x100000;
  static constexpr std::uint64_t kQemuBase = 0x7f0000000000;
  static constexpr std::size_t kBytes = 64 * 1024;
  static constexpr std::uint64_t kDescOffset = 0;
  static constexpr std::uint64_t kAvailOffset = 0x1000;
  static constexpr std::uint64_t kUsedOffset = 0x2000;
  static constexpr std::uint64_t kDataOffset = 0x4000;

  explicit FakeGuestRing(std::uint16_t num) : num_(num), bytes_(new std::uint8_t[kBytes + 16]()) {
    // 16-byte aligned start, as guest RAM would be.
    base_ = bytes_.get() + (16 - reinterpret_cast<std::uintptr_t>(bytes_.get()) % 16) % 16;
    memory_.Add({kGuestBase, kBytes, kQemuBase, base_});
  }

  const GuestMemory& memory() const { return memory_; }
  std::uint8_t* at(std::uint64_t offset) { return base_ + offset; }
  SplitVirtqueue::Layout layout() {
    return {at(kDescOffset), at(kAvailOffset), at(kUsedOffset), num_};
  }

  void SetDesc(std::uint16_t index, std::uint64_t guest_addr, std::uint32_t len,
               std::uint16_t flags, std::uint16_t next, std::uint8_t* table = nullptr) {
    std::uint8_t* d = (table ? table : at(kDescOffset)) + 16 * std::size_t{index};
    std::memcpy(d, &guest_addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
  }
  // Offers `head` in the avail ring and bumps the avail index.
  void Offer(std::uint16_t head) {
    const std::uint16_t idx = AvailIdx();
    std::memcpy(at(kAvailOffset + 4 + 2 * std::size_t{static_cast<std::uint16_t>(idx % num_)}),
                &head, 2);
    SetAvailIdx(static_cast<std::uint16_t>(idx + 1));
  }
  std::uint16_t AvailIdx() { return Load16(kAvailOffset + 2); }
  void SetAvailIdx(std::uint16_t v) { Store16(kAvailOffset + 2, v); }
  void SetUsedEvent(std::uint16_t v) { Store16(kAvailOffset + 4 + 2 * std::size_t{num_}, v); }
  void SetAvailFlags(std::uint16_t v) { Store16(kAvailOffset, v); }
  std::uint16_t UsedIdx() { return Load16(kUsedOffset + 2); }
  void SetUsedIdx(std::uint16_t v) { Store16(kUsedOffset + 2, v); }
  std::uint16_t AvailEvent() { return Load16(kUsedOffset + 4 + 8 * std::size_t{num_}); }
  // The used element at ring position `i`: (id, len).
  std::pair<std::uint32_t, std::uint32_t> Used(std::uint16_t i) {
    std::uint32_t id, len;
    std::memcpy(&id, at(kUsedOffset + 4 + 8 * std::size_t{static_cast<std::uint16_t>(i % num_)}),
                4);
    std::memcpy(&len, at(kUsedOffset + 8 + 8 * std::size_t{static_cast<std::uint16_t>(i % num_)}),
                4);
    return {id, len};
  }

 private:
  std::uint16_t Load16(std::uint64_t offset) {
    std::uint16_t v;
    std::memcpy(&v, at(offset), 2);
    return v;
  }
  void Store16(std::uint64_t offset, std::uint16_t v) { std::memcpy(at(offset), &v, 2); }

  std::uint16_t num_;
  std::unique_ptr<std::uint8_t[]> bytes_;
  std::uint8_t* base_ = nullptr;
  GuestMemory memory_;
};

}  // namespace rngmux
