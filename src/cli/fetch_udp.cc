#include "cli/fetch_udp.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "cli/output.h"
#include "common/secure_memory.h"
#include "protocol/egd_parser.h"

namespace rngmux {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kMaxRetransmitWait{8000};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "rngmux: error: %s\n", message.c_str());
  return 1;
}

using AddrInfoPtr = std::unique_ptr<addrinfo, decltype(&freeaddrinfo)>;

// Resolves host:port for a datagram socket; family AF_UNSPEC or a fixed one.
AddrInfoPtr Resolve(const std::string& host, std::uint16_t port, int family, bool passive,
                    std::string* error) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_DGRAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    *error = gai_strerror(rc);
    return AddrInfoPtr(nullptr, freeaddrinfo);
  }
  return AddrInfoPtr(list, freeaddrinfo);
}

std::chrono::milliseconds Seconds(double seconds) {
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
}

}  // namespace

int RunUdpFetch(const EndpointSpec& spec, const UdpFetchOptions& options) {
  const std::string name = spec.Address();
  std::string error;
  AddrInfoPtr remote = Resolve(spec.host, spec.port, AF_UNSPEC, false, &error);
  if (!remote) return Fail(name + ": " + error);
  Fd fd(socket(remote->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Fail(name + ": socket: " + std::strerror(errno));
  if (!spec.LocalAddress().empty()) {
    AddrInfoPtr local =
        Resolve(spec.udp.local_host, spec.udp.local_port, remote->ai_family, true, &error);
    if (!local) return Fail(name + ": local " + spec.LocalAddress() + ": " + error);
    if (bind(fd.get(), local->ai_addr, local->ai_addrlen) != 0) {
      return Fail(name + ": bind " + spec.LocalAddress() + ": " + std::strerror(errno));
    }
  }
  // Connected: the kernel then takes datagrams from the server's address only.
  if (connect(fd.get(), remote->ai_addr, remote->ai_addrlen) != 0) {
    return Fail(name + ": connect: " + std::strerror(errno));
  }

  const auto start = Clock::now();
  const auto deadline = start + Seconds(options.timeout_seconds);
  const auto initial_wait =
      std::max(Seconds(options.retransmit_seconds), std::chrono::milliseconds(1));
  auto retransmit_wait = initial_wait;
  auto last_progress = start;
  const std::size_t window = std::size_t{options.depth} * options.chunk;
  std::size_t owed = 0;  // bytes asked for and not (yet) received
  std::size_t received = 0;
  std::size_t resent = 0;
  bool any_reply = false;
  SecureBuffer buffer(64 * 1024);

  // Sends 02 NN; false (after saying why) if the server is known to be gone.
  auto ask = [&](std::size_t n) -> int {
    const std::uint8_t request[2] = {static_cast<std::uint8_t>(EgdCommand::kReadBlocking),
                                     static_cast<std::uint8_t>(n)};
    if (send(fd.get(), request, sizeof request, MSG_DONTWAIT | MSG_NOSIGNAL) == 2) return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOBUFS) return 0;
    return -1;
  };
  auto refused = [&](int err) {
    return Fail(name + ": " + std::strerror(err) +
                (err == ECONNREFUSED ? " (nothing is listening there)" : ""));
  };

  while (received < options.count) {
    while (received + owed < options.count && owed < window) {
      const std::size_t n = std::min<std::size_t>(options.chunk, options.count - received - owed);
      const int sent = ask(n);
      if (sent < 0) return refused(errno);
      if (sent == 0) break;  // the socket is full for now: ask for the rest later
      owed += n;
    }
    auto now = Clock::now();
    if (now >= deadline) {
      return Fail(name + ": timed out after " +
                  std::to_string(options.timeout_seconds).substr(0, 6) + " s with " +
                  std::to_string(received) + " of " + std::to_string(options.count) + " bytes (" +
                  std::to_string(resent) + " requests sent again" +
                  (any_reply ? ")"
                             : "; no reply at all: is rngmux listening there, and is this "
                               "address in its allow= list?)"));
    }
    const auto wake = std::min(deadline, last_progress + retransmit_wait);
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now);
    pollfd pfd{fd.get(), POLLIN, 0};
    const int rc = poll(&pfd, 1, static_cast<int>(std::clamp<long long>(wait.count(), 0, 1000)));
    if (rc < 0 && errno != EINTR) return Fail(std::string("poll: ") + std::strerror(errno));
    if (rc > 0) {
      while (received < options.count) {
        const ssize_t n = recv(fd.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
          return refused(errno);
        }
        const auto got = static_cast<std::size_t>(n);
        const std::size_t take = std::min(got, options.count - received);
        if (!WriteOutput(std::span<const std::uint8_t>(buffer.data(), take), options.hex)) return 1;
        SecureWipe(buffer.data(), got);
        received += take;
        owed -= std::min(owed, got);
        any_reply = true;
        last_progress = Clock::now();
        retransmit_wait = initial_wait;
      }
    }
    now = Clock::now();
    if (owed > 0 && now - last_progress >= retransmit_wait) {
      // Nothing came back for a while: the requests or their replies were lost, or
      // the server is short of entropy. Ask again for everything still owed.
      for (std::size_t left = owed; left > 0;) {
        const std::size_t n = std::min<std::size_t>(left, options.chunk);
        if (ask(n) < 0) return refused(errno);
        left -= n;
        ++resent;
      }
      last_progress = now;
      retransmit_wait = std::min(retransmit_wait * 2, kMaxRetransmitWait);
    }
  }
  return FinishOutput(options.hex) ? 0 : 1;
}

}  // namespace rngmux
