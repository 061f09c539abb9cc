#include "cli/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace rngmux {
namespace {

// Most reply bytes read: a status of many endpoints and clients fits many times over.
constexpr std::size_t kMaxReplyBytes = 16 << 20;

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

// Waits for `events` on fd until `deadline`; false on timeout.
bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return true;  // let the read or write report it
  }
}

}  // namespace

Result<nlohmann::ordered_json> ControlRequest(const std::string& path, const std::string& request,
                                              std::chrono::milliseconds timeout) {
  const std::string where = "the daemon at " + path;
  sockaddr_un address{};
  if (path.empty() || path.size() >= sizeof address.sun_path) {
    return Status::Error("control socket \"" + path + "\": path too long");
  }
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::FromErrno("socket", errno);
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof address.sun_path - 1);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int err = errno;
    return Status::Error("cannot reach " + where + ": connect: " + std::strerror(err) +
                         (err == ENOENT || err == ECONNREFUSED ? " (is rngmux serve running?)"
                          : err == EACCES ? " (only root and the daemon's user may use it)"
                                          : ""));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string line = request + "\n";
  std::size_t sent = 0;
  while (sent < line.size()) {
    if (!WaitFor(fd.get(), POLLOUT, deadline)) {
      return Status::Error("no answer from " + where + " within the timeout");
    }
    const ssize_t n = send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Status::Error(where +
                           " closed the connection without an answer (only root and "
                           "the daemon's user may use it): send: " +
                           std::strerror(errno));
    }
    sent += static_cast<std::size_t>(n);
  }
  std::string reply;
  char buffer[4096];
  while (true) {
    if (!WaitFor(fd.get(), POLLIN, deadline)) {
      return Status::Error("no answer from " + where + " within the timeout");
    }
    const ssize_t n = read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != ECONNRESET) return Status::FromErrno(where + ": read", errno);
    if (n <= 0) break;
    reply.append(buffer, static_cast<std::size_t>(n));
    if (reply.size() > kMaxReplyBytes) return Status::Error(where + ": answer too long");
  }
  if (reply.empty()) {
    return Status::Error(where +
                         " closed the connection without an answer (only root and the "
                         "daemon's user may use it)");
  }
  auto parsed = nlohmann::ordered_json::parse(reply, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Status::Error(where + ": the answer is not a JSON object");
  }
  return parsed;
}

}  // namespace rngmux
