#pragma once

#include <sys/types.h>

#include <asio/basic_socket_acceptor.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/accept_failure.h"
#include "common/status.h"
#include "endpoint/endpoint_spec.h"
#include "tls/tls_context.h"
#include "transport/session_host.h"
#include "transport/tls_handshake.h"

namespace rngmux {

// Accepts connections on one --listen endpoint (TCP, IPv4 or IPv6, or a unix
// socket) and hands each to the SessionHost. Event-loop thread only.
class Listener {
 public:
  // Binds and listens. A unix socket file left by a dead server is replaced; one
  // that a live server still answers on is an error, as is any other file there.
  static Result<std::unique_ptr<Listener>> Open(asio::io_context& io, const EndpointSpec& spec,
                                                SessionHost& host);
  // Listens on a socket that is already listening (socket activation: a duplicate of
  // what systemd passed), owned from here. Stop() closes it but never removes its
  // socket file, which is systemd's.
  static Result<std::unique_ptr<Listener>> Adopt(asio::io_context& io, const EndpointSpec& spec,
                                                 SessionHost& host, int fd);
  ~Listener();

  void Start();
  void Stop();  // Stops accepting and removes the unix socket file. Idempotent.
  // The address actually bound (the real port when 0 was asked for).
  const std::string& bound_address() const { return bound_address_; }
  // The endpoint as bound: the spec it was opened with, with the real port.
  const EndpointSpec& spec() const { return spec_; }
  // A reload changed this endpoint's options (same address): connections accepted
  // from now on get them. The socket stays bound (a changed mode= needs a restart).
  void UpdateSpec(const EndpointSpec& spec);
  // TLS endpoints: the context new connections are made with (made from the spec's
  // files at start-up and at every reload, so renewed certificates apply at once).
  void SetTlsContext(std::shared_ptr<const TlsContext> context) { tls_ = std::move(context); }
  // Handshakes in progress at once, per listener; a connection beyond it closes the
  // oldest handshake (a flood of handshakes costs CPU, not established clients their
  // service, and stalled ones cannot keep new clients out).
  static constexpr std::size_t kMaxHandshakes = 64;

 private:
  using Acceptor = asio::basic_socket_acceptor<asio::generic::stream_protocol>;
  Listener(asio::io_context& io, const EndpointSpec& spec, SessionHost& host);
  void Accept();
  void RetryLater(const std::string& error);
  // Identifies, admits (or refuses) and hands over one accepted socket.
  void Welcome(int fd);
  void StartHandshake(Session::Socket socket, std::string peer, ClientIdentity identity);

  EndpointSpec spec_;
  SessionHost& host_;
  Acceptor acceptor_;
  AcceptRetry retry_;
  std::string bound_address_;
  // The socket file this listener created: on shutdown it removes that file only,
  // never one a newer server has put at the same path since.
  dev_t socket_file_device_ = 0;
  ino_t socket_file_inode_ = 0;
  bool stopped_ = false;
  std::shared_ptr<const TlsContext> tls_;
  // The handshakes under way, oldest first (expired ones are pruned as others start).
  std::vector<std::weak_ptr<TlsHandshake>> pending_handshakes_;
  // Handshakes may finish after a reload retired this listener: they check this first.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace rngmux
