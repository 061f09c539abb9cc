#pragma once

#include <asio/any_io_executor.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "common/rate_limit.h"
#include "common/secure_memory.h"
#include "endpoint/endpoint_spec.h"
#include "pool/fair_share.h"
#include "pool/share_group.h"
#include "protocol/egd_parser.h"
#include "server/stats.h"
#include "transport/client_identity.h"

namespace rngmux {

class EgdSession;
class WriteLoops;

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
  // Per-connection log lines, limited per client identity (nullptr: not limited).
  KeyedLogLimiter* client_log = nullptr;
  // Set while the fair share pumps (EgdSession::PumpAndFlush): a session given bytes
  // then only lists itself here, and is flushed once the pump is over.
  bool defer_flush = false;
  std::vector<EgdSession*> deferred_flush{};  // nullptr: destroyed while listed
  // Plain stream sessions hand their writes to these loops (nullptr: they write on
  // the event loop themselves). Set before the first session starts.
  WriteLoops* write_loops = nullptr;
};

// Logs a line about one client, at most once per interval per identity and kind
// (`kind` is "connected", "closed"...); the next line that is logged says how many
// were left out.
void LogClientEvent(SessionContext& context, const ClientIdentity& identity, const char* kind,
                    LogLevel level, const std::string& text);

// A bounded byte buffer for outgoing replies. Storage is allocated on first use,
// sized to what is held (a QEMU lead needs 4 KiB, a bulk reader up to the
// capacity), and given back by Release() once empty, so an idle connection holds
// none. Storage that is outgrown or released is wiped first, so random bytes are
// never left behind in freed memory; Clear() wipes what it held.
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
  // Drops the first n bytes (n <= size()), moving the rest to the front; the bytes
  // left behind at the end are wiped.
  void ConsumeFront(std::size_t n);
  void Clear();
  // Clears and frees the storage (the next use allocates again).
  void Release();
  void Swap(OutputBuffer& other);
  // Bytes of storage held now (for tests of the memory bound).
  std::size_t allocated() const { return allocated_; }

 private:
  void Reserve(std::size_t needed);

  // From pages excluded from core dumps (AllocateDumpExcluded).
  std::unique_ptr<std::uint8_t[], DumpExcludedDeleter> data_;
  std::size_t capacity_;
  std::size_t allocated_ = 0;
  std::size_t size_ = 0;
};

// The EGD side of one client, whatever carries its bytes: the requests it has
// queued, what it is owed, and the reply bytes not yet handed to its transport.
// Subclasses bring the transport (a stream socket, a UDP peer address) through the
// hooks below; the fair share, the counters and the wipe rules are the same for all.
//
// Requests are answered strictly in order; blocking reads (0x02) wait in the
// FairShare. With a lead (QEMU compatibility), `lead_bytes` unsolicited bytes are
// owed from Begin() on, and every 02 NN tops the lead up again (in pieces of at
// least a quarter of it, so one write answers many requests).
//
// Close() is idempotent, removes the session from the FairShare, wipes what it
// still held (counted as wiped_undelivered_bytes; a write in progress counts what it
// never sent when it ends) and runs `on_closed` once, posted. Event-loop thread only.
class EgdSession : public Consumer {
 public:
  // The output buffer's size for a high-water mark: room for a full 01 FF reply
  // (and the 04 reply) beyond it.
  static constexpr std::size_t OutputCapacity(std::size_t high_water) {
    return high_water + 2 * (1 + kMaxEgdRequestBytes);
  }

  ~EgdSession() override;
  EgdSession(const EgdSession&) = delete;
  EgdSession& operator=(const EgdSession&) = delete;

  void Close(std::string_view reason, bool warn = false) {
    CloseAt(warn ? LogLevel::kWarning : LogLevel::kInfo, reason);
  }
  bool closed() const { return closed_; }
  const std::string& peer() const { return peer_; }
  // Who the client is (for access control, shares and stats).
  const ClientIdentity& identity() const { return identity_; }
  void set_identity(ClientIdentity identity) { identity_ = std::move(identity); }
  // Makes the session draw through its tenant's group instead of holding a share
  // of its own. Call before Begin(); the group must outlive nothing: the session
  // holds it.
  void SetShareGroup(std::shared_ptr<ShareGroup> group);
  const std::shared_ptr<ShareGroup>& share_group() const { return group_; }
  // Random bytes this client has been sent, and requests it made: for stats.
  std::uint64_t served_bytes() const { return served_bytes_; }
  std::uint64_t requests() const { return requests_; }
  std::size_t queued_requests() const { return queue_.size(); }
  // The requests queued and not answered yet, in order: none of their reply has left
  // (a reply still being filled is wiped at close).
  std::vector<EgdRequest> UnansweredRequests() const;

