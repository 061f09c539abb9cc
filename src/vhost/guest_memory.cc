#include "vhost/guest_memory.h"

namespace rngmux {
namespace {

// True if [addr, addr + len) lies inside [start, start + size), with no overflow.
bool Inside(std::uint64_t addr, std::uint64_t len, std::uint64_t start, std::uint64_t size) {
  if (addr < start) return false;
  const std::uint64_t offset = addr - start;
  return offset <= size && len <= size - offset;
}

}  // namespace

std::uint8_t* GuestMemory::FromGuest(std::uint64_t addr, std::uint64_t len) const {
  for (const Region& r : regions_) {
    if (Inside(addr, len, r.guest_phys_addr, r.size)) return r.host + (addr - r.guest_phys_addr);
  }
  return nullptr;
}

std::uint8_t* GuestMemory::FromQemu(std::uint64_t addr, std::uint64_t len) const {
  for (const Region& r : regions_) {
    if (Inside(addr, len, r.userspace_addr, r.size)) return r.host + (addr - r.userspace_addr);
  }
  return nullptr;
}

}  // namespace rngmux
