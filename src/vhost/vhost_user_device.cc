#include "vhost/vhost_user_device.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

namespace rngmux {
namespace {

class MmapMapping final : public RegionMapper::Mapping {
 public:
  MmapMapping(void* base, std::size_t length, std::size_t offset)
      : base_(base), length_(length), offset_(offset) {}
  ~MmapMapping() override { munmap(base_, length_); }
  std::uint8_t* region() const override { return static_cast<std::uint8_t*>(base_) + offset_; }

 private:
  void* base_;
  std::size_t length_;
  std::size_t offset_;
};

std::string Hex(std::uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

// Replies a request has by itself; all others answer need_reply with a u64.
bool HasOwnReply(std::uint32_t request) {
  switch (static_cast<VhostUserRequest>(request)) {
    case VhostUserRequest::kGetFeatures:
    case VhostUserRequest::kGetProtocolFeatures:
    case VhostUserRequest::kGetQueueNum:
    case VhostUserRequest::kGetVringBase:
      return true;
    default:
      return false;
  }
}

}  // namespace

Result<std::unique_ptr<RegionMapper::Mapping>> MmapRegionMapper::Map(int fd, std::uint64_t size,
                                                                     std::uint64_t offset) {
  // The whole [0, offset + size) is mapped (mmap wants page-aligned offsets; QEMU's
  // mmap_offset need not be), and the region starts `offset` bytes in.
  if (size == 0 || offset > std::numeric_limits<std::uint64_t>::max() - size ||
      offset + size > std::numeric_limits<std::size_t>::max()) {
    return Status::Error("region of " + std::to_string(size) + " bytes at offset " +
                         std::to_string(offset) + " cannot be mapped");
  }
  const std::size_t length = static_cast<std::size_t>(offset + size);
  // A file shorter than the region would turn the first access past its end into
  // SIGBUS for the whole daemon: refuse it here. (A peer that shrinks an unsealed file
  // later can still do that; QEMU's memfd backend seals against shrinking by default.)
  struct stat st {};
  if (fstat(fd, &st) != 0) return Status::FromErrno("fstat of the region's fd", errno);
  if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) < offset + size) {
    return Status::Error("the region's file has " + std::to_string(st.st_size) +
                         " bytes, fewer than offset + size = " + std::to_string(offset + size));
  }
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (base == MAP_FAILED) {
    return Status::FromErrno("mmap of " + std::to_string(length) + " bytes", errno);
  }
  return std::unique_ptr<RegionMapper::Mapping>(
      new MmapMapping(base, length, static_cast<std::size_t>(offset)));
}

VhostUserDevice::Outcome VhostUserDevice::Handle(const VhostUserMessage& message,
                                                 std::vector<UniqueFd> fds) {
  Outcome outcome = HandleRequest(message, fds);
  if (message.need_reply() && !HasOwnReply(message.request) && !outcome.reply) {
    outcome.reply = MakeU64Reply(message.request, outcome.status.ok() ? 0 : 1);
  }
  return outcome;
}

