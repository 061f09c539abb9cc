#include "vhost/message.h"

#include <algorithm>
#include <cstring>

namespace rngmux {
namespace {

constexpr std::size_t kU64Bytes = 8;
constexpr std::size_t kStateBytes = 8;
constexpr std::size_t kAddrBytes = 40;
constexpr std::size_t kRegionBytes = 32;
constexpr std::size_t kMemTableHeaderBytes = 8;  // u32 count, u32 padding
constexpr std::uint32_t kVersionMask = 0x3;

std::uint32_t LoadU32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;  // vhost-user is host-endian; this daemon runs beside QEMU
}

std::uint64_t LoadU64(const std::uint8_t* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void StoreU32(std::uint8_t* p, std::uint32_t v) { std::memcpy(p, &v, sizeof v); }
void StoreU64(std::uint8_t* p, std::uint64_t v) { std::memcpy(p, &v, sizeof v); }

// The payload size a request must have; 0 for "none"; SIZE_MAX for the memory table
// (checked against its region count).
constexpr std::size_t kVariable = static_cast<std::size_t>(-1);

bool ExpectedPayload(std::uint32_t request, std::size_t* size) {
  switch (static_cast<VhostUserRequest>(request)) {
    case VhostUserRequest::kGetFeatures:
    case VhostUserRequest::kSetOwner:
    case VhostUserRequest::kResetOwner:
    case VhostUserRequest::kGetProtocolFeatures:
    case VhostUserRequest::kGetQueueNum:
    case VhostUserRequest::kResetDevice:
      *size = 0;
      return true;
    case VhostUserRequest::kSetFeatures:
    case VhostUserRequest::kSetProtocolFeatures:
    case VhostUserRequest::kSetVringKick:
    case VhostUserRequest::kSetVringCall:
    case VhostUserRequest::kSetVringErr:
      *size = kU64Bytes;
      return true;
    case VhostUserRequest::kSetVringNum:
    case VhostUserRequest::kSetVringBase:
    case VhostUserRequest::kGetVringBase:
    case VhostUserRequest::kSetVringEnable:
      *size = kStateBytes;
      return true;
    case VhostUserRequest::kSetVringAddr:
      *size = kAddrBytes;
      return true;
    case VhostUserRequest::kSetMemTable:
      *size = kVariable;
      return true;
    case VhostUserRequest::kSetLogBase:
    case VhostUserRequest::kSetLogFd:
      return false;  // never offered (no LOG_SHMFD): a peer that sends them is wrong
  }
  return false;
}

}  // namespace

std::string VhostUserRequestName(std::uint32_t request) {
  switch (static_cast<VhostUserRequest>(request)) {
    case VhostUserRequest::kGetFeatures:
      return "GET_FEATURES";
    case VhostUserRequest::kSetFeatures:
      return "SET_FEATURES";
    case VhostUserRequest::kSetOwner:
      return "SET_OWNER";
    case VhostUserRequest::kResetOwner:
      return "RESET_OWNER";
    case VhostUserRequest::kSetMemTable:
      return "SET_MEM_TABLE";
    case VhostUserRequest::kSetLogBase:
      return "SET_LOG_BASE";
    case VhostUserRequest::kSetLogFd:
      return "SET_LOG_FD";
    case VhostUserRequest::kSetVringNum:
      return "SET_VRING_NUM";
    case VhostUserRequest::kSetVringAddr:
      return "SET_VRING_ADDR";
    case VhostUserRequest::kSetVringBase:
      return "SET_VRING_BASE";
    case VhostUserRequest::kGetVringBase:
      return "GET_VRING_BASE";
    case VhostUserRequest::kSetVringKick:
      return "SET_VRING_KICK";
    case VhostUserRequest::kSetVringCall:
      return "SET_VRING_CALL";
    case VhostUserRequest::kSetVringErr:
      return "SET_VRING_ERR";
    case VhostUserRequest::kGetProtocolFeatures:
      return "GET_PROTOCOL_FEATURES";
    case VhostUserRequest::kSetProtocolFeatures:
      return "SET_PROTOCOL_FEATURES";
    case VhostUserRequest::kGetQueueNum:
      return "GET_QUEUE_NUM";
    case VhostUserRequest::kSetVringEnable:
      return "SET_VRING_ENABLE";
    case VhostUserRequest::kResetDevice:
      return "RESET_DEVICE";
  }
  return "request " + std::to_string(request);
}

std::size_t VhostUserMessage::expected_fds() const {
  switch (static_cast<VhostUserRequest>(request)) {
    case VhostUserRequest::kSetMemTable:
      return region_count;
    case VhostUserRequest::kSetVringKick:
    case VhostUserRequest::kSetVringCall:
    case VhostUserRequest::kSetVringErr:
      return (u64 & kVhostUserVringNoFd) ? 0 : 1;
    default:
      return 0;
  }
}

std::size_t VhostUserParser::wanted() const {
  switch (state_) {
    case State::kHeader:
      return kVhostUserHeaderBytes - filled_;
    case State::kPayload:
      return size_ - filled_;
    case State::kBad:
      return 0;
  }
  return 0;
}

VhostUserParser::Step VhostUserParser::Bad(std::string error) {
  state_ = State::kBad;
  Step step;
  step.outcome = Outcome::kBad;
  step.error = std::move(error);
  return step;
}

VhostUserParser::Step VhostUserParser::Next(std::span<const std::uint8_t> input,
                                            std::size_t fd_count) {
  if (state_ == State::kBad) return Bad("stream already broken");
  std::size_t consumed = 0;
  if (state_ == State::kHeader) {
    const std::size_t n = std::min(input.size(), kVhostUserHeaderBytes - filled_);
    std::copy_n(input.begin(), n, header_.begin() + static_cast<std::ptrdiff_t>(filled_));
    filled_ += n;
    consumed += n;
    if (filled_ < kVhostUserHeaderBytes) return Step{Outcome::kNeedMore, consumed, {}, {}};
    request_ = LoadU32(header_.data());
    flags_ = LoadU32(header_.data() + 4);
    size_ = LoadU32(header_.data() + 8);
    const std::string name = VhostUserRequestName(request_);
    if ((flags_ & kVersionMask) != kVhostUserVersion) {
      return Bad(name + ": flags 0x" + std::to_string(flags_) + " carry no version 1");
    }
    if (flags_ & kVhostUserFlagReply) return Bad(name + ": a request marked as a reply");
    std::size_t expected = 0;
    if (!ExpectedPayload(request_, &expected)) return Bad("unsupported " + name);
    if (expected == kVariable) {
      if (size_ < kMemTableHeaderBytes ||
          size_ > kMemTableHeaderBytes + kMaxVhostUserRegions * kRegionBytes) {
        return Bad(name + ": payload of " + std::to_string(size_) + " bytes");
      }
    } else if (size_ != expected) {
      return Bad(name + ": payload of " + std::to_string(size_) + " bytes, expected " +
                 std::to_string(expected));
    }
    state_ = State::kPayload;
    filled_ = 0;
    input = input.subspan(n);
  }
  const std::size_t n = std::min<std::size_t>(input.size(), size_ - filled_);
  std::copy_n(input.begin(), n, payload_.begin() + static_cast<std::ptrdiff_t>(filled_));
  filled_ += n;
  consumed += n;
  if (filled_ < size_) return Step{Outcome::kNeedMore, consumed, {}, {}};
  return Finish(consumed, fd_count);
}

VhostUserParser::Step VhostUserParser::Finish(std::size_t consumed, std::size_t fd_count) {
  Step step;
  step.outcome = Outcome::kMessage;
  step.consumed = consumed;
  VhostUserMessage& m = step.message;
  m.request = request_;
  m.flags = flags_;
  m.size = size_;
  const std::uint8_t* p = payload_.data();
  const std::string name = VhostUserRequestName(request_);
  switch (static_cast<VhostUserRequest>(request_)) {
    case VhostUserRequest::kSetFeatures:
    case VhostUserRequest::kSetProtocolFeatures:
    case VhostUserRequest::kSetVringKick:
    case VhostUserRequest::kSetVringCall:
    case VhostUserRequest::kSetVringErr:
      m.u64 = LoadU64(p);
      break;
    case VhostUserRequest::kSetVringNum:
    case VhostUserRequest::kSetVringBase:
    case VhostUserRequest::kGetVringBase:
    case VhostUserRequest::kSetVringEnable:
      m.state_index = LoadU32(p);
      m.state_num = LoadU32(p + 4);
      break;
    case VhostUserRequest::kSetVringAddr:
      m.addr.index = LoadU32(p);
      m.addr.flags = LoadU32(p + 4);
      m.addr.desc = LoadU64(p + 8);
      m.addr.used = LoadU64(p + 16);
      m.addr.avail = LoadU64(p + 24);
      m.addr.log = LoadU64(p + 32);
      break;
    case VhostUserRequest::kSetMemTable: {
      const std::uint32_t count = LoadU32(p);
      if (count == 0 || count > kMaxVhostUserRegions ||
          size_ != kMemTableHeaderBytes + count * kRegionBytes) {
        return Bad(name + ": " + std::to_string(count) + " regions in " + std::to_string(size_) +
                   " bytes");
      }
      m.region_count = count;
      for (std::uint32_t i = 0; i < count; ++i) {
        const std::uint8_t* r = p + kMemTableHeaderBytes + i * kRegionBytes;
        m.regions[i] = {LoadU64(r), LoadU64(r + 8), LoadU64(r + 16), LoadU64(r + 24)};
      }
      break;
    }
    default:
      break;
  }
  if (fd_count != m.expected_fds()) {
    return Bad(name + ": came with " + std::to_string(fd_count) + " file descriptors, expected " +
               std::to_string(m.expected_fds()));
  }
  state_ = State::kHeader;
  filled_ = 0;
  return step;
}

VhostUserReply MakeU64Reply(std::uint32_t request, std::uint64_t value) {
  VhostUserReply reply;
  StoreU32(reply.bytes.data(), request);
  StoreU32(reply.bytes.data() + 4, kVhostUserVersion | kVhostUserFlagReply);
  StoreU32(reply.bytes.data() + 8, 8);
  StoreU64(reply.bytes.data() + 12, value);
  reply.size = kVhostUserHeaderBytes + 8;
  return reply;
}

VhostUserReply MakeStateReply(std::uint32_t request, std::uint32_t index, std::uint32_t num) {
  VhostUserReply reply;
  StoreU32(reply.bytes.data(), request);
  StoreU32(reply.bytes.data() + 4, kVhostUserVersion | kVhostUserFlagReply);
  StoreU32(reply.bytes.data() + 8, 8);
  StoreU32(reply.bytes.data() + 12, index);
  StoreU32(reply.bytes.data() + 16, num);
  reply.size = kVhostUserHeaderBytes + 8;
  return reply;
}

}  // namespace rngmux