  std::size_t Wanted() const override;
  void Deliver(std::span<const std::uint8_t> bytes) override;

  // Runs the fair share's Pump() and then flushes every session it gave bytes,
  // once each. A round gives each consumer a quantum per pass; flushing on each
  // delivery wrote the first pass's quantum at once and the rest of the round in a
  // second write when that one completed: two system calls per client and round
  // where one does, and a client that sees half its replies asks in halves.
  // Returns the bytes delivered.
  static std::size_t PumpAndFlush(SessionContext& context);

 protected:
  // `output_high_water`: most reply bytes held before the session stops asking
  // the FairShare for more (the buffer has room for one 01 FF reply beyond it).
  EgdSession(SessionContext& context, SessionOptions options, std::string peer,
             std::size_t output_high_water, asio::any_io_executor executor);

  // Counts the client; `on_closed` runs once, on the executor, after Close().
  void Begin(std::function<void()> on_closed);
  // Starts owing the lead (if any) and asks the FairShare for it.
  void StartDemand();
  // The peer closed its sending side: it will not ask again, but is still sent
  // everything it asked for (with a lead: the lead and every request it topped up),
  // then the session closes.
  void InputClosed();
  // Returns false if the session closed (too many requests waiting).
  // `counted`: already counted in the daemon's `requests` (handed over from a peer a
  // reload let go); the session's own count takes it all the same.
  bool Enqueue(const EgdRequest& request, bool counted = false);
  void ProcessQueue();
  void UpdateDemand();
  // Bytes at the end of pending_ that belong to a 0x02 request not yet fully
  // answered (a datagram transport holds them back until the reply is complete).
  std::size_t PartialReplyBytes() const;
  void CloseAt(LogLevel level, std::string_view reason);
  SessionContext& context() { return context_; }
  const SessionOptions& options() const { return options_; }

  // Transport hooks.
  // Hands what may leave of pending_ to the transport (or starts doing so). A
  // transport that holds bytes taken from pending_ counts in wiped_undelivered_bytes
  // what it never sends, when its write ends (failed, or the session closed meanwhile).
  virtual void Flush() = 0;
  // True when nothing is being written.
  virtual bool TransportIdle() const = 0;
  // Releases the transport and wipes what it still holds.
  virtual void CloseTransport() = 0;

  OutputBuffer pending_;
  bool input_closed_ = false;  // the peer sent EOF (it may still be reading)

 private:
  struct Pending {
    EgdCommand command;
    std::uint8_t count;
  };

  // Flush() now, or once the pump that is running has ended.
  void FlushOrDefer();
  static void FlushDeferred(SessionContext& context);
  void AnswerImmediate(const Pending& request);
  void RecomputeBlockingRun();
  // After the peer closed its sending side: close once everything asked is sent.
  void MaybeFinish();

  SessionContext& context_;
  SessionOptions options_;
  std::string peer_;
  std::size_t output_high_water_;
  asio::any_io_executor executor_;
  ClientIdentity identity_;
  std::shared_ptr<ShareGroup> group_;  // nullptr: a share of its own
  std::function<void()> on_closed_;

  std::deque<Pending> queue_;           // unanswered requests, in order
  std::size_t head_delivered_ = 0;      // bytes already delivered towards queue_.front()
  std::size_t blocking_run_bytes_ = 0;  // bytes owed to the 0x02 run at the head
  std::size_t lead_owed_ = 0;           // unsolicited bytes owed (lead mode)
  bool lead_batch_ = false;             // a top-up (or the first lead) is being sent
  bool closed_ = false;
  bool flush_deferred_ = false;  // listed in context_.deferred_flush
  std::uint64_t served_bytes_ = 0;
  std::uint64_t requests_ = 0;
};

}  // namespace rngmux
