#pragma once

#include <array>
#include <asio/generic/stream_protocol.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "endpoint/endpoint_spec.h"
#include "protocol/egd_parser.h"
#include "transport/egd_session.h"
#include "transport/tls_handshake.h"
#include "transport/write_loops.h"

namespace rngmux {

// One client connection speaking EGD (or raw streaming) over a stream socket.
//
// It never stops reading requests, even while it waits for entropy: QEMU writes
// its request headers with a blocking write and freezes if they back up. With a
// lead, the lead is owed from the moment the connection opens, and topped up in
// quarters, so the guest's next request is already waiting in its socket buffer.
//
// A peer that closes its sending side (shutdown(SHUT_WR), `nc -N`) still gets the
// replies to everything it asked; a raw stream keeps flowing until writes fail.
//
// Over TLS (a stream whose handshake is done) it reads through the TLS layer
// instead of polling the socket; everything else is the same.
//
// Lifetime: owned by shared_ptr; pending asynchronous operations hold a reference.
// Event-loop thread only, but for the write itself when write loops are in use.
class Session final : public EgdSession, public std::enable_shared_from_this<Session> {
 public:
  using Socket = asio::generic::stream_protocol::socket;
  static constexpr std::size_t kOutputHighWater = 64 * 1024;

  // A connected stream: a plain socket, or a TLS stream after its handshake.
  struct Transport {
    Transport(Socket plain) : socket(std::move(plain)) {}  // NOLINT: implicit by design
    explicit Transport(std::unique_ptr<TlsStream> stream)
        : socket(stream->get_executor()), tls(std::move(stream)) {}
    Socket socket;  // unused (closed) when tls is set
    std::unique_ptr<TlsStream> tls;
    Socket& lowest() { return tls ? tls->next_layer() : socket; }
  };

  Session(Transport transport, SessionContext& context, SessionOptions options, std::string peer);

  // Starts the session; `on_closed` runs once, on the event loop, after Close().
  void Start(std::function<void()> on_closed);
  // Output buffer storage held now: zero for an idle connection.
  std::size_t buffered_capacity() const { return pending_.allocated() + in_flight_.allocated(); }
  // A reply is on its way to the socket (and, with write loops, the session is kept
  // alive until it is back).
  bool writing() const { return writing_; }

 private:
  void WaitReadable();
  void OnReadable();
  // What a plain socket read returned: EOF, an error, or input for OnInput(). False
  // when the session stops reading.
  bool OnRead(const asio::error_code& ec, std::span<const std::uint8_t> input);
  // TCP: acknowledge what was just read at once (see the .cc).
  void AckNow();
  void ReadTls();
  // Returns false if the session closed.
  bool OnInput(std::span<const std::uint8_t> input);

  void Flush() override;
  // Completes a write (on the serving loop, whichever loop wrote it). What it did not
  // send is counted as wiped if it failed or the session closed meanwhile.
  void OnWritten(const asio::error_code& ec, std::size_t sent);
  // With write loops: what the write loop sent; a write that would block goes on here.
  void OnSentOnWriteLoop(const asio::error_code& ec, std::size_t sent);
  // With write loops: a second descriptor for this socket, written on one of them.
  void OpenWriteDescriptor();
  bool TransportIdle() const override { return !writing_; }
  void CloseTransport() override;

  Transport transport_;
  Socket& socket_;  // the TCP or unix socket under it all
  std::unique_ptr<std::array<std::uint8_t, 16 * 1024>> tls_input_;  // TLS: the read buffer
  // Plain sockets: the first read after each wait (32 requests), see WaitReadable().
  std::array<std::uint8_t, 64> small_input_{};
  EgdParser parser_;
  OutputBuffer in_flight_;
  // With write loops (SessionContext::write_loops, plain sockets only): a dup() of the
  // socket that write_loop_ sends each reply on, without blocking. in_flight_ is not
  // touched here while `writing_`, and the session keeps itself alive until the write
  // loop's answer has come back.
  std::shared_ptr<WriteDescriptor> write_descriptor_;
  asio::io_context* write_loop_ = nullptr;
  std::shared_ptr<Session> write_keepalive_;
  bool writing_ = false;
  bool reading_ = false;
  bool quick_ack_ = false;  // TCP in lead mode: ACK every read at once
};

}  // namespace rngmux
