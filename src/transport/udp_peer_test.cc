#include "transport/udp_peer.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "protocol/egd_datagram.h"
#include "support/fake_clock.h"
#include "transport/udp_endpoint.h"

namespace rngmux {
namespace {

using Bytes = std::vector<std::uint8_t>;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Records datagrams; can be told to report a full socket or a failure.
class FakeSink final : public DatagramSink {
 public:
  SendResult Send(const PeerAddress& to, std::span<const std::uint8_t> datagram,
                  std::string* error) override {
    if (fail) {
      *error = "Network is unreachable";
      return SendResult::kFailed;
    }
    if (full) return SendResult::kWouldBlock;
    EXPECT_TRUE(to == expected_to);
    sent.emplace_back(datagram.begin(), datagram.end());
    return SendResult::kSent;
  }
  void WaitWritable(std::shared_ptr<UdpPeer> peer) override { waiting.push_back(peer); }

  std::size_t TotalBytes() const {
    std::size_t n = 0;
    for (const Bytes& d : sent) n += d.size();
    return n;
  }
  Bytes Joined() const {
    Bytes out;
    for (const Bytes& d : sent) out.insert(out.end(), d.begin(), d.end());
    return out;
  }

  PeerAddress expected_to;
  std::vector<Bytes> sent;
  std::vector<std::shared_ptr<UdpPeer>> waiting;
  bool full = false;
  bool fail = false;
};

PeerAddress Loopback(std::uint16_t port) {
  PeerAddress address;
  auto* in = reinterpret_cast<sockaddr_in*>(&address.storage);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.length = sizeof(sockaddr_in);
  return address;
}

class UdpPeerTest : public ::testing::Test {
 protected:
  UdpPeerTest() : pool_(1 << 16), fair_share_(pool_) {
    context_ = std::make_unique<SessionContext>(SessionContext{
        pool_, fair_share_, counters_,
        [this] { asio::post(io_, [this] { EgdSession::PumpAndFlush(*context_); }); }, 64});
    sink_.expected_to = Loopback(5000);
  }

  void TearDown() override {
    if (peer_) peer_->Close("test over");
    io_.poll();
  }

  void StartPeer(std::uint64_t rate = 1 << 20, std::uint64_t burst = 1 << 16,
                 std::size_t lead = 0) {
    SessionOptions options;
    options.lead_bytes = lead;
    UdpOptions limits;
    limits.rate_bytes_per_second = rate;
    limits.burst_bytes = burst;
    peer_ = std::make_shared<UdpPeer>(sink_, *context_, options, Loopback(5000), "127.0.0.1:5000",
                                      limits, clock_, io_.get_executor());
    peer_->Start([this] { closed_callback_ran_ = true; }, clock_.Now());
    Run();
  }

  // Bytes 0, 1, 2, ... (mod 251), continuing the sequence.
  void FillPool(std::size_t n) {
    Bytes bytes(n);
    for (auto& b : bytes) b = static_cast<std::uint8_t>(next_value_++ % 251);
    Interrupt stop;
    ASSERT_EQ(pool_.Put(bytes, stop), n);
  }

  UdpPeer::Verdict Datagram(const Bytes& payload) {
    problem_.clear();
    const UdpPeer::Verdict verdict = peer_->OnDatagram(payload, clock_.Now(), &problem_);
    Run();
    return verdict;
  }

  void Run() {
    EgdSession::PumpAndFlush(*context_);
    io_.poll();
    io_.restart();
  }

