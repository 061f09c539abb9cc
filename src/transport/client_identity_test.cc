#include "transport/client_identity.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace rngmux {
namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

TEST(ClientIdentityTest, UnixPeerIsItsCredentials) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  Fd a{pair[0]};
  Fd b{pair[1]};
  const ClientIdentity identity = IdentifyStreamPeer(a.fd, /*unix_socket=*/true);
  EXPECT_EQ(identity.uid, getuid());
  EXPECT_EQ(identity.gid, getgid());
  EXPECT_EQ(identity.pid, getpid());
  EXPECT_EQ(identity.Key(), "uid:" + std::to_string(getuid()));
  EXPECT_NE(identity.Describe().find("pid=" + std::to_string(getpid())), std::string::npos);
}

TEST(ClientIdentityTest, LoopbackTcpPeerIsTheUidOwningItsSocket) {
  Fd listener{socket(AF_INET, SOCK_STREAM, 0)};
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener.fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(listener.fd, 1), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(getsockname(listener.fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  Fd client{socket(AF_INET, SOCK_STREAM, 0)};
  ASSERT_EQ(connect(client.fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  Fd accepted{accept(listener.fd, nullptr, nullptr)};
  ASSERT_GE(accepted.fd, 0);
  const ClientIdentity identity = IdentifyStreamPeer(accepted.fd, /*unix_socket=*/false);
  EXPECT_EQ(identity.address, "127.0.0.1");
  ASSERT_TRUE(identity.ip.has_value());
  ASSERT_TRUE(identity.uid.has_value()) << "NETLINK_SOCK_DIAG gave no uid";
  EXPECT_EQ(*identity.uid, getuid());
  EXPECT_EQ(identity.Key(), "uid:" + std::to_string(getuid()));
}

TEST(ClientIdentityTest, KeysRankCertificateThenUidThenAddress) {
  ClientIdentity identity;
  identity.address = "10.0.0.5";
  EXPECT_EQ(identity.Key(), "addr:10.0.0.5");
  identity.uid = 1000;
  EXPECT_EQ(identity.Key(), "uid:1000");
  identity.subject = "CN=vm1";
  EXPECT_EQ(identity.Key(), "cert:CN=vm1");
}

TEST(ClientIdentityTest, LoopbackAddresses) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackAddress("127.3.2.1"));
  EXPECT_TRUE(IsLoopbackAddress("::1"));
  EXPECT_TRUE(IsLoopbackAddress("::ffff:127.0.0.1"));
  EXPECT_FALSE(IsLoopbackAddress("10.0.0.1"));
  EXPECT_FALSE(IsLoopbackAddress(""));
}

TEST(UserFilterTest, AdmitsListedUsersAndGroupMembers) {
  UserFilter filter;
  ClientIdentity root;
  root.uid = 0;
  root.gid = 0;
  ClientIdentity nobody;
  nobody.uid = 65534;
  nobody.gid = 65534;
  ClientIdentity unknown;
  EXPECT_TRUE(filter.Admits(unknown)) << "empty lists admit everyone";
  filter.users = {0};
  EXPECT_TRUE(filter.Admits(root));
  EXPECT_FALSE(filter.Admits(nobody));
  EXPECT_FALSE(filter.Admits(unknown)) << "a client whose uid is unknown is not a listed user";
  filter.users.clear();
  filter.groups = {65534};
  EXPECT_TRUE(filter.Admits(nobody));
  EXPECT_FALSE(filter.Admits(root));
  EXPECT_EQ(filter.ToString(), "allow-group=65534");
}

TEST(UserFilterTest, ResolvesNamesAndNumbers) {
  EXPECT_EQ(ResolveUser("root"), std::optional<uid_t>(0));
  EXPECT_EQ(ResolveUser("1234"), std::optional<uid_t>(1234));
  EXPECT_EQ(ResolveUser("no-such-user-rngmux"), std::nullopt);
  EXPECT_EQ(ResolveGroup("root"), std::optional<gid_t>(0));
  EXPECT_EQ(ResolveGroup("no-such-group-rngmux"), std::nullopt);
}

}  // namespace
}  // namespace rngmux
