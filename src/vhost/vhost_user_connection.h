#pragma once

#include <asio/generic/stream_protocol.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pool/fair_share.h"
#include "transport/egd_session.h"
#include "vhost/message.h"
#include "vhost/unique_fd.h"
#include "vhost/vhost_user_device.h"

namespace rngmux {

// One vhost-user-rng device on a connected unix socket: the transport around a
// VhostUserDevice. It reads messages exactly (header, then payload) with recvmsg so
// that the descriptors QEMU passes arrive with their own message, sends replies,
// watches the ring's kick eventfd and writes the call eventfd.
//
// It is one Consumer in the server's FairShare, like an EGD session: it wants bytes
// while it holds a guest buffer, and waits (no timer, no polling) when the pool is
// empty. A bad message or ring closes this device only, with a log line and a
// counter. Bytes handed to it by Deliver() go straight into guest memory and are
// counted as served.
//
// Lifetime: owned by shared_ptr; pending asynchronous operations hold a reference.
// Event-loop thread only.
class VhostUserConnection final : public Consumer,
                                  public std::enable_shared_from_this<VhostUserConnection> {
 public:
  using Socket = asio::generic::stream_protocol::socket;

  VhostUserConnection(Socket socket, SessionContext& context, std::string peer);
  ~VhostUserConnection() override;
  VhostUserConnection(const VhostUserConnection&) = delete;
  VhostUserConnection& operator=(const VhostUserConnection&) = delete;

  // `on_closed` runs once, posted on the event loop, after Close().
  void Start(std::function<void()> on_closed);
  void Close(std::string_view reason, bool warn = false);
  bool closed() const { return closed_; }

  const std::string& peer() const { return peer_; }
  std::uint64_t served_bytes() const { return device_.bytes_written(); }
  std::uint64_t buffers_used() const { return device_.buffers_used(); }
  std::size_t held_buffers() const { return device_.Wanted() > 0 ? 1 : 0; }

  std::size_t Wanted() const override;
  void Deliver(std::span<const std::uint8_t> bytes) override;

 private:
  void WaitReadable();
  void OnReadable();
  // Returns false if the connection closed.
  bool ReadSome();
  bool HandleMessage(const VhostUserMessage& message);
  bool Send(std::span<const std::uint8_t> bytes);
  // After each message: follow the kick fd, take a buffer if the ring runs.
  void SyncRing();
  void WatchKick();
  void OnKick();
  void RefillAndSignal(bool signal);
  void Signal();
  void BadInput(std::string_view reason, bool ring);

  Socket socket_;
  SessionContext& context_;
  std::string peer_;
  MmapRegionMapper mapper_;
  VhostUserDevice device_;
  VhostUserParser parser_;
  std::vector<UniqueFd> fds_;  // received with the message being read
  asio::posix::stream_descriptor kick_;
  int kick_source_ = -1;  // the device's kick fd that kick_ watches a duplicate of
  unsigned kick_generation_ = 0;
  std::function<void()> on_closed_;
  bool reading_ = false;
  bool closed_ = false;
};

}  // namespace rngmux
