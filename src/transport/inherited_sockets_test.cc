#include "transport/inherited_sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace rngmux {
namespace {

// A socket bound to 127.0.0.1 on a free port, listening if a stream socket and asked to.
int LoopbackSocket(int type, std::uint16_t* port, bool listening = true) {
  const int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t length = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  *port = ntohs(addr.sin_port);
  if (type == SOCK_STREAM && listening) {
    EXPECT_EQ(listen(fd, 4), 0);
  }
  return fd;
}

EndpointSpec Listen(const std::string& text) {
  Result<EndpointSpec> spec = ParseEndpointSpec(EndpointRole::kListen, text);
  EXPECT_TRUE(spec.ok()) << spec.status().message();
  return spec.ok() ? *spec : EndpointSpec{};
}

class InheritedSocketsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/inherited-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
  }
  void TearDown() override {
    unlink((dir_ + "/egd.sock").c_str());
    rmdir(dir_.c_str());
  }
  int UnixListener(const std::string& path) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(listen(fd, 4), 0);
    return fd;
  }
  std::string dir_;
};

TEST_F(InheritedSocketsTest, MatchesByNameThenByAddressAndType) {
  std::uint16_t tcp_port = 0;
  std::uint16_t udp_port = 0;
  const int tcp = LoopbackSocket(SOCK_STREAM, &tcp_port);
  const int udp = LoopbackSocket(SOCK_DGRAM, &udp_port);
  const std::string path = dir_ + "/egd.sock";
  const int unix_fd = UnixListener(path);
  auto inherited =
      InheritedSockets::FromDescriptors({{tcp, "egd-tcp"}, {udp, ""}, {unix_fd, "egd-unix"}});
  ASSERT_TRUE(inherited.ok()) << inherited.status().message();
  ASSERT_EQ(inherited->sockets().size(), 3u);
  const std::string tcp_address = "tcp:127.0.0.1:" + std::to_string(tcp_port);
  EXPECT_EQ(inherited->sockets()[0].address, tcp_address);
  EXPECT_EQ(inherited->sockets()[1].address, "udp:127.0.0.1:" + std::to_string(udp_port));
  EXPECT_EQ(inherited->sockets()[2].address, "unix:" + path);
  EXPECT_EQ(inherited->sockets()[0].Describe(), "\"egd-tcp\" (" + tcp_address + ")");

  // by address (and type: a tcp endpoint on the udp socket's port is not it)
  auto by_address = inherited->Find(Listen(tcp_address + ",qemu"));
  ASSERT_TRUE(by_address.ok());
  EXPECT_EQ(*by_address, &inherited->sockets()[0]);
  auto udp_found = inherited->Find(Listen("udp:127.0.0.1:" + std::to_string(udp_port)));
  ASSERT_TRUE(udp_found.ok());
  EXPECT_EQ(*udp_found, &inherited->sockets()[1]);
  auto wrong_type = inherited->Find(Listen("tcp:127.0.0.1:" + std::to_string(udp_port)));
  ASSERT_TRUE(wrong_type.ok());
  EXPECT_EQ(*wrong_type, nullptr);
  auto vhost = inherited->Find(Listen("vhost-user:" + path));
  ASSERT_TRUE(vhost.ok());
  EXPECT_EQ(*vhost, &inherited->sockets()[2]);
  // by name
  auto named = inherited->Find(Listen("unix:" + path + ",name=egd-unix"));
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(*named, &inherited->sockets()[2]);
  // a name nobody passed: bind its own
  auto unknown = inherited->Find(Listen("unix:" + dir_ + "/other.sock,name=other"));
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(*unknown, nullptr);
  // a name passed for another address is an error that says both
  auto mismatch = inherited->Find(Listen("tcp:127.0.0.1:1,name=egd-tcp"));
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.status().message(),
            "listen \"tcp:127.0.0.1:1,name=egd-tcp\": the socket named "
            "\"egd-tcp\" is " +
                tcp_address + ", not tcp:127.0.0.1:1");
  // connect endpoints and any-port listeners never adopt
  auto connect = ParseEndpointSpec(EndpointRole::kConnect, tcp_address);
  ASSERT_TRUE(connect.ok());
  auto connect_found = inherited->Find(*connect);
  ASSERT_TRUE(connect_found.ok());
  EXPECT_EQ(*connect_found, nullptr);

  const auto unclaimed = inherited->Unclaimed({Listen(tcp_address)});
  ASSERT_EQ(unclaimed.size(), 2u);
  EXPECT_EQ(unclaimed[0], &inherited->sockets()[1]);
  EXPECT_EQ(unclaimed[1], &inherited->sockets()[2]);

  // a duplicate is non-blocking and close-on-exec, and the original stays open
  const int copy = DuplicateForEndpoint(inherited->sockets()[0]);
  ASSERT_GE(copy, 0);
  EXPECT_NE(fcntl(copy, F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(fcntl(copy, F_GETFD) & FD_CLOEXEC, 0);
  close(copy);
  EXPECT_EQ(fcntl(tcp, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
}

TEST_F(InheritedSocketsTest, RefusesWhatIsNotAListeningSocket) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  close(pipe_fds[1]);
  auto not_socket = InheritedSockets::FromDescriptors({{pipe_fds[0], "p"}});
  ASSERT_FALSE(not_socket.ok());
  EXPECT_EQ(not_socket.status().message().rfind(
                "passed socket " + std::to_string(pipe_fds[0]) + " \"p\" is not a socket (", 0),
            0u)
      << not_socket.status().message();
  EXPECT_EQ(fcntl(pipe_fds[0], F_GETFD), -1);  // closed: it was handed over

  std::uint16_t port = 0;
  const int unlistened = LoopbackSocket(SOCK_STREAM, &port, false);
  auto accepted = InheritedSockets::FromDescriptors({{unlistened, ""}});
  ASSERT_FALSE(accepted.ok());
  EXPECT_EQ(accepted.status().message(),
            "passed socket " + std::to_string(unlistened) +
                " (tcp:127.0.0.1:" + std::to_string(port) +
                ") is not listening: rngmux needs Accept=no in the socket unit");
}

TEST_F(InheritedSocketsTest, NothingPassedIsEmpty) {
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_PID");
  auto inherited = InheritedSockets::FromEnvironment();
  ASSERT_TRUE(inherited.ok());
  EXPECT_TRUE(inherited->empty());
}

}  // namespace
}  // namespace rngmux
