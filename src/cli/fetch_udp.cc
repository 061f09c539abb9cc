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

#include "cli/egd_client.h"
#include "cli/output.h"
#include "common/secure_memory.h"
#include "protocol/egd_parser.h"

namespace rngmux {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kMaxRetransmitWait{8000};

int Fail(const std::string& message) {
  std::fprintf(stderr, "rngmux: error: %s\n", message.c_str());
  return 1;
}

std::chrono::milliseconds Seconds(double seconds) {
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
}

}  // namespace

int RunUdpFetch(const EndpointSpec& spec, const UdpFetchOptions& options) {
  const std::string name = spec.Address();
  auto connected = ConnectDatagram(spec);
  if (!connected.ok()) return Fail(connected.status().message());
  const UniqueFd fd = std::move(connected).value();

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
    const auto request = ReadRequest(static_cast<std::uint8_t>(n));
    if (send(fd.get(), request.data(), request.size(), MSG_DONTWAIT | MSG_NOSIGNAL) == 2) {
      return 1;
    }
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