  asio::io_context io_;
  FakeClock clock_;
  EntropyPool pool_;
  FairShare fair_share_;
  ServerCounters counters_;
  std::unique_ptr<SessionContext> context_;
  FakeSink sink_;
  std::shared_ptr<UdpPeer> peer_;
  std::string problem_;
  unsigned next_value_ = 0;
  bool closed_callback_ran_ = false;
};

Bytes Sequence(unsigned first, std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>((first + i) % 251);
  return out;
}

TEST_F(UdpPeerTest, QemuRequestGetsExactlyWhatItAsked) {
  FillPool(1000);
  StartPeer();
  EXPECT_EQ(Datagram({0x02, 0x40}), UdpPeer::Verdict::kAnswered);
  ASSERT_EQ(sink_.sent.size(), 1u);
  EXPECT_EQ(sink_.sent[0], Sequence(0, 64));
  EXPECT_EQ(counters_.served_bytes, 64u);
  EXPECT_EQ(counters_.udp_datagrams_sent, 1u);
  EXPECT_EQ(counters_.clients, 1u);
  EXPECT_EQ(counters_.connections_total, 1u);
}

TEST_F(UdpPeerTest, RepliesNeverExceedOneDatagramOrWhatWasAsked) {
  FillPool(20000);
  StartPeer();
  Bytes many;
  for (int i = 0; i < 16; ++i) many.insert(many.end(), {0x02, 0xff});
  many.insert(many.end(), {0x02, 0x10});  // 4096 bytes in all
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(Datagram(many), UdpPeer::Verdict::kAnswered);
  }
  EXPECT_EQ(sink_.TotalBytes(), 3u * 4096);
  for (const Bytes& d : sink_.sent) EXPECT_LE(d.size(), kMaxEgdDatagramBytes);
  EXPECT_EQ(sink_.Joined(), Sequence(0, 3 * 4096));
}

TEST_F(UdpPeerTest, EveryCommandWithinItsDefinedSize) {
  FillPool(100);
  StartPeer();
  // 00 | 01 10 | 04 | 03 00 08 02 a b | 02 05
  EXPECT_EQ(Datagram({0x00, 0x01, 0x10, 0x04, 0x03, 0x00, 0x08, 0x02, 'a', 'b', 0x02, 0x05}),
            UdpPeer::Verdict::kAnswered);
  const Bytes got = sink_.Joined();
  const std::string pid = std::to_string(getpid());
  ASSERT_EQ(got.size(), 4 + 17 + 1 + pid.size() + 5);
  EXPECT_EQ(Bytes(got.begin(), got.begin() + 4), (Bytes{0, 0, 3, 0x20}));  // 100 bytes * 8 bits
  EXPECT_EQ(got[4], 16);
  EXPECT_EQ(Bytes(got.begin() + 5, got.begin() + 21), Sequence(0, 16));
  EXPECT_EQ(got[21], pid.size());
  EXPECT_EQ(std::string(got.begin() + 22, got.begin() + 22 + static_cast<long>(pid.size())), pid);
  EXPECT_EQ(Bytes(got.end() - 5, got.end()), Sequence(16, 5));
  EXPECT_EQ(counters_.entropy_offered_bytes, 2u);
}

TEST_F(UdpPeerTest, PartialReplyStaysBehindUntilComplete) {
  StartPeer();
  Datagram({0x02, 0x40, 0x02, 0x40});
  FillPool(100);
  Run();
  // The first reply is complete and leaves; 36 bytes of the second wait.
  ASSERT_EQ(sink_.sent.size(), 1u);
  EXPECT_EQ(sink_.sent[0], Sequence(0, 64));
  FillPool(28);
  Run();
  ASSERT_EQ(sink_.sent.size(), 2u);
  EXPECT_EQ(sink_.sent[1], Sequence(64, 64));
}

TEST_F(UdpPeerTest, ForgettingThePeerWipesAndCountsWhatItHeld) {
  StartPeer();
  Datagram({0x02, 0xff});
  FillPool(100);
  Run();
  EXPECT_TRUE(sink_.sent.empty());
  peer_->CloseQuietly("silent for 60 s");
  EXPECT_EQ(counters_.wiped_undelivered_bytes, 100u);
  EXPECT_EQ(counters_.clients, 0u);
  EXPECT_EQ(fair_share_.active_count(), 0u);
  Run();
  EXPECT_TRUE(closed_callback_ran_);
  EXPECT_EQ(Datagram({0x02, 0x01}), UdpPeer::Verdict::kIgnored);
}

TEST_F(UdpPeerTest, MalformedDatagramsCloseThePeerAndAnswerNothing) {
  FillPool(1000);
  for (const Bytes& bad : {Bytes{0x02, 0x40, 0x16}, Bytes{0x02}, Bytes(4097, 0x00)}) {
    StartPeer();
    EXPECT_EQ(Datagram(bad), UdpPeer::Verdict::kMalformed);
    EXPECT_TRUE(peer_->closed());
    EXPECT_TRUE(sink_.sent.empty());
  }
  EXPECT_EQ(problem_, "datagram longer than 4096 bytes");
  EXPECT_EQ(counters_.bad_requests, 3u);
  EXPECT_EQ(counters_.clients, 0u);
}

// What a reload hands to the endpoint's new settings: the queued requests not
// answered yet (one being filled included), paid for already, then the datagrams
// waiting for the rate limit, in order.
TEST_F(UdpPeerTest, UnansweredRequestsAreHandedOverInOrderAnsweredOnesAreNot) {
  StartPeer(/*rate=*/100, /*burst=*/4096);
  Bytes first;
  for (int i = 0; i < 16; ++i) first.insert(first.end(), {0x02, 0xFF});
  first.insert(first.end(), {0x02, 0x10});  // 16 x 255 + 16: exactly one datagram's worth
  ASSERT_EQ(Datagram(first), UdpPeer::Verdict::kAnswered);
  ASSERT_EQ(Datagram({0x02, 0x20}), UdpPeer::Verdict::kDelayed);  // the bucket is empty
  ASSERT_EQ(Datagram({0x00}), UdpPeer::Verdict::kDelayed);
  FillPool(300);  // the first 02 FF answered; 45 bytes towards the second
  Run();
  ASSERT_EQ(sink_.TotalBytes(), 255u);

  const UdpPeer::Unanswered stock = peer_->TakeStock();
  ASSERT_EQ(stock.paid.size(), 16u);
  for (std::size_t i = 0; i < 15; ++i) {
    EXPECT_EQ(stock.paid[i].command, EgdCommand::kReadBlocking);
    EXPECT_EQ(stock.paid[i].count, 255);
  }
  EXPECT_EQ(stock.paid[15].count, 16);
  ASSERT_EQ(stock.delayed.size(), 2u);
  ASSERT_EQ(stock.delayed[0].requests.size(), 1u);
  EXPECT_EQ(stock.delayed[0].requests[0].count, 32);
  EXPECT_EQ(stock.delayed[0].reply_bytes, 32u);
  EXPECT_TRUE(stock.delayed[0].ok());
  ASSERT_EQ(stock.delayed[1].requests.size(), 1u);
  EXPECT_EQ(stock.delayed[1].requests[0].command, EgdCommand::kEntropyAvailable);
  EXPECT_EQ(stock.delayed[1].reply_bytes, 4u);
}

// Requests handed over were paid for and counted by the peer they came from: the
// peer that takes them answers them with an empty bucket, counts them as its own,
// and adds nothing to the daemon's count.
TEST_F(UdpPeerTest, HandedOverRequestsAreNeitherChargedNorCountedAgain) {
  StartPeer(/*rate=*/1, /*burst=*/4096);
  Bytes drain;
  for (int i = 0; i < 16; ++i) drain.insert(drain.end(), {0x02, 0xFF});
  ASSERT_EQ(Datagram(drain), UdpPeer::Verdict::kAnswered);  // the bucket: 16 left
  FillPool(16 * 255);
  Run();
  ASSERT_EQ(sink_.TotalBytes(), 16u * 255);
  const std::uint64_t requests = counters_.requests;
  peer_->QueuePaid({EgdRequest{EgdCommand::kReadBlocking, 0x40}});
  FillPool(0x40);
  Run();
  EXPECT_EQ(sink_.TotalBytes(), 16u * 255 + 0x40) << "a paid request waited for the bucket";
  EXPECT_EQ(counters_.requests, requests);
  EXPECT_EQ(peer_->requests(), 17u);
  EXPECT_EQ(Datagram({0x02, 0x20}), UdpPeer::Verdict::kDelayed);  // the bucket is still dry
}

TEST_F(UdpPeerTest, AskingMoreThanOneDatagramHoldsIsMalformed) {
  FillPool(10000);
  StartPeer();
  Bytes many;
  for (int i = 0; i < 17; ++i) many.insert(many.end(), {0x02, 0xff});
  EXPECT_EQ(Datagram(many), UdpPeer::Verdict::kMalformed);
  EXPECT_EQ(problem_, "datagram asks for 4335 reply bytes (at most 4096)");
  EXPECT_TRUE(sink_.sent.empty());
  EXPECT_EQ(pool_.Available(), 10000u);
}

TEST_F(UdpPeerTest, EmptyDatagramIsIgnored) {
  StartPeer();
  EXPECT_EQ(Datagram({}), UdpPeer::Verdict::kIgnored);
  EXPECT_FALSE(peer_->closed());
}

TEST_F(UdpPeerTest, OverTheRateDatagramsWaitInOrderThenAreDropped) {
  FillPool(60000);
  StartPeer(/*rate=*/1000, /*burst=*/4096);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(Datagram({0x02, 0xff}), UdpPeer::Verdict::kAnswered);
  EXPECT_EQ(sink_.TotalBytes(), 4080u);  // 16 tokens left
  // Over the rate: they wait, in order, up to one burst's worth.
  EXPECT_EQ(Datagram({0x02, 0x20}), UdpPeer::Verdict::kDelayed);
  EXPECT_EQ(Datagram({0x02, 0x01}), UdpPeer::Verdict::kDelayed);  // affordable, but behind
  for (int i = 0; i < 15; ++i) EXPECT_EQ(Datagram({0x02, 0xff}), UdpPeer::Verdict::kDelayed);
  EXPECT_EQ(Datagram({0x02, 0xf0}), UdpPeer::Verdict::kRateLimited);  // 3858 + 240 > 4096
  EXPECT_EQ(Datagram({0x02, 0xee}), UdpPeer::Verdict::kDelayed);      // exactly 4096 waiting
  EXPECT_EQ(Datagram({0x00}), UdpPeer::Verdict::kRateLimited);
  EXPECT_EQ(peer_->delayed_datagrams(), 18u);
  EXPECT_EQ(sink_.TotalBytes(), 4080u);
  EXPECT_FALSE(peer_->closed());

  clock_.Advance(milliseconds(16));  // 16 + 16 = 32 tokens: the first one
  peer_->ResumeDelayed(clock_.Now());
  Run();
  EXPECT_EQ(sink_.TotalBytes(), 4080u + 32);
  clock_.Advance(milliseconds(1));
  peer_->ResumeDelayed(clock_.Now());
  Run();
  EXPECT_EQ(sink_.TotalBytes(), 4080u + 33);
  clock_.Advance(seconds(10));
  peer_->ResumeDelayed(clock_.Now());
  Run();
  // Only a burst's worth at once, the rest later: never more than rate * T + burst.
  EXPECT_EQ(sink_.TotalBytes(), 4080u + 33 + 15 * 255 + 238);
  EXPECT_EQ(peer_->delayed_datagrams(), 0u);
  EXPECT_LE(sink_.TotalBytes(), 1000u * 10 + 4096);
  EXPECT_EQ(sink_.Joined(), Sequence(0, sink_.TotalBytes()));
}

TEST_F(UdpPeerTest, DelayedDatagramsAreQueuedByTheTimer) {
  FillPool(60000);
  StartPeer(/*rate=*/100000, /*burst=*/4096);
  Bytes all;
  for (int i = 0; i < 16; ++i) all.insert(all.end(), {0x02, 0xff});
  EXPECT_EQ(Datagram(all), UdpPeer::Verdict::kAnswered);
  EXPECT_EQ(Datagram({0x02, 0x40}), UdpPeer::Verdict::kDelayed);
  // The timer fires after the tokens are due (0.5 ms of real time) and reads the clock.
  clock_.Advance(seconds(1));
  for (int i = 0; i < 1000 && sink_.TotalBytes() < 4080 + 64; ++i) {
    io_.run_for(milliseconds(1));
    Run();
  }
  EXPECT_EQ(sink_.TotalBytes(), 4080u + 64);
}

TEST_F(UdpPeerTest, ClosingDropsDelayedDatagrams) {
  FillPool(10000);
  StartPeer(/*rate=*/1000, /*burst=*/4096);
  Bytes all;
  for (int i = 0; i < 16; ++i) all.insert(all.end(), {0x02, 0xff});
  Datagram(all);
  EXPECT_EQ(Datagram({0x02, 0x40}), UdpPeer::Verdict::kDelayed);
  peer_->CloseQuietly("silent for 60 s");
  clock_.Advance(seconds(10));
  peer_->ResumeDelayed(clock_.Now());
  Run();
  EXPECT_EQ(sink_.TotalBytes(), 4080u);
  EXPECT_EQ(counters_.served_bytes, 4080u);
}

TEST_F(UdpPeerTest, LeadIsPushedAtStartAndChargedToTheBucket) {
  FillPool(10000);
  StartPeer(/*rate=*/1000, /*burst=*/4096, /*lead=*/512);
  EXPECT_EQ(sink_.TotalBytes(), 512u);
  EXPECT_EQ(sink_.Joined(), Sequence(0, 512));
  // Requests top the lead up, once a quarter of it (128 bytes) has been asked for...
  EXPECT_EQ(Datagram({0x02, 0x80}), UdpPeer::Verdict::kAnswered);
  EXPECT_EQ(sink_.TotalBytes(), 640u);
  // ...and the primer was paid for: 4096 - 512 - 128 tokens remain.
  Bytes ask;
  for (int i = 0; i < 14; ++i) ask.insert(ask.end(), {0x02, 0xff});  // 3570: 114 too many
  EXPECT_EQ(Datagram(ask), UdpPeer::Verdict::kDelayed);
  EXPECT_EQ(sink_.TotalBytes(), 640u);
}

TEST_F(UdpPeerTest, FullSocketHoldsRepliesUntilWritable) {
  FillPool(1000);
  StartPeer();
  sink_.full = true;
  Datagram({0x02, 0x40});
  EXPECT_TRUE(sink_.sent.empty());
  ASSERT_EQ(sink_.waiting.size(), 1u);
  Datagram({0x02, 0x40});
  EXPECT_EQ(sink_.waiting.size(), 1u);  // asks once
  sink_.full = false;
  sink_.waiting.front()->OnWritable();
  ASSERT_EQ(sink_.sent.size(), 1u);  // both replies in one datagram
  EXPECT_EQ(sink_.sent[0], Sequence(0, 128));
}

TEST_F(UdpPeerTest, SendFailureForgetsThePeerAndCountsTheBytes) {
  FillPool(1000);
  StartPeer();
  sink_.fail = true;
  Datagram({0x02, 0x40});
  EXPECT_TRUE(peer_->closed());
  EXPECT_EQ(counters_.wiped_undelivered_bytes, 64u);
  EXPECT_EQ(counters_.clients, 0u);
}

TEST_F(UdpPeerTest, PeerAddressEqualityHashAndText) {
  const PeerAddress a = Loopback(5000);
  EXPECT_TRUE(a == Loopback(5000));
  EXPECT_FALSE(a == Loopback(5001));
  EXPECT_EQ(PeerAddressHash{}(a), PeerAddressHash{}(Loopback(5000)));
  EXPECT_EQ(a.ToString(), "127.0.0.1:5000");
  PeerAddress v6;
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&v6.storage);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(7);
  inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6->sin6_addr);
  v6.length = sizeof(sockaddr_in6);
  EXPECT_EQ(v6.ToString(), "[::ffff:127.0.0.1]:7");
  EXPECT_FALSE(v6 == a);
  // The allow list sees the IPv4 address a dual-stack socket reports as mapped.
  EXPECT_EQ(v6.ip().ToString(), "127.0.0.1");
  EXPECT_TRUE(AddressFilter::Loopback().Allows(v6.ip()));
}

