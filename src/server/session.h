#pragma once

#include <asio/generic/stream_protocol.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "pool/fair_share.h"
#include "protocol/egd_parser.h"
#include "server/stats.h"
#include "transport/endpoint_spec.h"

namespace rngmux {

// What all sessions share. Event-loop thread only.
struct SessionContext {
  EntropyPool& pool;
  FairShare& fair_share;
  ServerCounters& counters;
  // Schedules FairShare::Pump() on the event loop (coalesced, never re-entrant).
  std::function<void()> request_pump;
  std::size_t max_queued_requests = 4096;
  // Claimed min-entropy of the serving source, for the 0x00 answer.
  double entropy_bits_per_byte = 8;
};

// A fixed-capacity byte buffer for outgoing replies. Its storage is allocated on
// first use (idle connections cost nothing) and never reallocated, so random
// bytes are never left behind in freed memory; Clear() wipes what it held.
class OutputBuffer {
 public:
  explicit OutputBuffer(std::size_t capacity) : capacity_(capacity) {}
  ~OutputBuffer() { Clear(); }
  OutputBuffer(const OutputBuffer&) = delete;
  OutputBuffer& operator=(const OutputBuffer&) = delete;

  std::size_t size() const { return size_; }
  std::size_t room() const { return capacity_ - size_; }
  bool empty() const { return size_ == 0; }
  const std::uint8_t* data() const { return data_.get(); }
  // Requires bytes.size() <= room().
  void Append(std::span<const std::uint8_t> bytes);
  // Reserves n bytes at the end (n <= room()) and returns them for filling in place.
  std::span<std::uint8_t> Extend(std::size_t n);
  // Drops (and wipes) everything past new_size.
  void Truncate(std::size_t new_size);
  void Clear();
  void Swap(OutputBuffer& other);

 private:
  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t capacity_;
  std::size_t size_ = 0;
};

// One client connection speaking EGD (or raw streaming) over a stream socket.
//
// It never stops reading requests, even while it waits for entropy: QEMU writes
// its request headers with a blocking write and freezes if they back up. Requests
// are answered strictly in order; blocking reads (0x02) wait in the FairShare.
// With a lead (QEMU compatibility), `lead_bytes` unsolicited bytes are owed from
// the moment the connection opens, and every 02 NN tops the lead up again (in
// pieces of at least a quarter of it, so one write answers many requests), so
// the guest's next request is already waiting in its socket buffer.
//
// A peer that closes its sending side (shutdown(SHUT_WR), `nc -N`) still gets the
// replies to everything it asked; a raw stream keeps flowing until writes fail.
//
// Lifetime: owned by shared_ptr; pending asynchronous operations hold a reference.
// Close() is idempotent, removes it from the FairShare and wipes what it still held.
// Event-loop thread only.
class Session final : public Consumer, public std::enable_shared_from_this<Session> {
 public:
  using Socket = asio::generic::stream_protocol::socket;
  // Room for a full 0x01 reply beyond the random-byte high-water mark.
  static constexpr std::size_t kOutputHighWater = 64 * 1024;
  static constexpr std::size_t kOutputCapacity = kOutputHighWater + 512;

  Session(Socket socket, SessionContext& context, SessionOptions options, std::string peer);
  ~Session() override;

  // Starts the session; `on_closed` runs once, on the event loop, after Close().
  void Start(std::function<void()> on_closed);
  void Close(std::string_view reason, bool warn = false);
  bool closed() const { return closed_; }
  const std::string& peer() const { return peer_; }
  // Random bytes this client has been sent, and requests it made: for stats.
  std::uint64_t served_bytes() const { return served_bytes_; }
  std::uint64_t requests() const { return requests_; }
  std::size_t queued_requests() const { return queue_.size(); }

  std::size_t Wanted() const override;
  void Deliver(std::span<const std::uint8_t> bytes) override;

 private:
  struct Pending {
    EgdCommand command;
    std::uint8_t count;
  };

  void WaitReadable();
  void OnReadable();
  // Returns false if the session closed.
  bool OnInput(std::span<const std::uint8_t> input);
  bool Enqueue(const EgdRequest& request);
  void ProcessQueue();
  void AnswerImmediate(const Pending& request);
  void RecomputeBlockingRun();
  void UpdateDemand();
  void Flush();
  // After the peer closed its sending side: close once everything asked is sent.
  void MaybeFinish();

  Socket socket_;
  SessionContext& context_;
  SessionOptions options_;
  std::string peer_;
  std::function<void()> on_closed_;
  EgdParser parser_;

  std::deque<Pending> queue_;           // unanswered requests, in order
  std::size_t head_delivered_ = 0;      // bytes already sent towards queue_.front()
  std::size_t blocking_run_bytes_ = 0;  // bytes owed to the 0x02 run at the head
  std::size_t lead_owed_ = 0;           // unsolicited bytes owed (lead mode)

  OutputBuffer pending_{kOutputCapacity};
  OutputBuffer in_flight_{kOutputCapacity};
  bool writing_ = false;
  bool reading_ = false;
  bool input_closed_ = false;  // peer sent EOF (it may still be reading)
  bool closed_ = false;
  bool quick_ack_ = false;  // TCP in lead mode: ACK every read at once
  std::uint64_t served_bytes_ = 0;
  std::uint64_t requests_ = 0;
};

}  // namespace rngmux
