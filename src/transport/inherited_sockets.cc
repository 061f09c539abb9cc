#include "transport/inherited_sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/systemd_protocol.h"

namespace rngmux {
namespace {

std::string Quoted(const std::string& text) { return "\"" + text + "\""; }

// "tcp:127.0.0.1:1024", "udp:[::1]:9", "unix:/run/x.sock" ("" for other families).
std::string AddressOf(const sockaddr_storage& local, socklen_t length, int type) {
  const char* prefix = type == SOCK_DGRAM ? "udp:" : "tcp:";
  char host[INET6_ADDRSTRLEN] = {};
  if (local.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(local);
    inet_ntop(AF_INET, &in.sin_addr, host, sizeof host);
    return prefix + std::string(host) + ":" + std::to_string(ntohs(in.sin_port));
  }
  if (local.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(local);
    inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
    return prefix + std::string("[") + host + "]:" + std::to_string(ntohs(in6.sin6_port));
  }
  if (local.ss_family == AF_UNIX && type == SOCK_STREAM) {
    const auto& un = reinterpret_cast<const sockaddr_un&>(local);
    const std::size_t max =
        length > offsetof(sockaddr_un, sun_path) ? length - offsetof(sockaddr_un, sun_path) : 0;
    if (max == 0 || un.sun_path[0] == '\0') return "";  // unnamed or abstract
    return "unix:" + std::string(un.sun_path, strnlen(un.sun_path, max));
  }
  return "";
}

// Inspects one passed descriptor: a listening stream socket (TCP or unix) or a bound
// UDP socket, with its local address.
Result<InheritedSocket> Inspect(int fd, const std::string& name) {
  InheritedSocket socket;
  socket.fd = fd;
  socket.name = name;
  const std::string what =
      "passed socket " + std::to_string(fd) + (name.empty() ? std::string() : " " + Quoted(name));
  socklen_t length = sizeof socket.type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &socket.type, &length) != 0) {
    return Status::Error(what + " is not a socket (" + std::strerror(errno) + ")");
  }
  socket.local_length = sizeof socket.local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&socket.local), &socket.local_length) != 0) {
    return Status::FromErrno(what + ": getsockname", errno);
  }
  socket.address = AddressOf(socket.local, socket.local_length, socket.type);
  const bool inet = socket.local.ss_family == AF_INET || socket.local.ss_family == AF_INET6;
  if (socket.address.empty() || (socket.type == SOCK_DGRAM && !inet) ||
      (socket.type != SOCK_STREAM && socket.type != SOCK_DGRAM)) {
    return Status::Error(what +
                         " is not a TCP, UDP or named unix stream socket (ListenStream= with an "
                         "address or a path, or ListenDatagram= with an address)");
  }
  if (socket.type == SOCK_STREAM) {
    int listening = 0;
    length = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0 || !listening) {
      return Status::Error(what + " (" + socket.address +
                           ") is not listening: rngmux needs Accept=no in the socket unit");
    }
  }
  return socket;
}

// True if `spec`'s address, resolved as a listener would, is `socket`'s local address.
bool SameAddress(const EndpointSpec& spec, const InheritedSocket& socket) {
  const bool datagram = spec.transport == TransportKind::kUdp;
  if ((socket.type == SOCK_DGRAM) != datagram) return false;
  if (IsUnixSocketEndpoint(spec)) {
    return socket.local.ss_family == AF_UNIX && socket.address == "unix:" + spec.path;
  }
  if (socket.local.ss_family != AF_INET && socket.local.ss_family != AF_INET6) return false;
  if (spec.port == 0) return false;  // any free port: never a passed one
  addrinfo hints{};
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  hints.ai_socktype = datagram ? SOCK_DGRAM : SOCK_STREAM;
  addrinfo* results = nullptr;
  if (getaddrinfo(spec.host.c_str(), std::to_string(spec.port).c_str(), &hints, &results) != 0) {
    return false;
  }
  // A listener binds the first address the name resolves to (Listener::Open).
  bool same = false;
  if (results != nullptr && results->ai_family == socket.local.ss_family) {
    if (results->ai_family == AF_INET) {
      const auto* want = reinterpret_cast<const sockaddr_in*>(results->ai_addr);
      const auto& have = reinterpret_cast<const sockaddr_in&>(socket.local);
      same = want->sin_port == have.sin_port && want->sin_addr.s_addr == have.sin_addr.s_addr;
    } else {
      const auto* want = reinterpret_cast<const sockaddr_in6*>(results->ai_addr);
      const auto& have = reinterpret_cast<const sockaddr_in6&>(socket.local);
      same = want->sin6_port == have.sin6_port &&
             std::memcmp(&want->sin6_addr, &have.sin6_addr, sizeof have.sin6_addr) == 0;
    }
  }
  freeaddrinfo(results);
  return same;
}

}  // namespace