TEST_F(UdpPeerTest, EveryDatagramHoldsWholeReplies) {
  StartPeer();
  // 16 x 02 FF wait for entropy; 15 x 01 FF wait behind them (strict order).
  Bytes blocking;
  for (int i = 0; i < 16; ++i) blocking.insert(blocking.end(), {0x02, 0xff});
  Bytes nonblocking;
  for (int i = 0; i < 15; ++i) nonblocking.insert(nonblocking.end(), {0x01, 0xff});
  EXPECT_EQ(Datagram(blocking), UdpPeer::Verdict::kAnswered);
  EXPECT_EQ(Datagram(nonblocking), UdpPeer::Verdict::kAnswered);
  FillPool(20000);
  for (int i = 0; i < 20; ++i) Run();
  // Replies: 16 of 255 bytes, then 15 of 1 + 255; a datagram may end only between two.
  std::vector<std::size_t> ends;
  std::size_t at = 0;
  for (int i = 0; i < 16; ++i) ends.push_back(at += 255);
  for (int i = 0; i < 15; ++i) ends.push_back(at += 256);
  ASSERT_EQ(sink_.TotalBytes(), at);
  std::size_t offset = 0;
  for (const Bytes& d : sink_.sent) {
    EXPECT_LE(d.size(), kMaxEgdDatagramBytes);
    offset += d.size();
    EXPECT_NE(std::find(ends.begin(), ends.end(), offset), ends.end())
        << "a datagram ends " << offset << " bytes in, inside a reply";
  }
  const Bytes got = sink_.Joined();
  EXPECT_EQ(Bytes(got.begin(), got.begin() + 4080), Sequence(0, 4080));
  for (int i = 0; i < 15; ++i) {
    const std::size_t start = 4080 + 256 * static_cast<std::size_t>(i);
    EXPECT_EQ(got[start], 0xff);
    EXPECT_EQ(Bytes(got.begin() + static_cast<long>(start) + 1,
                    got.begin() + static_cast<long>(start) + 256),
              Sequence(4080 + 255 * static_cast<unsigned>(i), 255));
  }
}

