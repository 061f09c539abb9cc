#include "common/systemd_protocol.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace rngmux {
namespace {

// A decimal number that is the whole of `text`, or nullopt.
std::optional<std::uint64_t> ParseDecimal(const char* text) {
  if (text == nullptr || *text == '\0') return std::nullopt;
  const char* end = text + std::strlen(text);
  std::uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

bool IsThisProcess(const char* pid_text) {
  const std::optional<std::uint64_t> pid = ParseDecimal(pid_text);
  return pid && *pid == static_cast<std::uint64_t>(getpid());
}

}  // namespace

Result<bool> SystemdNotify(std::string_view message) {
  const char* socket_name = std::getenv("NOTIFY_SOCKET");
  if (socket_name == nullptr || *socket_name == '\0') return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::size_t length = std::strlen(socket_name);
  if ((socket_name[0] != '/' && socket_name[0] != '@') || length >= sizeof(address.sun_path)) {
    return Status::Error("NOTIFY_SOCKET=" + std::string(socket_name) +
                         ": not an absolute path or an abstract socket (@name)");
  }
  std::memcpy(address.sun_path, socket_name, length);
  if (socket_name[0] == '@') address.sun_path[0] = '\0';
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("notify socket", errno);
  iovec data{const_cast<char*>(message.data()), message.size()};
  msghdr header{};
  header.msg_name = &address;
  header.msg_namelen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
  header.msg_iov = &data;
  header.msg_iovlen = 1;
  const ssize_t sent = sendmsg(fd, &header, MSG_NOSIGNAL);
  const int error = errno;
  close(fd);
  if (sent < 0)
    return Status::FromErrno("send to NOTIFY_SOCKET=" + std::string(socket_name), error);
  return true;
}

std::optional<std::chrono::microseconds> SystemdWatchdogInterval() {
  const char* pid = std::getenv("WATCHDOG_PID");
  if (pid != nullptr && !IsThisProcess(pid)) return std::nullopt;
  const std::optional<std::uint64_t> usec = ParseDecimal(std::getenv("WATCHDOG_USEC"));
  if (!usec || *usec == 0 || *usec > std::uint64_t{1} << 62) return std::nullopt;
  return std::chrono::microseconds(*usec);
}

Result<std::vector<std::pair<int, std::string>>> SystemdListenFds() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds_text = std::getenv("LISTEN_FDS");
  const char* names_text = std::getenv("LISTEN_FDNAMES");
  const bool ours = pid != nullptr && IsThisProcess(pid);
  const std::string count_text = fds_text != nullptr ? fds_text : "";
  const std::string names = names_text != nullptr ? names_text : "";
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  std::vector<std::pair<int, std::string>> passed;
  if (!ours || count_text.empty()) return passed;
  const std::optional<std::uint64_t> count = ParseDecimal(count_text.c_str());
  if (!count || *count > 4096) {
    return Status::Error("socket activation: LISTEN_FDS=" + count_text + " is not a count");
  }
  std::size_t begin = 0;
  for (std::uint64_t i = 0; i < *count; ++i) {
    std::string name;
    if (begin <= names.size()) {
      const std::size_t end = std::min(names.find(':', begin), names.size());
      name = names.substr(begin, end - begin);
      begin = end + 1;
    }
    passed.emplace_back(kSystemdListenFdsStart + static_cast<int>(i), std::move(name));
  }
  return passed;
}

}  // namespace rngmux
