#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "vhost/guest_memory.h"

namespace rngmux {

// A split virtqueue (virtio 1.x, 2.7) seen from the device side, for a device that
// only writes: virtio-rng. It does no I/O beyond loads and stores in the mapped rings.
//
// Everything the driver wrote is hostile until checked (the doc's "hostile guest"
// list): a descriptor index >= num, a chain longer than num (which also catches
// loops), a device-readable descriptor, an indirect table that is empty, not a
// multiple of 16 bytes, nested, chained (INDIRECT with NEXT) or outside memory, a
// buffer whose [addr, addr + len) is not inside one memory region, and an avail
// index more than num ahead of the last one processed. Each descriptor is copied
// once, then only the copy is used. Any of these makes Pop() return kBad: the
// ring is then unusable and the device must be closed.
//
//   SplitVirtqueue vq;
//   vq.Start(layout, base, event_idx);      // rings already translated and checked
//   SplitVirtqueue::Chain chain;
//   while (vq.Pop(memory, &chain, &error) == SplitVirtqueue::PopResult::kChain) {
//     std::size_t n = fill(chain);           // write at most chain.capacity bytes
//     if (vq.Push(chain.head, n)) signal();  // the used length is exactly n
//   }
//
// Not thread-safe; the guest writes the rings concurrently, which is why loads of
// its indices are acquire loads and descriptors are copied before they are checked.
class SplitVirtqueue {
 public:
  static constexpr std::uint32_t kMaxSize = 32768;

  struct Layout {
    std::uint8_t* desc = nullptr;
    std::uint8_t* avail = nullptr;
    std::uint8_t* used = nullptr;
    std::uint16_t num = 0;
  };
  // Bytes each part occupies for a queue of `num` (avail and used include the
  // event index fields, which the split ring layout always has).
  static std::uint64_t DescBytes(std::uint32_t num) { return 16ull * num; }
  static std::uint64_t AvailBytes(std::uint32_t num) { return 6ull + 2ull * num; }
  static std::uint64_t UsedBytes(std::uint32_t num) { return 6ull + 8ull * num; }
  // num is a power of two in 1..kMaxSize.
  static bool ValidSize(std::uint32_t num);
  // The spec's alignment: descriptors 16, avail 2, used 4.
  static bool Aligned(const Layout& layout);

  struct Segment {
    std::uint8_t* host;
    std::uint32_t len;
  };
  struct Chain {
    std::uint16_t head = 0;
    std::vector<Segment> segments;
    std::uint64_t capacity = 0;  // sum of segment lengths
  };
  enum class PopResult { kEmpty, kChain, kBad };

  // Starts with `next_avail` as the next avail index to process. If the used index
  // in memory differs from it (a backend restart: QEMU sets the base to the used
  // index it saw, but buffers handed out before may not have been used), the used
  // index wins, so every buffer the driver still waits for is taken again.
  // Returns false if that was needed (for a log line).
  bool Start(const Layout& layout, std::uint16_t next_avail, bool event_idx);
  void Stop() { started_ = false; }
  bool started() const { return started_; }

  // Takes the next available chain. kEmpty also arms the driver's notification
  // (with EVENT_IDX: avail_event = next avail index).
  PopResult Pop(const GuestMemory& memory, Chain* chain, std::string* error);
  // Gives back the last `count` chains popped and not pushed (a stop before they
  // were filled): their buffers will be taken again after a restart.
  void Unpop(std::uint16_t count) { last_avail_ = static_cast<std::uint16_t>(last_avail_ - count); }
  // Marks `head` used with exactly `len` bytes written. Returns true if the driver
  // asked to be notified (EVENT_IDX used_event, or no VRING_AVAIL_F_NO_INTERRUPT).
  bool Push(std::uint16_t head, std::uint32_t len);

  std::uint16_t next_avail() const { return last_avail_; }
  std::uint16_t used_index() const { return used_idx_; }
  std::uint16_t size() const { return layout_.num; }

 private:
  std::uint16_t LoadAvailIdx() const;
  void ArmNotification();
  // Walks one chain from `head`; appends to `chain`.
  bool Walk(const GuestMemory& memory, std::uint16_t head, Chain* chain, std::string* error) const;

  Layout layout_;
  std::uint16_t last_avail_ = 0;
  std::uint16_t used_idx_ = 0;
  bool event_idx_ = false;
  bool started_ = false;
};

}  // namespace rngmux
