#pragma once

#include <cstdint>
#include <string>

#include "server/session.h"

namespace rngmux {

// "127.0.0.1:1024" or "[::1]:1024": a connected TCP socket's peer, for logs;
// "unknown" if it cannot be read.
std::string DescribePeer(int fd);

// The local port of a bound TCP socket (0 if it cannot be read).
std::uint16_t LocalPort(int fd);

// TCP_NODELAY on TCP sockets (replies are small and latency-bound); no-op otherwise.
void ConfigureStreamSocket(Session::Socket& socket);

}  // namespace rngmux
