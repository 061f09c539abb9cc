#include "vhost/peer_identity.h"

#include <sys/socket.h>

namespace rngmux {

std::string DescribeUnixPeer(int fd, const std::string& address) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) {
    return address + "#" + std::to_string(fd);
  }
  return address + " pid=" + std::to_string(cred.pid) + " uid=" + std::to_string(cred.uid) +
         " gid=" + std::to_string(cred.gid);
}

}  // namespace rngmux
