#include "cli/egd_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "protocol/egd_parser.h"

namespace rngmux {
namespace {

using AddrInfoPtr = std::unique_ptr<addrinfo, decltype(&freeaddrinfo)>;

// Resolves host:port; family AF_UNSPEC or a fixed one.
Result<AddrInfoPtr> Resolve(const std::string& what, const std::string& host, std::uint16_t port,
                            int socktype, int family, bool passive) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = socktype;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) return Status::Error(what + ": resolve: " + gai_strerror(rc));
  return AddrInfoPtr(list, freeaddrinfo);
}

}  // namespace

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) close(fd_);
}

Result<UniqueFd> ConnectStream(const EndpointSpec& spec) {
  const std::string name = spec.Address();
  if (spec.transport == TransportKind::kUnix) {
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) return Status::FromErrno(name + ": socket", errno);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (spec.path.size() >= sizeof addr.sun_path) return Status::Error(name + ": path too long");
    std::memcpy(addr.sun_path, spec.path.c_str(), spec.path.size() + 1);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      return Status::FromErrno(name + ": connect", errno);
    }
    return fd;
  }
  auto list = Resolve(name, spec.host, spec.port, SOCK_STREAM, AF_UNSPEC, false);
  if (!list.ok()) return list.status();
  int last_error = ECONNREFUSED;
  for (addrinfo* ai = list->get(); ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) {
      last_error = errno;
      continue;
    }
    if (connect(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0) {
      const int one = 1;
      setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    last_error = errno;
  }
  return Status::FromErrno(name + ": connect", last_error);
}

Result<UniqueFd> ConnectDatagram(const EndpointSpec& spec, int receive_buffer_bytes) {
  const std::string name = spec.Address();
  auto remote = Resolve(name, spec.host, spec.port, SOCK_DGRAM, AF_UNSPEC, false);
  if (!remote.ok()) return remote.status();
  const addrinfo* to = remote->get();
  UniqueFd fd(socket(to->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::FromErrno(name + ": socket", errno);
  if (receive_buffer_bytes > 0) {
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof receive_buffer_bytes);
  }
  if (!spec.LocalAddress().empty()) {
    auto local = Resolve(name + ": local " + spec.LocalAddress(), spec.udp.local_host,
                         spec.udp.local_port, SOCK_DGRAM, to->ai_family, true);
    if (!local.ok()) return local.status();
    if (bind(fd.get(), (*local)->ai_addr, (*local)->ai_addrlen) != 0) {
      return Status::FromErrno(name + ": bind " + spec.LocalAddress(), errno);
    }
  }
  if (connect(fd.get(), to->ai_addr, to->ai_addrlen) != 0) {
    return Status::FromErrno(name + ": connect", errno);
  }
  return fd;
}

int SocketFamily(int fd) {
  sockaddr_storage addr{};
  socklen_t size = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size) != 0) return AF_UNSPEC;
  return addr.ss_family;
}

std::array<std::uint8_t, 2> ReadRequest(std::uint8_t bytes) {
  return {static_cast<std::uint8_t>(EgdCommand::kReadBlocking), bytes};
}

void AppendReadRequests(std::vector<std::uint8_t>& out, std::size_t count, std::uint8_t bytes) {
  const std::array<std::uint8_t, 2> request = ReadRequest(bytes);
  for (std::size_t i = 0; i < count; ++i) out.insert(out.end(), request.begin(), request.end());
}

}  // namespace rngmux