TEST_F(UdpPeerTest, KeptBucketIsNotRefilled) {
  FillPool(10000);
  SessionOptions options;
  UdpOptions limits;
  limits.rate_bytes_per_second = 1000;
  limits.burst_bytes = 4096;
  TokenBucket drained(1000, 4096, clock_.Now());
  ASSERT_TRUE(drained.TryTake(4000, clock_.Now()));
  peer_ = std::make_shared<UdpPeer>(sink_, *context_, options, Loopback(5000), "127.0.0.1:5000",
                                    limits, clock_, io_.get_executor(), drained);
  peer_->Start([] {}, clock_.Now());
  EXPECT_EQ(Datagram({0x02, 0x60}), UdpPeer::Verdict::kAnswered);  // 96 tokens left
  EXPECT_EQ(Datagram({0x02, 0x01}), UdpPeer::Verdict::kDelayed);
  EXPECT_EQ(sink_.TotalBytes(), 96u);
}

TEST_F(UdpPeerTest, LeadWaitsUntilAKeptBucketCanPayForIt) {
  FillPool(10000);
  SessionOptions options;
  options.lead_bytes = 512;
  UdpOptions limits;
  limits.rate_bytes_per_second = 1'000'000;
  limits.burst_bytes = 4096;
  TokenBucket drained(limits.rate_bytes_per_second, 4096, clock_.Now());
  ASSERT_TRUE(drained.TryTake(4096, clock_.Now()));
  peer_ = std::make_shared<UdpPeer>(sink_, *context_, options, Loopback(5000), "127.0.0.1:5000",
                                    limits, clock_, io_.get_executor(), drained);
  peer_->Start([] {}, clock_.Now());
  Run();
  EXPECT_EQ(sink_.TotalBytes(), 0u);
  // 512 tokens take 0.512 ms; the timer then reads the (advanced) clock.
  clock_.Advance(milliseconds(1));
  for (int i = 0; i < 1000 && sink_.TotalBytes() < 512; ++i) {
    io_.run_for(milliseconds(1));
    Run();
  }
  EXPECT_EQ(sink_.TotalBytes(), 512u);
  EXPECT_EQ(sink_.Joined(), Sequence(0, 512));
}

