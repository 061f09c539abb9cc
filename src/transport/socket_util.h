#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <asio/error.hpp>
#include <cerrno>
#include <cstdint>
#include <string>

#include "transport/session.h"

namespace rngmux {

// "127.0.0.1:1024" or "[::1]:1024": a connected TCP socket's peer, for logs;
// "unknown" if it cannot be read.
std::string DescribePeer(int fd);

// The local port of a bound TCP socket (0 if it cannot be read).
std::uint16_t LocalPort(int fd);

// Opens `socket` (any asio socket or acceptor) for `protocol` with SOCK_CLOEXEC,
// which asio's own open() does not set: a process the daemon spawns (the QNG
// worker) must never inherit a client's or a listener's socket.
template <typename Socket, typename Protocol>
asio::error_code OpenCloseOnExec(Socket& socket, const Protocol& protocol) {
  asio::error_code ec;
  const int fd = ::socket(protocol.family(), protocol.type() | SOCK_CLOEXEC, protocol.protocol());
  if (fd < 0) return asio::error_code(errno, asio::system_category());
  socket.assign(protocol, fd, ec);
  if (ec) ::close(fd);
  return ec;
}

// TCP_NODELAY on TCP sockets (replies are small and latency-bound); no-op otherwise.
void ConfigureStreamSocket(Session::Socket& socket);

}  // namespace rngmux