std::string InheritedSocket::Describe() const {
  return name.empty() ? address : Quoted(name) + " (" + address + ")";
}

InheritedSockets::InheritedSockets(InheritedSockets&& other) noexcept
    : sockets_(std::move(other.sockets_)) {
  other.sockets_.clear();
}

InheritedSockets& InheritedSockets::operator=(InheritedSockets&& other) noexcept {
  if (this != &other) {
    CloseAll();
    sockets_ = std::move(other.sockets_);
    other.sockets_.clear();
  }
  return *this;
}

InheritedSockets::~InheritedSockets() { CloseAll(); }

void InheritedSockets::CloseAll() {
  for (const InheritedSocket& socket : sockets_) close(socket.fd);
  sockets_.clear();
}

Result<InheritedSockets> InheritedSockets::FromEnvironment() {
  Result<std::vector<std::pair<int, std::string>>> passed = SystemdListenFds();
  if (!passed.ok()) return passed.status();
  std::vector<std::pair<int, std::string>> fds = std::move(passed).value();
  // "unknown" is sd_listen_fds_with_names(3)'s name for a socket without one (what
  // systemd-socket-activate passes for descriptors --fdname did not name): unnamed.
  for (auto& [fd, name] : fds) {
    if (name == "unknown") name.clear();
  }
  return FromDescriptors(std::move(fds));
}

Result<InheritedSockets> InheritedSockets::FromDescriptors(
    std::vector<std::pair<int, std::string>> fds) {
  InheritedSockets inherited;
  Status failure = Status::Ok();
  for (auto& [fd, name] : fds) {
    // Owned from here, whatever happens: a failure closes every one.
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    Result<InheritedSocket> socket = Inspect(fd, name);
    if (!socket.ok()) {
      close(fd);
      if (failure.ok()) failure = socket.status();
      continue;
    }
    inherited.sockets_.push_back(std::move(socket).value());
  }
  if (!failure.ok()) return failure;
  return inherited;
}

Result<const InheritedSocket*> InheritedSockets::Find(const EndpointSpec& endpoint) const {
  if (endpoint.role != EndpointRole::kListen) return nullptr;
  if (!endpoint.name.empty()) {
    for (const InheritedSocket& socket : sockets_) {
      if (socket.name != endpoint.name) continue;
      if (!SameAddress(endpoint, socket)) {
        return Status::Error("listen " + Quoted(endpoint.text) + ": the socket named " +
                             Quoted(socket.name) + " is " + socket.address + ", not " +
                             endpoint.Address());
      }
      return &socket;
    }
    return nullptr;
  }
  for (const InheritedSocket& socket : sockets_) {
    if (SameAddress(endpoint, socket)) return &socket;
  }
  return nullptr;
}

std::vector<const InheritedSocket*> InheritedSockets::Unclaimed(
    const std::vector<EndpointSpec>& endpoints) const {
  std::vector<const InheritedSocket*> unclaimed;
  for (const InheritedSocket& socket : sockets_) {
    bool claimed = false;
    for (const EndpointSpec& endpoint : endpoints) {
      Result<const InheritedSocket*> found = Find(endpoint);
      if (found.ok() && *found == &socket) claimed = true;
    }
    if (!claimed) unclaimed.push_back(&socket);
  }
  return unclaimed;
}

int DuplicateForEndpoint(const InheritedSocket& socket) {
  const int fd = fcntl(socket.fd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return -1;
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    const int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

}  // namespace rngmux