// A receiving socket on 127.0.0.1, standing in for one UDP client.
class Receiver {
 public:
  Receiver() : fd_(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
    address_.length = sizeof address_.storage;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address_.storage), &address_.length);
  }
  ~Receiver() { close(fd_); }
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  const PeerAddress& address() const { return address_; }
  // Every datagram waiting now, joined.
  Bytes Drain() {
    Bytes out;
    std::uint8_t buffer[65536];
    for (;;) {
      const ssize_t n = recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n < 0) return out;
      out.insert(out.end(), buffer, buffer + n);
    }
  }

 private:
  int fd_;
  PeerAddress address_;
};

PeerAddress Ipv4(const char* ip, std::uint16_t port) {
  PeerAddress address = Loopback(port);
  inet_pton(AF_INET, ip, &reinterpret_cast<sockaddr_in*>(&address.storage)->sin_addr);
  return address;
}

// A listening UdpEndpoint on a real loopback socket, fed datagrams directly with a
// fake clock (its socket only sends).
class UdpEndpointTest : public ::testing::Test {
 protected:
  UdpEndpointTest() : pool_(1 << 20), fair_share_(pool_) {
    context_ = std::make_unique<SessionContext>(SessionContext{
        pool_, fair_share_, counters_,
        [this] { asio::post(io_, [this] { EgdSession::PumpAndFlush(*context_); }); }, 64});
  }