VhostUserDevice::Outcome VhostUserDevice::HandleRequest(const VhostUserMessage& m,
                                                        std::vector<UniqueFd>& fds) {
  Outcome out;
  const auto fail = [&out](std::string text) {
    out.status = Status::Error(std::move(text));
    return out;
  };
  const std::string name = VhostUserRequestName(m.request);
  switch (static_cast<VhostUserRequest>(m.request)) {
    case VhostUserRequest::kGetFeatures:
      out.reply = MakeU64Reply(m.request, kOfferedFeatures);
      return out;
    case VhostUserRequest::kSetFeatures:
      if (m.u64 & kFeatureRingPacked) return fail("SET_FEATURES: packed rings are not supported");
      if (m.u64 & ~kOfferedFeatures) {
        out.note = "SET_FEATURES " + Hex(m.u64) + " has bits that were not offered (" +
                   Hex(m.u64 & ~kOfferedFeatures) + "); ignoring them";
      }
      features_ = m.u64;
      return out;
    case VhostUserRequest::kSetOwner:
      return out;
    case VhostUserRequest::kResetOwner:
    case VhostUserRequest::kResetDevice:
      Reset();
      return out;
    case VhostUserRequest::kSetMemTable:
      out.status = SetMemTable(m, fds);
      if (out.status.ok()) out.status = MaybeStart(&out.note);
      return out;
    case VhostUserRequest::kGetProtocolFeatures:
      out.reply = MakeU64Reply(m.request, kOfferedProtocolFeatures);
      return out;
    case VhostUserRequest::kSetProtocolFeatures:
      if (m.u64 & ~kOfferedProtocolFeatures) {
        return fail("SET_PROTOCOL_FEATURES " + Hex(m.u64) + " has bits that were not offered");
      }
      protocol_features_ = m.u64;
      protocol_negotiated_ = true;
      return out;
    case VhostUserRequest::kGetQueueNum:
      out.reply = MakeU64Reply(m.request, 1);
      return out;
    default:
      break;
  }

  // Ring messages: one queue, index 0.
  const bool fd_message =
      m.request == static_cast<std::uint32_t>(VhostUserRequest::kSetVringKick) ||
      m.request == static_cast<std::uint32_t>(VhostUserRequest::kSetVringCall) ||
      m.request == static_cast<std::uint32_t>(VhostUserRequest::kSetVringErr);
  const std::uint64_t index =
      fd_message ? (m.u64 & kVhostUserVringIndexMask)
                 : (m.request == static_cast<std::uint32_t>(VhostUserRequest::kSetVringAddr)
                        ? m.addr.index
                        : m.state_index);
  if (index != 0) return fail(name + " for ring " + std::to_string(index) + " (there is one)");
  if (fd_message && (m.u64 & ~(kVhostUserVringIndexMask | kVhostUserVringNoFd))) {
    return fail(name + ": unknown bits in " + Hex(m.u64));
  }
  UniqueFd fd = fds.empty() ? UniqueFd() : std::move(fds.front());

  switch (static_cast<VhostUserRequest>(m.request)) {
    case VhostUserRequest::kSetVringNum:
      if (running()) return fail("SET_VRING_NUM while the ring runs");
      if (!SplitVirtqueue::ValidSize(m.state_num)) {
        return fail("SET_VRING_NUM " + std::to_string(m.state_num) +
                    ": not a power of two in 1..32768");
      }
      num_ = m.state_num;
      return out;
    case VhostUserRequest::kSetVringAddr:
      if (running()) return fail("SET_VRING_ADDR while the ring runs");
      addr_ = m.addr;
      out.status = MaybeStart(&out.note);
      return out;
    case VhostUserRequest::kSetVringBase:
      if (running()) return fail("SET_VRING_BASE while the ring runs");
      if (m.state_num > 0xffff) return fail("SET_VRING_BASE " + std::to_string(m.state_num));
      base_ = static_cast<std::uint16_t>(m.state_num);
      return out;
    case VhostUserRequest::kGetVringBase:
      StopRing();
      enabled_ = false;
      kick_.Reset();  // the spec: the ring is stopped until a new kick fd comes
      out.reply = MakeStateReply(m.request, 0, base_);
      return out;
    case VhostUserRequest::kSetVringKick:
      if (!fd.valid())
        return fail("SET_VRING_KICK without a descriptor (polling) is not supported");
      kick_ = std::move(fd);
      if (!protocol_negotiated_) enabled_ = true;
      out.status = MaybeStart(&out.note);
      return out;
    case VhostUserRequest::kSetVringCall:
      call_ = std::move(fd);  // none: the driver is never signalled (NOFD)
      return out;
    case VhostUserRequest::kSetVringErr:
      err_ = std::move(fd);
      return out;
    case VhostUserRequest::kSetVringEnable:
      if (m.state_num > 1) return fail("SET_VRING_ENABLE " + std::to_string(m.state_num));
      enabled_ = m.state_num == 1;
      if (!enabled_) {
        StopRing();
        return out;
      }
      out.status = MaybeStart(&out.note);
      return out;
    default:
      return fail("unsupported " + name);
  }
}

Status VhostUserDevice::SetMemTable(const VhostUserMessage& m, std::vector<UniqueFd>& fds) {
  std::vector<std::unique_ptr<RegionMapper::Mapping>> mappings;
  GuestMemory memory;
  for (std::uint32_t i = 0; i < m.region_count; ++i) {
    const VhostUserRegion& r = m.regions[i];
    const std::string what = "SET_MEM_TABLE region " + std::to_string(i);
    if (r.memory_size == 0) return Status::Error(what + ": empty");
    if (r.guest_phys_addr > std::numeric_limits<std::uint64_t>::max() - r.memory_size ||
        r.userspace_addr > std::numeric_limits<std::uint64_t>::max() - r.memory_size) {
      return Status::Error(what + ": wraps around the address space");
    }
    auto mapping = mapper_.Map(fds[i].get(), r.memory_size, r.mmap_offset);
    if (!mapping.ok()) return Status::Error(what + ": " + mapping.status().message());
    memory.Add({r.guest_phys_addr, r.memory_size, r.userspace_addr, (*mapping)->region()});
    mappings.push_back(std::move(mapping).value());
  }
  // Nothing may point into the old mappings once they go; the caller restarts the
  // ring on the new ones.
  StopRing();
  mappings_ = std::move(mappings);
  memory_ = std::move(memory);
  return Status::Ok();
}

