#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/interrupt.h"
#include "sources/drivers.h"
#include "sources/source.h"

namespace rngmux {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Reads exactly `size` bytes from `fd` within `limit`; fewer on end of file or time-out.
std::vector<std::uint8_t> ReadUpTo(int fd, std::size_t size, std::chrono::milliseconds limit) {
  std::vector<std::uint8_t> bytes;
  const Clock::time_point deadline = Clock::now() + limit;
  while (bytes.size() < size && Clock::now() < deadline) {
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, 20) <= 0) continue;
    std::uint8_t buffer[4096];
    const ssize_t n = read(fd, buffer, std::min(sizeof buffer, size - bytes.size()));
    if (n <= 0) break;
    bytes.insert(bytes.end(), buffer, buffer + n);
  }
  return bytes;
}

void WriteAll(int fd, const std::vector<std::uint8_t>& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

// Bytes numbered from `first`: a stream in which a lost, repeated or reordered
// byte shows.
std::vector<std::uint8_t> Counting(std::size_t first, std::size_t size) {
  std::vector<std::uint8_t> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::uint8_t>((first + i) % 251);
  return bytes;
}

// A scripted EGD server on a unix socket: serves its connections one after the
// other on a thread of its own, connection number i by `serve(fd, i)`.
class FakeUpstream {
 public:
  using Serve = std::function<void(int fd, int connection)>;
  explicit FakeUpstream(Serve serve) : serve_(std::move(serve)) {
    char dir_template[] = "/tmp/egd-source-test-XXXXXX";
    dir_ = mkdtemp(dir_template);
    path_ = dir_ + "/upstream.sock";
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path_.copy(address.sun_path, sizeof address.sun_path - 1);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    EXPECT_EQ(listen(listen_fd_, 4), 0);
    thread_ = std::thread([this] {
      for (int i = 0;; ++i) {
        const int fd = accept(listen_fd_, nullptr, nullptr);
        if (fd < 0) return;
        serve_(fd, i);
        close(fd);
        ++served_;
      }
    });
  }
  ~FakeUpstream() {
    shutdown(listen_fd_, SHUT_RDWR);  // ends the blocked accept()
    thread_.join();
    close(listen_fd_);
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  std::string spec(const std::string& options = "") const { return "egd:unix:" + path_ + options; }
  std::string label() const { return "egd:unix:" + path_; }
  int served() const { return served_; }

 private:
  Serve serve_;
  std::string dir_;
  std::string path_;
  int listen_fd_ = -1;
  std::atomic<int> served_{0};
  std::thread thread_;
};

// Answers every "02 NN" request with the next NN counting bytes, until the client
// goes or `limit` bytes were served.
void AnswerRequests(int fd, std::size_t* next, std::size_t limit = SIZE_MAX) {
  while (*next < limit) {
    const std::vector<std::uint8_t> request = ReadUpTo(fd, 2, 2000ms);
    if (request.size() != 2 || request[0] != 0x02) return;
    const std::size_t size = std::min<std::size_t>(request[1], limit - *next);
    WriteAll(fd, Counting(*next, size));
    *next += size;
  }
}

std::unique_ptr<Source> Make(const std::string& spec) {
  Result<std::unique_ptr<Source>> source = CreateSource(spec, {});
  EXPECT_TRUE(source.ok()) << source.status().message();
  return source.ok() ? std::move(*source) : nullptr;
}

std::map<std::string, std::string> Stats(const Source& source) {
  std::map<std::string, std::string> stats;
  for (const auto& [key, value] : source.ExtraStats()) stats[key] = value;
  return stats;
}

// Fills `size` bytes; stops at the first error, which it returns in *error.
std::vector<std::uint8_t> ReadBytes(Source& source, std::size_t size, std::string* error,
                                    const Interrupt& stop) {
  std::vector<std::uint8_t> bytes(size);
  std::size_t filled = 0;
  while (filled < size) {
    Result<std::size_t> got = source.Read(std::span(bytes).subspan(filled), stop);
    if (!got.ok()) {
      *error = got.status().message();
      break;
    }
    if (*got == 0) break;
    filled += *got;
  }
  bytes.resize(filled);
  return bytes;
}

class EgdSourceTest : public ::testing::Test {
 protected:
  void SetUp() override { signal(SIGPIPE, SIG_IGN); }
  Interrupt stop_;
};

TEST_F(EgdSourceTest, KeepsRequestsOutstandingAndDeliversInOrder) {
  std::vector<std::uint8_t> first_requests;
  FakeUpstream upstream([&](int fd, int) {
    // All the pipelined requests arrive before any answer is sent.
    first_requests = ReadUpTo(fd, 8, 2000ms);
    std::size_t next = 0;
    for (int i = 0; i < 4; ++i) {
      WriteAll(fd, Counting(next, 255));
      next += 255;
    }
    AnswerRequests(fd, &next);
  });
  std::unique_ptr<Source> source = Make(upstream.spec(",requests=4,entropy=8"));
  ASSERT_TRUE(source);
  EXPECT_EQ(source->claimed_entropy_bits_per_byte(), 8.0);
  std::string error;
  const std::vector<std::uint8_t> bytes = ReadBytes(*source, 10000, &error, stop_);
  EXPECT_EQ(error, "");
  EXPECT_EQ(first_requests, (std::vector<std::uint8_t>{2, 255, 2, 255, 2, 255, 2, 255}));
  EXPECT_EQ(bytes, Counting(0, 10000));
  std::map<std::string, std::string> stats = Stats(*source);
  EXPECT_EQ(stats["upstream"], "unix:" + upstream.label().substr(9));
  EXPECT_EQ(stats["upstream_connected"], "yes");
  EXPECT_EQ(stats["upstream_reconnects"], "0");
  EXPECT_EQ(stats["upstream_bytes"], "10000");
}

TEST_F(EgdSourceTest, PartialRepliesAreJoined) {
  FakeUpstream upstream([](int fd, int) {
    std::size_t next = 0;
    for (int i = 0; i < 40; ++i) {
      const std::vector<std::uint8_t> request = ReadUpTo(fd, 2, 2000ms);
      if (request.size() != 2) return;
      // Each answer in pieces of 1 to 7 bytes, with pauses between some.
      std::size_t left = request[1];
      while (left > 0) {
        const std::size_t piece = std::min<std::size_t>(left, 1 + next % 7);
        WriteAll(fd, Counting(next, piece));
        next += piece;
        left -= piece;
        if (next % 5 == 0) std::this_thread::sleep_for(100us);
      }
    }
  });
  std::unique_ptr<Source> source = Make(upstream.spec(",requests=2"));
  ASSERT_TRUE(source);
  std::string error;
  const std::vector<std::uint8_t> bytes = ReadBytes(*source, 5000, &error, stop_);
  EXPECT_EQ(error, "");
  EXPECT_EQ(bytes, Counting(0, 5000));
}

TEST_F(EgdSourceTest, UpstreamCloseIsAnErrorNamingTheUpstream) {
  FakeUpstream upstream([](int fd, int) {
    std::size_t next = 0;
    AnswerRequests(fd, &next, 300);
  });
  std::unique_ptr<Source> source = Make(upstream.spec());
  ASSERT_TRUE(source);
  std::string error;
  const std::vector<std::uint8_t> bytes = ReadBytes(*source, 4096, &error, stop_);
  EXPECT_EQ(bytes, Counting(0, 300));
  EXPECT_EQ(error, upstream.label() + ": upstream closed the connection");
  EXPECT_EQ(Stats(*source)["upstream_connected"], "no");
}

TEST_F(EgdSourceTest, UnsolicitedBytesAreAProtocolError) {
  // Like a QEMU endpoint with lead bytes: it sends before being asked.
  FakeUpstream upstream([](int fd, int) {
    WriteAll(fd, Counting(0, 3000));
    ReadUpTo(fd, 1000, 1000ms);  // until the client hangs up
  });
  std::unique_ptr<Source> source = Make(upstream.spec(",requests=2"));
  ASSERT_TRUE(source);
  std::string error;
  // Let the unsolicited bytes arrive before the first read.
  std::this_thread::sleep_for(50ms);
  std::vector<std::uint8_t> out(4096, 0xAA);
  Result<std::size_t> got = Result<std::size_t>(std::size_t{0});
  std::size_t total = 0;
  for (int i = 0; i < 10; ++i) {
    got = source->Read(std::span(out).subspan(total), stop_);
    if (!got.ok()) break;
    total += *got;
  }
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(),
            upstream.label() +
                ": upstream sent bytes that were not requested (more than the 510 requested on "
                "this connection; not a strict EGD server?)");
  EXPECT_LE(total, 510u);
  // The read that went too far was wiped; nothing past the requested bytes is handed out.
  for (std::size_t i = total; i < out.size(); ++i) {
    ASSERT_TRUE(out[i] == 0 || out[i] == 0xAA) << i;
  }
}

TEST_F(EgdSourceTest, ReplyLongerThanRequestedIsAProtocolError) {
  FakeUpstream upstream([](int fd, int) {
    std::size_t next = 0;
    for (int i = 0; i < 20; ++i) {
      const std::vector<std::uint8_t> request = ReadUpTo(fd, 2, 2000ms);
      if (request.size() != 2) return;
      WriteAll(fd, Counting(next, request[1] + 1u));
      next += request[1] + 1u;
    }
  });
  std::unique_ptr<Source> source = Make(upstream.spec(",requests=1"));
  ASSERT_TRUE(source);
  std::string error;
  ReadBytes(*source, 4096, &error, stop_);
  EXPECT_NE(error.find("upstream sent bytes that were not requested"), std::string::npos) << error;
}

TEST_F(EgdSourceTest, StopEndsAWaitingReadPromptly) {
  FakeUpstream upstream([](int fd, int) { ReadUpTo(fd, 1 << 20, 3000ms); });
  std::unique_ptr<Source> source = Make(upstream.spec(",timeout=60"));
  ASSERT_TRUE(source);
  std::thread stopper([this] {
    std::this_thread::sleep_for(100ms);
    stop_.Trigger();
  });
  std::vector<std::uint8_t> out(64);
  const Clock::time_point start = Clock::now();
  Result<std::size_t> got = source->Read(out, stop_);
  const auto took = Clock::now() - start;
  stopper.join();
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(*got, 0u);
  EXPECT_LT(took, 1000ms);
}

TEST_F(EgdSourceTest, SilentUpstreamTimesOut) {
  FakeUpstream upstream([](int fd, int) { ReadUpTo(fd, 1 << 20, 3000ms); });
  std::unique_ptr<Source> source = Make(upstream.spec(",timeout=1"));
  ASSERT_TRUE(source);
  std::vector<std::uint8_t> out(64);
  const Clock::time_point start = Clock::now();
  Result<std::size_t> got = source->Read(out, stop_);
  const auto took = Clock::now() - start;
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(), upstream.label() + ": no data for 1 s");
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 2500ms);
}

