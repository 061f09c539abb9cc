#include "common/systemd_protocol.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace rngmux {
namespace {

constexpr const char* kVariables[] = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                                      "LISTEN_PID",    "LISTEN_FDS",    "LISTEN_FDNAMES"};

// Each test starts with none of the variables set and leaves them as it found them (the
// unit tests may run in one process, and under a service manager that sets them).
class SystemdProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kVariables) {
      const char* value = std::getenv(name);
      saved_.emplace_back(name,
                          value != nullptr ? std::optional<std::string>(value) : std::nullopt);
      unsetenv(name);
    }
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value) {
        setenv(name.c_str(), value->c_str(), 1);
      } else {
        unsetenv(name.c_str());
      }
    }
  }
  static std::string Pid() { return std::to_string(getpid()); }
  // A pid that is not this process's.
  static std::string OtherPid() { return std::to_string(getpid() + 1); }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// A datagram socket standing in for the service manager's: bound to `name` (a path, or
// an abstract name when it starts with '@').
int BoundDatagramSocket(const std::string& name) {
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, name.data(), name.size());
  if (name[0] == '@') address.sun_path[0] = '\0';
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), length), 0) << std::strerror(errno);
  return fd;
}

std::string Receive(int fd) {
  char buffer[512];
  const ssize_t n = recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
  return n < 0 ? std::string("(nothing: ") + std::strerror(errno) + ")"
               : std::string(buffer, static_cast<std::size_t>(n));
}

TEST_F(SystemdProtocolTest, NotifySendsOneDatagramToAPathOrAnAbstractSocket) {
  char dir[] = "/tmp/rngmux-notify-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/notify";
  const int by_path = BoundDatagramSocket(path);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  Result<bool> sent = SystemdNotify("READY=1\nSTATUS=serving");
  ASSERT_TRUE(sent.ok()) << sent.status().message();
  EXPECT_TRUE(*sent);
  EXPECT_EQ(Receive(by_path), "READY=1\nSTATUS=serving");
  close(by_path);
  unlink(path.c_str());
  rmdir(dir);

  const std::string abstract =
      "@rngmux-notify-test-" + Pid() + "-" + std::to_string(std::random_device{}());
  const int by_name = BoundDatagramSocket(abstract);
  setenv("NOTIFY_SOCKET", abstract.c_str(), 1);
  sent = SystemdNotify("WATCHDOG=1");
  ASSERT_TRUE(sent.ok()) << sent.status().message();
  EXPECT_EQ(Receive(by_name), "WATCHDOG=1");
  close(by_name);
}

TEST_F(SystemdProtocolTest, NotifyWithoutASocketSendsNothingAndABadOneIsAnError) {
  unsetenv("NOTIFY_SOCKET");
  Result<bool> sent = SystemdNotify("READY=1");
  ASSERT_TRUE(sent.ok());
  EXPECT_FALSE(*sent);
  setenv("NOTIFY_SOCKET", "relative/path", 1);
  sent = SystemdNotify("READY=1");
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.status().message(),
            "NOTIFY_SOCKET=relative/path: not an absolute path or an abstract socket (@name)");
  setenv("NOTIFY_SOCKET", "/nonexistent/rngmux/notify", 1);
  sent = SystemdNotify("READY=1");
  ASSERT_FALSE(sent.ok());
  EXPECT_NE(sent.status().message().find("No such file or directory"), std::string::npos)
      << sent.status().message();
}

TEST_F(SystemdProtocolTest, WatchdogIntervalOnlyForThisProcess) {
  EXPECT_FALSE(SystemdWatchdogInterval().has_value());
  setenv("WATCHDOG_USEC", "3000000", 1);
  ASSERT_TRUE(SystemdWatchdogInterval().has_value());
  EXPECT_EQ(SystemdWatchdogInterval()->count(), 3000000);
  setenv("WATCHDOG_PID", Pid().c_str(), 1);
  EXPECT_TRUE(SystemdWatchdogInterval().has_value());
  setenv("WATCHDOG_PID", OtherPid().c_str(), 1);  // meant for another process
  EXPECT_FALSE(SystemdWatchdogInterval().has_value());
  unsetenv("WATCHDOG_PID");
  for (const char* bad : {"0", "", "3s", "-5", "99999999999999999999"}) {
    setenv("WATCHDOG_USEC", bad, 1);
    EXPECT_FALSE(SystemdWatchdogInterval().has_value()) << bad;
  }
}

TEST_F(SystemdProtocolTest, ListenFdsNamesEachPassedDescriptorAndUnsetsTheVariables) {
  setenv("LISTEN_PID", Pid().c_str(), 1);
  setenv("LISTEN_FDS", "3", 1);
  setenv("LISTEN_FDNAMES", "egd-tcp:egd-unix", 1);  // one name short: the third is unnamed
  auto passed = SystemdListenFds();
  ASSERT_TRUE(passed.ok()) << passed.status().message();
  ASSERT_EQ(passed->size(), 3u);
  EXPECT_EQ((*passed)[0], (std::pair<int, std::string>{3, "egd-tcp"}));
  EXPECT_EQ((*passed)[1], (std::pair<int, std::string>{4, "egd-unix"}));
  EXPECT_EQ((*passed)[2], (std::pair<int, std::string>{5, ""}));
  // No child (the QNG worker) sees them, and a second look finds nothing.
  EXPECT_EQ(std::getenv("LISTEN_PID"), nullptr);
  EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr);
  EXPECT_EQ(std::getenv("LISTEN_FDNAMES"), nullptr);
  passed = SystemdListenFds();
  ASSERT_TRUE(passed.ok());
  EXPECT_TRUE(passed->empty());
}

TEST_F(SystemdProtocolTest, ListenFdsForAnotherProcessOrMalformedAreNotTaken) {
  setenv("LISTEN_PID", OtherPid().c_str(), 1);  // passed to another process, inherited
  setenv("LISTEN_FDS", "2", 1);
  auto passed = SystemdListenFds();
  ASSERT_TRUE(passed.ok());
  EXPECT_TRUE(passed->empty());
  EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr);

  setenv("LISTEN_PID", Pid().c_str(), 1);
  setenv("LISTEN_FDS", "two", 1);
  passed = SystemdListenFds();
  ASSERT_FALSE(passed.ok());
  EXPECT_EQ(passed.status().message(), "socket activation: LISTEN_FDS=two is not a count");
}

}  // namespace
}  // namespace rngmux
