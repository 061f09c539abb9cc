#include "server/server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <new>
#include <thread>

#include "common/event_loop.h"

namespace rngmux {
namespace {

// Review finding: an allocation failure in one handler ended the daemon.
TEST(ServerLoopTest, AHandlerThatRunsOutOfMemoryDoesNotEndTheLoop) {
  asio::io_context io;
  ServerCounters counters;
  bool later_handler_ran = false;
  asio::post(io, [] { throw std::bad_alloc(); });
  asio::post(io, [&] { later_handler_ran = true; });
  RunSurvivingHandlerFailures(io, counters.handler_failures);
  EXPECT_TRUE(later_handler_ran);
  EXPECT_EQ(counters.handler_failures, 1u);
}

std::vector<EndpointSpec> ListenSpecs(std::initializer_list<const char*> texts) {
  std::vector<EndpointSpec> out;
  for (const char* text : texts) {
    auto spec = ParseEndpointSpec(EndpointRole::kListen, text);
    EXPECT_TRUE(spec.ok()) << text;
    if (spec.ok()) out.push_back(*spec);
  }
  return out;
}

TEST(IdentifyEndpointsTest, AnyPortListenersMayRepeatAndAreNumbered) {
  auto endpoints = ListenSpecs({"tcp:127.0.0.1:0,qemu", "tcp:127.0.0.1:0,allow-user=root",
                                "udp:127.0.0.1:0", "tcp:127.0.0.1:0"});
  ASSERT_TRUE(IdentifyEndpoints(endpoints).ok());
  EXPECT_EQ(endpoints[0].id, "listen tcp:127.0.0.1:0");
  EXPECT_EQ(endpoints[1].id, "listen tcp:127.0.0.1:0 #2");
  EXPECT_EQ(endpoints[2].id, "listen udp:127.0.0.1:0");
  EXPECT_EQ(endpoints[3].id, "listen tcp:127.0.0.1:0 #3");
}

TEST(IdentifyEndpointsTest, AFixedAddressGivenTwiceIsAnError) {
  auto endpoints = ListenSpecs({"tcp:127.0.0.1:1024", "tcp:127.0.0.1:1024,qemu"});
  EXPECT_EQ(IdentifyEndpoints(endpoints).message(),
            "endpoint \"listen tcp:127.0.0.1:1024\" is given twice");
}

}  // namespace
}  // namespace rngmux

namespace rngmux {
namespace {

// Blocking EGD client on a unix socket, for the reload tests.
class UnixClient {
 public:
  explicit UnixClient(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    timeval timeout{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  }
  ~UnixClient() { close(fd_); }
  bool connected() const { return connected_; }
  // Asks for `n` (<= 255) bytes and reads the reply: the bytes received, 0 on EOF.
  std::size_t Read(std::size_t n) {
    const std::uint8_t request[2] = {0x02, static_cast<std::uint8_t>(n)};
    if (send(fd_, request, 2, MSG_NOSIGNAL) != 2) return 0;
    std::size_t got = 0;
    std::uint8_t buffer[256];
    while (got < n) {
      const ssize_t r = recv(fd_, buffer, n - got, 0);
      if (r <= 0) return got;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class ServerReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/rngmux-reload-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    if (thread_.joinable()) {
      kill(getpid(), SIGTERM);
      thread_.join();
    }
    std::filesystem::remove_all(dir_);
  }
  EndpointSpec Unix(const std::string& name, const std::string& options = "") {
    auto spec = ParseEndpointSpec(EndpointRole::kListen, "unix:" + dir_ + "/" + name + options);
    EXPECT_TRUE(spec.ok()) << spec.status().message();
    return *spec;
  }
  ServeConfig Config(std::vector<std::string> sources, std::vector<EndpointSpec> endpoints) {
    ServeConfig config;
    config.allow_test_source = true;
    config.sources = std::move(sources);
    config.endpoints = std::move(endpoints);
    config.pool_bytes = 4096;
    return config;
  }
  // Starts the server on its own thread; `next` is what each reload reads.
  void Start(ServeConfig config) {
    server_ = std::make_unique<Server>(std::move(config));
    server_->SetReloader([this]() -> Result<ServeConfig> {
      std::lock_guard<std::mutex> lock(mutex_);
      return next_;
    });
    ASSERT_TRUE(server_->Open().ok());
    thread_ = std::thread([this] { server_->Run(); });
  }
  void SetNext(Result<ServeConfig> next) {
    std::lock_guard<std::mutex> lock(mutex_);
    next_ = std::move(next);
  }
  // Waits (bounded) until a unix socket at `name` accepts a connection.
  bool WaitForSocket(const std::string& name) {
    for (int i = 0; i < 500; ++i) {
      if (UnixClient(dir_ + "/" + name).connected()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::string dir_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::mutex mutex_;
  Result<ServeConfig> next_ = Status::Error("no next configuration");
};

// The daemon's reload as the tests of the command line cannot see it from inside:
// the unchanged endpoint's client keeps its connection and is served from the kept
// source, the removed endpoint's client is closed, the added endpoint serves.
TEST_F(ServerReloadTest, KeepsUnchangedEndpointsAndTheirClients) {
  Start(Config({"test:1"}, {Unix("a.sock"), Unix("b.sock")}));
  ASSERT_TRUE(WaitForSocket("a.sock"));
  UnixClient on_a(dir_ + "/a.sock");
  UnixClient on_b(dir_ + "/b.sock");
  ASSERT_EQ(on_a.Read(255), 255u);
  ASSERT_EQ(on_b.Read(255), 255u);

  SetNext(Config({"test:1", "test:2"}, {Unix("a.sock", ",weight=3"), Unix("c.sock")}));
  kill(getpid(), SIGHUP);
  ASSERT_TRUE(WaitForSocket("c.sock")) << "the added endpoint does not listen";
  EXPECT_EQ(on_b.Read(255), 0u) << "the removed endpoint's client was not closed";
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/b.sock"));
  for (int i = 0; i < 64; ++i) ASSERT_EQ(on_a.Read(255), 255u) << "read " << i;
  UnixClient on_c(dir_ + "/c.sock");
  EXPECT_EQ(on_c.Read(255), 255u);

  // A configuration that does not validate changes nothing.
  SetNext(Status::Error("rngmux.toml:3: pool-size: expected an integer"));
  kill(getpid(), SIGHUP);
  for (int i = 0; i < 64; ++i) ASSERT_EQ(on_a.Read(255), 255u) << "read " << i;
  EXPECT_EQ(on_c.Read(255), 255u);
}

}  // namespace
}  // namespace rngmux
