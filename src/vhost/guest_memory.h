#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rngmux {

// The guest's memory as this process sees it: regions QEMU shared (SET_MEM_TABLE),
// each already mapped at `host`. Translation never trusts its input: a range is
// returned only if [addr, addr + len) lies inside ONE region, without overflow.
// The map does not own the mappings (VhostUserDevice does). Event-loop thread only.
class GuestMemory {
 public:
  struct Region {
    std::uint64_t guest_phys_addr = 0;
    std::uint64_t size = 0;
    std::uint64_t userspace_addr = 0;  // QEMU's virtual address
    std::uint8_t* host = nullptr;      // this process's mapping of the region's first byte
  };

  void Clear() { regions_.clear(); }
  void Add(const Region& region) { regions_.push_back(region); }
  bool empty() const { return regions_.empty(); }
  const std::vector<Region>& regions() const { return regions_; }

  // Guest physical address (descriptor addresses) -> host pointer, or nullptr.
  std::uint8_t* FromGuest(std::uint64_t addr, std::uint64_t len) const;
  // QEMU virtual address (ring addresses in SET_VRING_ADDR) -> host pointer, or nullptr.
  std::uint8_t* FromQemu(std::uint64_t addr, std::uint64_t len) const;

 private:
  std::vector<Region> regions_;
};

}  // namespace rngmux
