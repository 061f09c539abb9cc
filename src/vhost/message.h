#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace rngmux {

// The vhost-user messages a virtio-rng backend needs (docs/interop/vhost-user.rst in
// QEMU's source; ../shared/docs/vhost-user-rng.md for what QEMU 7.2 sends). Numbers are
// the spec's; everything else is refused as unknown.
enum class VhostUserRequest : std::uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetLogBase = 6,
  kSetLogFd = 7,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kResetDevice = 34,
};

// Its name for logs ("SET_MEM_TABLE"), or "request N".
std::string VhostUserRequestName(std::uint32_t request);

inline constexpr std::size_t kVhostUserHeaderBytes = 12;
// The largest payload accepted. A memory table of kMaxVhostUserRegions is 264 bytes;
// nothing this backend takes is larger.
inline constexpr std::size_t kMaxVhostUserPayloadBytes = 512;
// QEMU's VHOST_MEMORY_BASELINE_NREGIONS: the most regions (and fds) in SET_MEM_TABLE.
inline constexpr std::size_t kMaxVhostUserRegions = 8;
// SCM_RIGHTS descriptors accepted with one message (more are closed, and the
// message is bad).
inline constexpr std::size_t kMaxVhostUserFds = kMaxVhostUserRegions;

inline constexpr std::uint32_t kVhostUserVersion = 0x1;
inline constexpr std::uint32_t kVhostUserFlagReply = 0x4;
inline constexpr std::uint32_t kVhostUserFlagNeedReply = 0x8;
// SET_VRING_KICK/CALL/ERR: the payload's low byte is the ring, this bit says "no fd".
inline constexpr std::uint64_t kVhostUserVringNoFd = 0x100;
inline constexpr std::uint64_t kVhostUserVringIndexMask = 0xff;

struct VhostUserRegion {
  std::uint64_t guest_phys_addr = 0;
  std::uint64_t memory_size = 0;
  std::uint64_t userspace_addr = 0;  // QEMU's virtual address of the region
  std::uint64_t mmap_offset = 0;     // where the region starts in the passed fd
};

struct VhostUserVringAddr {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;
  std::uint64_t desc = 0;  // all three: QEMU virtual addresses
  std::uint64_t used = 0;
  std::uint64_t avail = 0;
  std::uint64_t log = 0;
};

// One decoded request. Which fields hold meaning depends on `request`:
//   u64:            GET/SET_FEATURES, SET_PROTOCOL_FEATURES, SET_VRING_KICK/CALL/ERR
//   state_index/num SET_VRING_NUM/BASE/ENABLE, GET_VRING_BASE
//   addr            SET_VRING_ADDR
//   regions         SET_MEM_TABLE (region_count of them)
struct VhostUserMessage {
  std::uint32_t request = 0;
  std::uint32_t flags = 0;
  std::uint32_t size = 0;
  std::uint64_t u64 = 0;
  std::uint32_t state_index = 0;
  std::uint32_t state_num = 0;
  VhostUserVringAddr addr;
  std::uint32_t region_count = 0;
  std::array<VhostUserRegion, kMaxVhostUserRegions> regions{};

  bool need_reply() const { return (flags & kVhostUserFlagNeedReply) != 0; }
  // How many descriptors this message must arrive with.
  std::size_t expected_fds() const;
};

// Incremental vhost-user request parser. It does no I/O: feed it bytes in any split
// and it returns one step at a time, like EgdParser.
//
//   VhostUserParser parser;
//   // read exactly parser.wanted() bytes (so descriptors passed with a message
//   // arrive with its own bytes), then:
//   auto step = parser.Next(input, fds_received_with_this_message);
//   if (step.outcome == VhostUserParser::Outcome::kMessage) handle(step.message);
//   if (step.outcome == VhostUserParser::Outcome::kBad) close(step.error);
//
// A message is checked whole before it is returned: version bits, the reply flag
// (a request must not carry it), the payload size against the request type (exact
// for every fixed-size request), the region count, and the number of descriptors
// that came with it (`fd_count`, counted by the caller over the message's bytes).
// Unknown requests are bad. After kBad the parser stays bad and consumes nothing.
class VhostUserParser {
 public:
  enum class Outcome { kNeedMore, kMessage, kBad };
  struct Step {
    Outcome outcome = Outcome::kNeedMore;
    std::size_t consumed = 0;
    VhostUserMessage message;
    std::string error;  // kBad: what was wrong, for the log line
  };

  // `fd_count`: descriptors received since the previous message completed.
  Step Next(std::span<const std::uint8_t> input, std::size_t fd_count);

  // Bytes still missing from the current header or payload (never 0 unless bad).
  std::size_t wanted() const;
  bool idle() const { return state_ == State::kHeader && filled_ == 0; }

 private:
  enum class State { kHeader, kPayload, kBad };
  Step Finish(std::size_t consumed, std::size_t fd_count);
  Step Bad(std::string error);

  State state_ = State::kHeader;
  std::array<std::uint8_t, kVhostUserHeaderBytes> header_{};
  std::array<std::uint8_t, kMaxVhostUserPayloadBytes> payload_{};
  std::size_t filled_ = 0;  // of the header or of the payload, by state
  std::uint32_t request_ = 0;
  std::uint32_t flags_ = 0;
  std::uint32_t size_ = 0;
};

// A reply to `request`: header (version | REPLY) and payload, in wire order.
struct VhostUserReply {
  std::array<std::uint8_t, kVhostUserHeaderBytes + 8> bytes{};
  std::size_t size = 0;
  std::span<const std::uint8_t> view() const { return {bytes.data(), size}; }
};
VhostUserReply MakeU64Reply(std::uint32_t request, std::uint64_t value);
VhostUserReply MakeStateReply(std::uint32_t request, std::uint32_t index, std::uint32_t num);

}  // namespace rngmux
