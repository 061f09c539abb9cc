// libFuzzer target for the split virtqueue walker against a fake guest memory map:
// the input is written over the ring area and the descriptor tables (the driver's
// side), then buffers are popped and pushed until the ring is empty or bad. The
// walker must never touch memory outside the map (ASan checks: the map is a heap
// buffer), every segment it returns must lie inside guest memory, and a chain can
// never be longer than the ring.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "vhost/fake_guest_ring.h"
#include "vhost/split_virtqueue.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using rngmux::FakeGuestRing;
  using rngmux::SplitVirtqueue;
  if (size < 4) return 0;
  const std::uint16_t num = static_cast<std::uint16_t>(1u << (data[0] % 9));  // 1..256
  const bool event_idx = data[1] & 1;
  const std::uint16_t base = static_cast<std::uint16_t>(data[2] | (data[3] << 8));
  data += 4;
  size -= 4;
  FakeGuestRing ring(num);
  // The driver's bytes, packed so short inputs reach every part: descriptors, then the
  // avail ring, then indirect tables (at kDataOffset).
  const struct {
    std::uint64_t offset;
    std::size_t bytes;
  } parts[] = {{FakeGuestRing::kDescOffset, 16u * num},
               {FakeGuestRing::kAvailOffset, 6u + 2u * num},
               {FakeGuestRing::kDataOffset, 0x2000}};
  for (const auto& part : parts) {
    const std::size_t n = size < part.bytes ? size : part.bytes;
    std::memcpy(ring.at(part.offset), data, n);
    data += n;
    size -= n;
  }
  SplitVirtqueue vq;
  vq.Start(ring.layout(), base, event_idx);
  SplitVirtqueue::Chain chain;
  std::string error;
  const std::uint8_t* lo = ring.at(0);
  const std::uint8_t* hi = ring.at(FakeGuestRing::kBytes);
  for (int i = 0; i < 600; ++i) {
    const auto result = vq.Pop(ring.memory(), &chain, &error);
    if (result != SplitVirtqueue::PopResult::kChain) break;
    if (chain.segments.size() > num) std::abort();
    std::uint64_t total = 0;
    for (const auto& segment : chain.segments) {
      if (segment.host < lo || segment.host + segment.len > hi) std::abort();
      std::memset(segment.host, 0xa5, segment.len);
      total += segment.len;
    }
    if (total != chain.capacity) std::abort();
    vq.Push(chain.head, static_cast<std::uint32_t>(total > 64 ? 64 : total));
  }
  return 0;
}