TEST_F(EgdSourceTest, ReconnectsAfterAnErrorWithoutRepeatingBytes) {
  std::size_t next = 0;  // one numbering across both connections
  FakeUpstream upstream([&](int fd, int connection) {
    if (connection == 0) {
      AnswerRequests(fd, &next, 1000);
      return;  // hangs up
    }
    AnswerRequests(fd, &next);
  });
  std::unique_ptr<Source> source = Make(upstream.spec());
  ASSERT_TRUE(source);
  std::string error;
  std::vector<std::uint8_t> bytes = ReadBytes(*source, 4096, &error, stop_);
  EXPECT_EQ(error, upstream.label() + ": upstream closed the connection");
  // The next Read connects again.
  error.clear();
  const std::vector<std::uint8_t> more = ReadBytes(*source, 3000, &error, stop_);
  EXPECT_EQ(error, "");
  bytes.insert(bytes.end(), more.begin(), more.end());
  EXPECT_EQ(bytes, Counting(0, 4000));
  std::map<std::string, std::string> stats = Stats(*source);
  EXPECT_EQ(stats["upstream_reconnects"], "1");
  EXPECT_EQ(stats["upstream_connected"], "yes");
  EXPECT_EQ(stats["upstream_bytes"], "4000");
}

TEST_F(EgdSourceTest, ConnectionRefusedNamesTheUpstream) {
  // A port that was just free: bind, note it, close.
  const int probe = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  socklen_t length = sizeof address;
  getsockname(probe, reinterpret_cast<sockaddr*>(&address), &length);
  close(probe);
  const std::string upstream = "tcp:127.0.0.1:" + std::to_string(ntohs(address.sin_port));
  std::unique_ptr<Source> source = Make("egd:" + upstream);
  ASSERT_TRUE(source);
  std::vector<std::uint8_t> out(64);
  Result<std::size_t> got = source->Read(out, stop_);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(), "egd:" + upstream + ": connect: Connection refused");
  EXPECT_EQ(Stats(*source)["upstream_connected"], "no");
}