  void Open(const std::string& text) {
    auto spec = ParseEndpointSpec(EndpointRole::kListen, text);
    ASSERT_TRUE(spec.ok()) << spec.status().message();
    auto endpoint = UdpEndpoint::Open(io_, *spec, *context_, clock_);
    ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
    endpoint_ = std::move(*endpoint);
  }

  void FillPool(std::size_t n) {
    Bytes bytes(n);
    for (auto& b : bytes) b = static_cast<std::uint8_t>(next_value_++ % 251);
    Interrupt stop;
    ASSERT_EQ(pool_.Put(bytes, stop), n);
  }

  void Send(const PeerAddress& from, const Bytes& payload) {
    endpoint_->OnDatagram(from, payload, clock_.Now());
    Run();
  }

  void Run() {
    for (int i = 0; i < 4; ++i) {
      EgdSession::PumpAndFlush(*context_);
      io_.poll();
      io_.restart();
    }
  }

  std::size_t Peers() const {
    std::vector<const EgdSession*> peers;
    endpoint_->AppendPeers(&peers);
    return peers.size();
  }

  void TearDown() override {
    if (endpoint_) endpoint_->Stop();
    io_.poll();
  }

  asio::io_context io_;
  FakeClock clock_;
  EntropyPool pool_;
  FairShare fair_share_;
  ServerCounters counters_;
  std::unique_ptr<SessionContext> context_;
  std::unique_ptr<UdpEndpoint> endpoint_;
  unsigned next_value_ = 0;
};

