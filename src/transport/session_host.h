#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "endpoint/endpoint_spec.h"
#include "transport/client_identity.h"
#include "transport/session.h"
#include "transport/tls_handshake.h"
#include "vhost/vhost_user_connection.h"

namespace rngmux {

// Where transports hand over connected sockets. The host owns the sessions,
// tracks them for shutdown, puts each in its tenant's share, and calls
// `on_closed` once a session has ended. Event-loop thread only.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // `endpoint` is the one the socket came through (its session, share and limit
  // options apply); `peer` names the connection in logs.
  virtual std::shared_ptr<Session> Adopt(Session::Transport transport, const EndpointSpec& endpoint,
                                         std::string peer, ClientIdentity identity,
                                         std::function<void()> on_closed) = 0;
  // Asked by listeners before adopting an accepted socket: true means close it at
  // once, before a byte is sent (the client limit is reached, or the endpoint does
  // not allow this client; the host counts and logs it).
  // On a TLS listen endpoint it is asked twice: before the handshake (the address,
  // the client limit) and after it, with the verified certificate (allow-subject=).
  virtual bool Refuse(const EndpointSpec& endpoint, const ClientIdentity& identity) = 0;
  // Where listeners count failed accepts (out of descriptors, out of memory; the
  // connection waits in the backlog and the listener tries again shortly).
  virtual std::atomic<std::uint64_t>& accept_failures() = 0;
  // A TLS handshake on `endpoint` ended (either side): counted; when it failed
  // (outcome.stream is null) the host logs one line with the peer and the reason.
  virtual void TlsHandshakeFinished(const EndpointSpec& endpoint, const ClientIdentity& identity,
                                    const std::string& peer,
                                    const TlsHandshakeOutcome& outcome) = 0;
  // A connection on a vhost-user endpoint: one virtio-rng device, a consumer of its
  // own in the fair share. `peer` names it; `identity` is its unix peer credentials.
  virtual std::shared_ptr<VhostUserConnection> AdoptVhostUser(Session::Socket socket,
                                                              const EndpointSpec& endpoint,
                                                              std::string peer,
                                                              ClientIdentity identity,
                                                              std::function<void()> on_closed) = 0;
};

}  // namespace rngmux
