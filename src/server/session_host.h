#pragma once

#include <functional>
#include <memory>
#include <string>

#include "server/session.h"
#include "vhost/vhost_user_connection.h"

namespace rngmux {

// Where transports hand over connected sockets. The host owns the sessions,
// tracks them for shutdown, and calls `on_closed` once a session has ended.
// Event-loop thread only.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  virtual std::shared_ptr<Session> Adopt(Session::Socket socket, const SessionOptions& options,
                                         std::string peer, std::function<void()> on_closed) = 0;
  // Asked by listeners before adopting an accepted socket: true means close it
  // at once (the client limit is reached; the host counts and logs it).
  virtual bool RefuseNewClient() = 0;
  // A connection on a vhost-user endpoint: one virtio-rng device. `peer` names it
  // (unix peer credentials).
  virtual std::shared_ptr<VhostUserConnection> AdoptVhostUser(Session::Socket socket,
                                                              std::string peer,
                                                              std::function<void()> on_closed) = 0;
};

}  // namespace rngmux