Status VhostUserDevice::MaybeStart(std::string* note) {
  if (running() || memory_.empty() || num_ == 0 || !addr_ || !kick_.valid() || !enabled_) {
    return Status::Ok();
  }
  SplitVirtqueue::Layout layout;
  layout.num = static_cast<std::uint16_t>(num_ == SplitVirtqueue::kMaxSize ? 0 : num_);
  layout.desc = memory_.FromQemu(addr_->desc, SplitVirtqueue::DescBytes(num_));
  layout.avail = memory_.FromQemu(addr_->avail, SplitVirtqueue::AvailBytes(num_));
  layout.used = memory_.FromQemu(addr_->used, SplitVirtqueue::UsedBytes(num_));
  if (!layout.desc || !layout.avail || !layout.used) {
    return Status::Error("ring addresses desc=" + Hex(addr_->desc) + " avail=" + Hex(addr_->avail) +
                         " used=" + Hex(addr_->used) + " are not inside the memory table");
  }
  if (!SplitVirtqueue::Aligned(layout)) return Status::Error("ring addresses are misaligned");
  if (num_ == SplitVirtqueue::kMaxSize) {
    return Status::Error("ring size 32768 is not supported");  // num must fit 16 bits
  }
  if (!queue_.Start(layout, base_, (features_ & kFeatureEventIdx) != 0)) {
    *note = "ring base " + std::to_string(base_) + " differs from the used index " +
            std::to_string(queue_.next_avail()) + " in memory; resuming from the used index";
  }
  return Status::Ok();
}

void VhostUserDevice::StopRing() {
  if (!running()) return;
  if (held_) {
    queue_.Unpop(1);
    held_.reset();
    held_filled_ = 0;
  }
  base_ = queue_.next_avail();
  queue_.Stop();
}

void VhostUserDevice::Reset() {
  StopRing();
  features_ = 0;
  protocol_features_ = 0;
  num_ = 0;
  addr_.reset();
  base_ = 0;
  enabled_ = false;
  kick_.Reset();
  call_.Reset();
  err_.Reset();
}

Status VhostUserDevice::TakeBuffer(bool* signal) {
  // Bounded: a ring holds at most num buffers, and zero-length ones are all this
  // loop can return at once.
  for (std::uint32_t i = 0; i <= num_ && !held_ && running(); ++i) {
    std::string error;
    switch (queue_.Pop(memory_, &scratch_, &error)) {
      case SplitVirtqueue::PopResult::kEmpty:
        return Status::Ok();
      case SplitVirtqueue::PopResult::kBad:
        queue_.Stop();
        return Status::Error(error);
      case SplitVirtqueue::PopResult::kChain:
        if (scratch_.capacity == 0) {
          // Nothing fits in it: give it back used, with length 0, at once.
          ++buffers_used_;
          if (queue_.Push(scratch_.head, 0)) *signal = true;
          continue;
        }
        held_ = std::move(scratch_);
        held_filled_ = 0;
        scratch_ = {};
        return Status::Ok();
    }
  }
  return Status::Ok();
}

std::size_t VhostUserDevice::HeldSize() const {
  return static_cast<std::size_t>(std::min<std::uint64_t>(held_->capacity, kMaxFillBytes));
}

std::size_t VhostUserDevice::Wanted() const {
  if (!held_ || !running()) return 0;
  return HeldSize() - held_filled_;
}

bool VhostUserDevice::Fill(std::span<const std::uint8_t> bytes) {
  if (!held_) return false;
  std::size_t skip = held_filled_;  // bytes already in the buffer's first segments
  std::size_t done = 0;
  for (const SplitVirtqueue::Segment& segment : held_->segments) {
    if (done == bytes.size()) break;
    if (skip >= segment.len) {
      skip -= segment.len;
      continue;
    }
    const std::size_t n = std::min<std::size_t>(segment.len - skip, bytes.size() - done);
    std::memcpy(segment.host + skip, bytes.data() + done, n);
    skip = 0;
    done += n;
  }
  held_filled_ += done;
  bytes_written_ += done;
  if (held_filled_ < HeldSize()) return false;
  const std::uint16_t head = held_->head;
  const auto length = static_cast<std::uint32_t>(held_filled_);
  held_.reset();
  held_filled_ = 0;
  ++buffers_used_;
  return queue_.Push(head, length);
}

}  // namespace rngmux