TEST_F(EgdSourceTest, MissingUnixSocketNamesTheUpstream) {
  std::unique_ptr<Source> source = Make("egd:unix:/nonexistent/egd.sock");
  ASSERT_TRUE(source);
  std::vector<std::uint8_t> out(64);
  Result<std::size_t> got = source->Read(out, stop_);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(),
            "egd:unix:/nonexistent/egd.sock: connect: No such file or directory");
}

TEST_F(EgdSourceTest, TlsToAPlainServerFailsTheHandshake) {
  // A plain EGD server reads the ClientHello as a command it does not know and hangs up.
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  socklen_t length = sizeof address;
  getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  std::thread server([listener] {
    const int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    ReadUpTo(fd, 1, 2000ms);
    close(fd);
  });
  const std::string upstream = "tcp:127.0.0.1:" + std::to_string(ntohs(address.sin_port));
  std::unique_ptr<Source> source = Make("egd:" + upstream + ",tls,tls-verify=off");
  ASSERT_TRUE(source);
  EXPECT_EQ(Stats(*source)["upstream_tls"], "yes");
  std::vector<std::uint8_t> out(64);
  Result<std::size_t> got = source->Read(out, stop_);
  server.join();
  close(listener);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message().rfind("egd:" + upstream + ": TLS handshake: ", 0), 0u)
      << got.status().message();
}

TEST(EgdSourceSpecTest, UpstreamGrammar) {
  Result<EgdUpstream> tcp = ParseEgdUpstream("tcp:10.0.0.1:7000");
  ASSERT_TRUE(tcp.ok());
  EXPECT_FALSE(tcp->unix_socket);
  EXPECT_EQ(tcp->host, "10.0.0.1");
  EXPECT_EQ(tcp->port, 7000);
  Result<EgdUpstream> v6 = ParseEgdUpstream("tcp:[::1]:7000");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  Result<EgdUpstream> unix_socket = ParseEgdUpstream("unix:/run/rngmux/egd.sock");
  ASSERT_TRUE(unix_socket.ok());
  EXPECT_TRUE(unix_socket->unix_socket);
  EXPECT_EQ(unix_socket->path, "/run/rngmux/egd.sock");
}

}  // namespace
}  // namespace rngmux