TEST_F(UdpEndpointTest, BadDatagramDoesNotResetTheRateLimit) {
  Open("udp:127.0.0.1:0,rate=4096,burst=4096");
  FillPool(1 << 19);
  Receiver client;
  Bytes got;
  // 16 x 02 FF, then one bad byte (the peer is forgotten), 50 times over, with no
  // time passing: rate x 0 + burst = 4096 bytes at most.
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 16; ++i) Send(client.address(), {0x02, 0xff});
    Send(client.address(), {0x16});
    const Bytes more = client.Drain();
    got.insert(got.end(), more.begin(), more.end());
  }
  EXPECT_LE(got.size(), 4096u);
  EXPECT_EQ(got.size(), 16u * 255);  // the first burst, then nothing
  EXPECT_EQ(counters_.bad_requests, 50u);
  // Once the bucket has refilled the peer is served again, with what it may have.
  clock_.Advance(seconds(1));
  Send(client.address(), {0x02, 0x40});
  EXPECT_EQ(client.Drain().size(), 64u);
}

TEST_F(UdpEndpointTest, KeptStatesExpireOnceTheirBucketIsFull) {
  Open("udp:127.0.0.1:0,rate=4096,burst=4096");
  FillPool(10000);
  Receiver client;
  Send(client.address(), {0x02, 0xff});
  Send(client.address(), {0x16});
  EXPECT_EQ(Peers(), 0u);
  EXPECT_EQ(endpoint_->address_states(), 1u);
  clock_.Advance(milliseconds(500));
  endpoint_->Sweep();
  EXPECT_EQ(endpoint_->address_states(), 1u);  // bucket not full yet, line just logged
  clock_.Advance(seconds(10));
  endpoint_->Sweep();
  EXPECT_EQ(endpoint_->address_states(), 0u);
}

