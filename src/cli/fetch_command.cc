#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/egd_client.h"
#include "cli/fetch_udp.h"
#include "cli/output.h"
#include "common/secure_memory.h"
#include "endpoint/endpoint_spec.h"
#include "protocol/egd_parser.h"

namespace rngmux {
namespace {

struct FetchFlags {
  std::string endpoint;
  std::size_t count = 0;
  bool hex = false;
  unsigned chunk = kMaxEgdRequestBytes;
  unsigned depth = 16;
  double timeout_seconds = 30;
  double retransmit_seconds = 0.5;
};

// Keeps up to `depth` requests of `chunk` bytes in flight and streams the
// replies to stdout as they arrive. Bytes beyond `count` that a server with a
// lead pushes unasked are left unread.
int RunFetch(const FetchFlags& flags) {
  auto spec = ParseEndpointSpec(EndpointRole::kConnect, flags.endpoint);
  if (!spec.ok()) return ReportUsageError(spec.status().message());
  if (spec->transport == TransportKind::kUdp) {
    UdpFetchOptions options;
    options.count = flags.count;
    options.hex = flags.hex;
    options.chunk = flags.chunk;
    options.depth = flags.depth;
    options.timeout_seconds = flags.timeout_seconds;
    options.retransmit_seconds = flags.retransmit_seconds;
    return RunUdpFetch(*spec, options);
  }
  auto connected = ConnectStream(*spec);
  if (!connected.ok()) {
    std::fprintf(stderr, "rngmux: error: %s\n", connected.status().message().c_str());
    return 1;
  }
  const int fd = connected->get();
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(flags.timeout_seconds));
  std::vector<std::uint8_t> requests;
  std::size_t requests_sent = 0;  // bytes of `requests` already written
  std::size_t requested = 0;      // random bytes asked for so far
  std::size_t received = 0;
  SecureBuffer buffer(64 * 1024);
  const std::size_t window = std::size_t{flags.depth} * flags.chunk;

  while (received < flags.count) {
    // A server with a lead sends bytes before they are asked for, so `received`
    // may run ahead of `requested`: then nothing is outstanding.
    while (requested < flags.count && (requested > received ? requested - received : 0) < window) {
      const auto n =
          static_cast<std::uint8_t>(std::min<std::size_t>(flags.chunk, flags.count - requested));
      AppendReadRequests(requests, 1, n);
      requested += n;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      std::fprintf(stderr, "rngmux: error: %s: timed out after %g s with %zu of %zu bytes\n",
                   spec->Address().c_str(), flags.timeout_seconds, received, flags.count);
      return 1;
    }
    pollfd pfd{fd, static_cast<short>(POLLIN | (requests_sent < requests.size() ? POLLOUT : 0)), 0};
    const int rc = poll(&pfd, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (rc < 0 && errno != EINTR) {
      std::fprintf(stderr, "rngmux: error: poll: %s\n", std::strerror(errno));
      return 1;
    }
    if (rc <= 0) continue;
    if ((pfd.revents & POLLOUT) && requests_sent < requests.size()) {
      const ssize_t n =
          send(fd, requests.data() + requests_sent, requests.size() - requests_sent, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        std::fprintf(stderr, "rngmux: error: %s: send: %s\n", spec->Address().c_str(),
                     std::strerror(errno));
        return 1;
      }
      if (n > 0) requests_sent += static_cast<std::size_t>(n);
      if (requests_sent == requests.size()) {
        requests.clear();
        requests_sent = 0;
      }
    }
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
      const std::size_t want = std::min(buffer.size(), flags.count - received);
      const ssize_t n = recv(fd, buffer.data(), want, 0);
      if (n == 0) {
        std::fprintf(stderr, "rngmux: error: %s: connection closed after %zu of %zu bytes\n",
                     spec->Address().c_str(), received, flags.count);
        return 1;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        std::fprintf(stderr, "rngmux: error: %s: recv: %s\n", spec->Address().c_str(),
                     std::strerror(errno));
        return 1;
      }
      if (n > 0) {
        const auto got = static_cast<std::size_t>(n);
        received += got;
        if (!WriteOutput(std::span<const std::uint8_t>(buffer.data(), got), flags.hex)) {
          return 1;
        }
        SecureWipe(buffer.data(), got);
      }
    }
  }
  return FinishOutput(flags.hex) ? 0 : 1;
}

}  // namespace

Command AddFetchCommand(CLI::App& root) {
  auto flags = std::make_shared<FetchFlags>();
  CLI::App* app = root.add_subcommand(
      "fetch", "EGD client: fetch N bytes from an endpoint with pipelined 02 NN requests.");
  app->add_option("endpoint", flags->endpoint,
                  "tcp:HOST:PORT, tcp:[IPV6]:PORT, unix:PATH or udp:HOST:PORT[,local=ADDR:PORT]")
      ->required();
  app->add_option("-n,--bytes", flags->count, "Number of bytes")
      ->required()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 40));
  app->add_flag("--hex", flags->hex, "Print lowercase hex and a newline instead of raw bytes");
  app->add_option("--chunk", flags->chunk, "Bytes per request (1-255)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 255u));
  app->add_option("--depth", flags->depth, "Requests kept in flight (1-65536)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 65536u));
  app->add_option("--timeout", flags->timeout_seconds, "Give up after this many seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--retransmit", flags->retransmit_seconds,
                  "udp: ask again for what is still owed after this many seconds without a "
                  "reply (doubling each time, up to 8 s)")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 60.0));
  return Command{app, [flags] { return RunFetch(*flags); }};
}

}  // namespace rngmux
