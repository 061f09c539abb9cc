#pragma once

#include <sys/socket.h>

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "endpoint/endpoint_spec.h"

namespace rngmux {

// One listening socket the service manager passed in (socket activation).
struct InheritedSocket {
  int fd = -1;
  std::string name;     // FileDescriptorName= ("" if systemd gave none)
  std::string address;  // as an endpoint address: "tcp:127.0.0.1:1024", "unix:/run/x"
  int type = SOCK_STREAM;
  sockaddr_storage local{};
  socklen_t local_length = 0;

  // "egd-tcp (tcp:127.0.0.1:1024)", or the address alone when unnamed.
  std::string Describe() const;
};

// The sockets of socket activation (LISTEN_FDS, LISTEN_FDNAMES), owned for the life of
// the daemon: an endpoint that adopts one gets a duplicate, so a reload can remove the
// endpoint and add it back without the socket (which systemd also holds) ever being
// bound again. Unix socket files of passed sockets belong to systemd: no endpoint
// removes them.
class InheritedSockets {
 public:
  InheritedSockets() = default;
  InheritedSockets(InheritedSockets&& other) noexcept;
  InheritedSockets& operator=(InheritedSockets&& other) noexcept;
  InheritedSockets(const InheritedSockets&) = delete;
  InheritedSockets& operator=(const InheritedSockets&) = delete;
  ~InheritedSockets();

  // Takes the sockets systemd passed to this process, if any (SystemdListenFds(),
  // which also unsets the variables so no child sees them). Errors, one line each: a
  // passed descriptor that is not a listening TCP, UDP or unix socket.
  static Result<InheritedSockets> FromEnvironment();
  // The same from descriptors already open (tests): each (fd, name) is owned from here.
  static Result<InheritedSockets> FromDescriptors(std::vector<std::pair<int, std::string>> fds);

  bool empty() const { return sockets_.empty(); }
  const std::vector<InheritedSocket>& sockets() const { return sockets_; }

  // The socket a listen endpoint adopts, or nullptr to bind its own. With name=, the
  // socket of that name (nullptr if none was passed); it must then have the endpoint's
  // address ("listen \"tcp:...,name=egd\": the socket named \"egd\" is bound to
  // tcp:127.0.0.1:1025, not tcp:127.0.0.1:1024"). Without name=, the socket whose
  // address and type are the endpoint's. Connect endpoints adopt nothing.
  Result<const InheritedSocket*> Find(const EndpointSpec& endpoint) const;

  // The sockets no endpoint of `endpoints` adopts: each becomes a listen endpoint of its
  // own address with default options (so `rngmux serve` under a socket unit and no
  // configuration serves what the unit listens on).
  std::vector<const InheritedSocket*> Unclaimed(const std::vector<EndpointSpec>& endpoints) const;

 private:
  void CloseAll();
  std::vector<InheritedSocket> sockets_;
};

// A close-on-exec, non-blocking duplicate of `socket.fd` for one endpoint, or -1 with
// errno set.
int DuplicateForEndpoint(const InheritedSocket& socket);

}  // namespace rngmux
