#include "transport/socket_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <asio/ip/tcp.hpp>

namespace rngmux {

namespace {

struct InetAddress {
  std::string host;  // "127.0.0.1" or "[::1]"
  std::uint16_t port = 0;
};

// Reads a TCP socket's local or peer address; false for other families or errors.
bool ReadInetAddress(int fd, bool peer, InetAddress* out) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  auto* address = reinterpret_cast<sockaddr*>(&storage);
  if ((peer ? getpeername(fd, address, &length) : getsockname(fd, address, &length)) != 0) {
    return false;
  }
  char text[INET6_ADDRSTRLEN] = {};
  if (storage.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    *out = {text, ntohs(in->sin_port)};
    return true;
  }
  if (storage.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    *out = {"[" + std::string(text) + "]", ntohs(in6->sin6_port)};
    return true;
  }
  return false;
}

}  // namespace

std::string DescribePeer(int fd) {
  InetAddress address;
  if (!ReadInetAddress(fd, true, &address)) return "unknown";
  return address.host + ":" + std::to_string(address.port);
}

std::uint16_t LocalPort(int fd) {
  InetAddress address;
  return ReadInetAddress(fd, false, &address) ? address.port : 0;
}

void ConfigureStreamSocket(Session::Socket& socket) {
  asio::error_code ec;
  const auto local = socket.local_endpoint(ec);
  if (ec) return;
  const int family = local.protocol().family();
  if (family == AF_INET || family == AF_INET6) {
    asio::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  }
}

}  // namespace rngmux
