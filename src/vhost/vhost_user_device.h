#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "vhost/guest_memory.h"
#include "vhost/message.h"
#include "vhost/split_virtqueue.h"
#include "vhost/unique_fd.h"

namespace rngmux {

// Maps one region of guest memory passed as a descriptor. Abstract so that tests
// and the fuzzer can hand out plain buffers.
class RegionMapper {
 public:
  // A mapping; unmapped when destroyed.
  class Mapping {
   public:
    virtual ~Mapping() = default;
    // The first byte of the region (the fd's byte at mmap_offset).
    virtual std::uint8_t* region() const = 0;
  };
  virtual ~RegionMapper() = default;
  // Maps `size` bytes of `fd` from `offset`, shared, read-write.
  virtual Result<std::unique_ptr<Mapping>> Map(int fd, std::uint64_t size,
                                               std::uint64_t offset) = 0;
};

// mmap(2), for the daemon.
class MmapRegionMapper final : public RegionMapper {
 public:
  Result<std::unique_ptr<Mapping>> Map(int fd, std::uint64_t size, std::uint64_t offset) override;
};

// One vhost-user-rng device: the protocol state machine (features, memory table,
// one ring) and the ring's buffers, with no socket I/O. The transport feeds it
// parsed messages with the descriptors that came with them, sends the replies it
// returns, watches kick_fd() and signals call_fd().
//
// Features offered: VERSION_1, PROTOCOL_FEATURES, EVENT_IDX, INDIRECT_DESC (QEMU 7.2
// negotiates the last two whether offered or not); protocol features MQ (one queue)
// and REPLY_ACK. Every message with need_reply gets an answer, also on a connection
// that starts mid-way (a backend restart: QEMU replays SET_MEM_TABLE... without
// renegotiating).
//
// The ring runs once it has memory, a size, addresses, a kick fd and is enabled
// (SET_VRING_ENABLE 1; without PROTOCOL_FEATURES on this connection the kick fd
// alone enables it). GET_VRING_BASE and SET_VRING_ENABLE 0 stop it; a buffer held
// but not yet filled is given back, so the driver gets it again after a restart.
//
// Buffers: the device holds at most one guest buffer (Linux keeps one 64-byte
// request outstanding). TakeBuffer() pops the next one; Fill() writes bytes into
// it, after those already there, and marks it used once it is full (its capacity,
// at most kMaxFillBytes), with exactly that length. A buffer is never handed back
// short, although the spec allows it: Debian 12's guest kernel (6.1.0-57, whose
// virtio-rng copy_data() takes the bytes left for the end offset) hangs for good
// on the read after a 33..63-byte fill of its 64-byte buffer: it is left with
// bytes it cannot copy, no request outstanding and a wait nobody completes. The
// fair share hands out pieces whenever the pool runs short, so without this a
// slow source stalls such guests. Event-loop thread only.
class VhostUserDevice {
 public:
  static constexpr std::uint64_t kFeatureIndirectDesc = 1ull << 28;
  static constexpr std::uint64_t kFeatureEventIdx = 1ull << 29;
  static constexpr std::uint64_t kFeatureProtocolFeatures = 1ull << 30;
  static constexpr std::uint64_t kFeatureVersion1 = 1ull << 32;
  static constexpr std::uint64_t kFeatureRingPacked = 1ull << 34;
  static constexpr std::uint64_t kOfferedFeatures =
      kFeatureVersion1 | kFeatureProtocolFeatures | kFeatureEventIdx | kFeatureIndirectDesc;
  static constexpr std::uint64_t kProtocolFeatureMq = 1ull << 0;
  static constexpr std::uint64_t kProtocolFeatureReplyAck = 1ull << 3;
  static constexpr std::uint64_t kOfferedProtocolFeatures =
      kProtocolFeatureMq | kProtocolFeatureReplyAck;
  // The most bytes one guest buffer is asked to take at once: a buffer of gigabytes
  // must not make one device ask the fair share for the whole pool.
  static constexpr std::size_t kMaxFillBytes = 64 * 1024;

  explicit VhostUserDevice(RegionMapper& mapper) : mapper_(mapper) {}
  VhostUserDevice(const VhostUserDevice&) = delete;
  VhostUserDevice& operator=(const VhostUserDevice&) = delete;

  struct Outcome {
    Status status;                        // not ok: close the device (after the reply)
    std::optional<VhostUserReply> reply;  // send this, if set
    std::string note;                     // something worth a log line, if not empty
  };
  // `fds`: exactly message.expected_fds() descriptors (the parser checked the count).
  Outcome Handle(const VhostUserMessage& message, std::vector<UniqueFd> fds);

  bool running() const { return queue_.started(); }
  int kick_fd() const { return kick_.get(); }
  int call_fd() const { return call_.get(); }
  std::uint64_t acked_features() const { return features_; }

  // Pops the next guest buffer if none is held (zero-length buffers are returned
  // used at once, and set *signal if the driver should be signalled). Not ok: the
  // ring is bad (close).
  Status TakeBuffer(bool* signal);
  // Bytes the held buffer still takes (0 if none or the ring is stopped).
  std::size_t Wanted() const;
  // Writes `bytes` (size <= Wanted()) into the held buffer after the bytes written
  // before; once it is full, marks it used with its whole length. Returns true if
  // the driver should be signalled (only ever when a buffer was marked used).
  bool Fill(std::span<const std::uint8_t> bytes);

  std::uint64_t buffers_used() const { return buffers_used_; }
  std::uint64_t bytes_written() const { return bytes_written_; }

 private:
  Outcome HandleRequest(const VhostUserMessage& message, std::vector<UniqueFd>& fds);
  Status SetMemTable(const VhostUserMessage& message, std::vector<UniqueFd>& fds);
  // Starts the ring if everything it needs is there. Not ok: its addresses are bad.
  Status MaybeStart(std::string* note);
  // Stops the ring, giving back a held buffer (bytes written into it are lost,
  // never served twice); `base_` keeps the next avail index.
  void StopRing();
  // The most the held buffer takes: its capacity, at most kMaxFillBytes.
  std::size_t HeldSize() const;
  void Reset();

  RegionMapper& mapper_;
  std::vector<std::unique_ptr<RegionMapper::Mapping>> mappings_;
  GuestMemory memory_;
  SplitVirtqueue queue_;
  std::uint64_t features_ = 0;
  std::uint64_t protocol_features_ = 0;
  bool protocol_negotiated_ = false;  // SET_PROTOCOL_FEATURES seen on this connection
  std::uint32_t num_ = 0;
  std::optional<VhostUserVringAddr> addr_;
  std::uint16_t base_ = 0;
  bool enabled_ = false;
  UniqueFd kick_;
  UniqueFd call_;
  UniqueFd err_;
  std::optional<SplitVirtqueue::Chain> held_;
  std::size_t held_filled_ = 0;  // bytes written into *held_ so far
  SplitVirtqueue::Chain scratch_;
  std::uint64_t buffers_used_ = 0;
  std::uint64_t bytes_written_ = 0;
};

}  // namespace rngmux
