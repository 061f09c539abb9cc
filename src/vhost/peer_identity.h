#pragma once

#include <string>

namespace rngmux {

// Who is at the other end of a unix socket, for logs, stats and the fair share:
// "ADDRESS pid=P uid=U gid=G" from SO_PEERCRED, or "ADDRESS#FD" if the kernel does
// not say. The one place a vhost-user device's identity is made, so that a client
// identity type can replace the string later.
std::string DescribeUnixPeer(int fd, const std::string& address);

}  // namespace rngmux
