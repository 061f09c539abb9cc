#pragma once

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "common/status.h"
#include "endpoint/endpoint_spec.h"

namespace rngmux {

// How the command line's EGD clients (fetch, fetch over UDP, bench) reach a daemon and
// what they ask it: one place for connecting and for building requests.

// Owns a file descriptor; closes it unless released.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  int get() const { return fd_; }
  // Hands the descriptor over (to an asio socket).
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// A connected stream socket for a tcp: or unix: endpoint (TCP_NODELAY on TCP; each
// resolved address is tried in turn). Errors name the endpoint:
//   tcp:127.0.0.1:1: connect: Connection refused
//   tcp:nosuchhost:1: resolve: Name or service not known
Result<UniqueFd> ConnectStream(const EndpointSpec& spec);

// A connected datagram socket for a udp: endpoint, bound to its local= address if it
// has one; the kernel then takes datagrams from the server's address only.
// `receive_buffer_bytes` > 0 sets SO_RCVBUF.
Result<UniqueFd> ConnectDatagram(const EndpointSpec& spec, int receive_buffer_bytes = 0);

// The socket's address family (AF_INET, AF_INET6, AF_UNIX), for adopting it.
int SocketFamily(int fd);

// The EGD blocking read request for `bytes` bytes (1-255): 02 NN.
std::array<std::uint8_t, 2> ReadRequest(std::uint8_t bytes);
// Appends `count` such requests to `out`.
void AppendReadRequests(std::vector<std::uint8_t>& out, std::size_t count, std::uint8_t bytes);

}  // namespace rngmux
