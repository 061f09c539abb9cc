#include "server/udp_peer.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "protocol/egd_datagram.h"
#include "support/fake_clock.h"

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
    context_ = std::make_unique<SessionContext>(
        SessionContext{pool_, fair_share_, counters_,
                       [this] { asio::post(io_, [this] { fair_share_.Pump(); }); }, 64});
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
    fair_share_.Pump();
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

}  // namespace
}  // namespace rngmux