TEST_F(UdpEndpointTest, EmptyAndBadDatagramsFromUnknownSendersAreNotRemembered) {
  Open("udp:127.0.0.1:0,peers=64");
  FillPool(10000);
  for (std::uint16_t port = 1000; port < 1200; ++port) Send(Loopback(port), {});
  for (int host = 2; host < 200; ++host) {
    Send(Ipv4(("127.0.0." + std::to_string(host)).c_str(), 7000), {});
  }
  EXPECT_EQ(Peers(), 0u);
  for (std::uint16_t port = 2000; port < 2100; ++port) Send(Loopback(port), {0x16});
  EXPECT_EQ(Peers(), 0u);
  EXPECT_EQ(counters_.bad_requests, 100u);
  EXPECT_EQ(counters_.udp_peer_limit_datagrams, 0u);
  // A real client still gets in, and is served.
  Receiver client;
  Send(client.address(), {0x02, 0x40});
  EXPECT_EQ(Peers(), 1u);
  EXPECT_EQ(client.Drain(), Sequence(0, 64));
}

TEST_F(UdpEndpointTest, PeersPerAddressAreCapped) {
  Open("udp:127.0.0.1:0,peers=128");
  EXPECT_EQ(endpoint_->MaxPeersPerIp(), 32u);
  for (std::uint16_t port = 1000; port < 1100; ++port) Send(Loopback(port), {0x00});
  EXPECT_EQ(Peers(), 32u);
  EXPECT_EQ(counters_.udp_peer_limit_datagrams, 68u);
  // Another address still gets in.
  Send(Ipv4("127.0.0.2", 1000), {0x00});
  EXPECT_EQ(Peers(), 33u);
  // A forgotten peer frees its place.
  clock_.Advance(seconds(61));
  endpoint_->Sweep();
  Run();
  EXPECT_EQ(Peers(), 0u);
  Send(Loopback(1099), {0x00});
  EXPECT_EQ(Peers(), 1u);
}

TEST_F(UdpEndpointTest, BadDatagramForgetsOnlyItsPeerAndLogsOncePerInterval) {
  Open("udp:127.0.0.1:0");
  FillPool(10000);
  Receiver good;
  Receiver bad;
  Send(good.address(), {0x02, 0x10});
  Send(bad.address(), {0x02, 0x10});
  EXPECT_EQ(Peers(), 2u);
  EXPECT_EQ(good.Drain(), Sequence(0, 16));
  EXPECT_EQ(bad.Drain(), Sequence(16, 16));
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 5; ++i) {
    Send(bad.address(), {0x02, 0x10});
    Send(bad.address(), {0x16});
  }
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(Peers(), 1u);
  EXPECT_EQ(counters_.bad_requests, 5u);
  const std::string line = "client " + UdpIdentity(bad.address()) + ": closing: unknown EGD";
  ASSERT_NE(log.find(line), std::string::npos) << log;
  EXPECT_EQ(log.find(line, log.find(line) + 1), std::string::npos) << log;
  // The other peer never noticed.
  Send(good.address(), {0x02, 0x10});
  EXPECT_EQ(good.Drain().size(), 16u);
  // Ten seconds on, the same address is logged again.
  clock_.Advance(seconds(10));
  ::testing::internal::CaptureStderr();
  Send(bad.address(), {0x16});
  EXPECT_NE(::testing::internal::GetCapturedStderr().find(line), std::string::npos);
}

}  // namespace
}  // namespace rngmux
