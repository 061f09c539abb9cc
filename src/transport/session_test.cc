#include "transport/session.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/local/connect_pair.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <new>
#include <vector>

#include "transport/write_loops.h"

namespace rngmux {
namespace {

using Bytes = std::vector<std::uint8_t>;

// One session on one end of a socketpair; the test plays the client on the
// other end with plain non-blocking syscalls. The parameter is the number of write
// loops (0: the session writes on the test's loop, as by default).
class SessionTest : public ::testing::TestWithParam<std::size_t> {
 protected:
  SessionTest() : pool_(8192), fair_share_(pool_) {
    // As in the server: new bytes in the pool schedule a pump on the loop.
    pool_.SetDataReadyCallback([this] { asio::post(io_, [this] { Pump(); }); });
  }

  void TearDown() override {
    if (client_fd_ >= 0) close(client_fd_);
    if (session_) session_->Close("test over");
    // A write away on a write loop comes back before the session can go.
    for (int i = 0; i < 1000 && session_ && session_->writing(); ++i) {
      io_.run_for(std::chrono::milliseconds(1));
    }
    io_.poll();
  }

  // As the server pumps: the sessions given bytes are flushed once the pump is over.
  void Pump() {
    if (context_) {
      EgdSession::PumpAndFlush(*context_);
    } else {
      fair_share_.Pump();
    }
  }

  // `send_buffer`: the session's socket's send buffer, if not the default.
  void StartSession(SessionOptions options, std::size_t max_queued = 64, int send_buffer = 0) {
    context_ = std::make_unique<SessionContext>(
        SessionContext{pool_, fair_share_, counters_,
                       [this] { asio::post(io_, [this] { Pump(); }); }, max_queued});
    if (GetParam() > 0) {
      write_loops_ = std::make_unique<WriteLoops>(GetParam(), counters_.handler_failures,
                                                  counters_.write_thread_sent_bytes);
      context_->write_loops = write_loops_.get();
    }
    asio::local::stream_protocol::socket server_end(io_), client_end(io_);
    asio::local::connect_pair(server_end, client_end);
    if (send_buffer > 0) {
      ASSERT_EQ(setsockopt(server_end.native_handle(), SOL_SOCKET, SO_SNDBUF, &send_buffer,
                           sizeof send_buffer),
                0);
    }
    client_fd_ = client_end.release();
    fcntl(client_fd_, F_SETFL, O_NONBLOCK);
    Session::Socket socket(io_);
    socket.assign(asio::generic::stream_protocol(AF_UNIX, 0), server_end.release());
    session_ = std::make_shared<Session>(std::move(socket), *context_, options, "test-peer");
    session_->Start([this] { closed_callback_ran_ = true; });
  }

  // A session owing 31 x 255 bytes to a client that reads nothing yet, through a socket
  // with the smallest send buffer (about 4.5 kB): its write is stuck.
  void StartWithAReplyStuck() {
    FillPool(8000);
    StartSession({}, 64, 1);
    Bytes requests;
    for (int i = 0; i < 31; ++i) requests.insert(requests.end(), {0x02, 0xff});
    Send(requests);
    for (int i = 0; i < 20; ++i) io_.run_for(std::chrono::milliseconds(1));
    ASSERT_TRUE(session_->writing());
  }

  // Puts bytes 0, 1, 2, ... (mod 251) into the pool, continuing the sequence.
  void FillPool(std::size_t n) {
    Bytes bytes(n);
    for (auto& b : bytes) b = static_cast<std::uint8_t>(next_value_++ % 251);
    Interrupt stop;
    ASSERT_EQ(pool_.Put(bytes, stop), n);
  }

  void Send(const Bytes& bytes) {
    ASSERT_EQ(write(client_fd_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

  // Runs the loop until `n` bytes arrived (or a bounded time passed).
  Bytes Receive(std::size_t n) {
    Bytes out;
    for (int i = 0; i < 2000 && out.size() < n; ++i) {
      io_.run_for(std::chrono::milliseconds(1));
      std::uint8_t buffer[4096];
      const ssize_t got = read(client_fd_, buffer, std::min(sizeof buffer, n - out.size()));
      if (got > 0) out.insert(out.end(), buffer, buffer + got);
    }
    return out;
  }

  // True if nothing more arrives while the loop runs for a while.
  bool NothingMoreArrives() {
    for (int i = 0; i < 50; ++i) io_.run_for(std::chrono::milliseconds(1));
    std::uint8_t b;
    return read(client_fd_, &b, 1) < 0 && errno == EAGAIN;
  }

  bool PeerClosed() {
    for (int i = 0; i < 500; ++i) {
      io_.run_for(std::chrono::milliseconds(1));
      std::uint8_t b[256];
      const ssize_t got = read(client_fd_, b, sizeof b);
      if (got == 0) {
        // The close may have posted more work (the closed callback): run it too.
        io_.poll();
        return true;
      }
    }
    return false;
  }

  asio::io_context io_;
  // As in the server: the loop keeps running when no operation is pending.
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  EntropyPool pool_;
  FairShare fair_share_;
  ServerCounters counters_;
  // Gone before io_, which its answers go to, and counters_, which it counts in.
  std::unique_ptr<WriteLoops> write_loops_;
  std::unique_ptr<SessionContext> context_;
  std::shared_ptr<Session> session_;
  int client_fd_ = -1;
  unsigned next_value_ = 0;
  bool closed_callback_ran_ = false;
};

Bytes Sequence(unsigned first, std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>((first + i) % 251);
  return out;
}

TEST_P(SessionTest, AnswersEveryCommandInOrder) {
  FillPool(1000);
  StartSession({});
  // 00 | 01 10 | 02 20 | 04 | 03 00 08 03 a b c | 02 00 | 02 05
  Send({0x00, 0x01, 0x10, 0x02, 0x20, 0x04, 0x03, 0x00, 0x08, 0x03, 'a', 'b', 'c', 0x02, 0x00, 0x02,
        0x05});
  const std::string pid = std::to_string(getpid());
  const std::size_t expected = 4 + 1 + 16 + 32 + 1 + pid.size() + 5;
  const Bytes got = Receive(expected);
  ASSERT_EQ(got.size(), expected);
  const std::uint32_t bits =
      (std::uint32_t{got[0]} << 24) | (got[1] << 16) | (got[2] << 8) | got[3];
  EXPECT_EQ(bits, 1000u * 8);
  EXPECT_EQ(got[4], 16);
  EXPECT_EQ(Bytes(got.begin() + 5, got.begin() + 21), Sequence(0, 16));
  EXPECT_EQ(Bytes(got.begin() + 21, got.begin() + 53), Sequence(16, 32));
  EXPECT_EQ(got[53], pid.size());
  EXPECT_EQ(std::string(got.begin() + 54, got.begin() + 54 + pid.size()), pid);
  EXPECT_EQ(Bytes(got.end() - 5, got.end()), Sequence(48, 5));
  EXPECT_TRUE(NothingMoreArrives());
  EXPECT_EQ(counters_.entropy_offered_bytes, 3u);
  EXPECT_EQ(counters_.served_bytes, 16u + 32 + 5);
  EXPECT_EQ(pool_.Available(), 1000u - 53);
  // With write loops every reply left on one of them.
  if (write_loops_) {
    EXPECT_EQ(write_loops_->sent(), expected);
  }
}

TEST_P(SessionTest, EntropyAvailableCountsClaimedBitsNotBytes) {
  FillPool(1000);
  StartSession({});
  context_->entropy_bits_per_byte = 4;
  Send({0x00});
  const Bytes got = Receive(4);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ((got[0] << 24) | (got[1] << 16) | (got[2] << 8) | got[3], 4000);
}

TEST_P(SessionTest, HalfClosedPeerStillGetsEverythingItAsked) {
  StartSession({});
  Send({0x02, 0x20, 0x04, 0x02, 0x10});
  ASSERT_EQ(shutdown(client_fd_, SHUT_WR), 0);
  for (int i = 0; i < 20; ++i) io_.run_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(session_->closed());  // still owes 48 bytes and a PID
  FillPool(48);
  const std::string pid = std::to_string(getpid());
  const Bytes got = Receive(32 + 1 + pid.size() + 16);
  ASSERT_EQ(got.size(), 32 + 1 + pid.size() + 16);
  EXPECT_EQ(Bytes(got.begin(), got.begin() + 32), Sequence(0, 32));
  EXPECT_EQ(Bytes(got.end() - 16, got.end()), Sequence(32, 16));
  EXPECT_TRUE(PeerClosed());  // and then it closes
  EXPECT_EQ(counters_.wiped_undelivered_bytes, 0u);
}

TEST_P(SessionTest, ImmediateRequestsDoNotCountAgainstTheQueueLimit) {
  FillPool(100);
  StartSession({}, 16);
  Bytes requests(1000, 0x00);  // 1000 x "bits available", all answerable at once
  Send(requests);
  EXPECT_EQ(Receive(4000).size(), 4000u);
  EXPECT_EQ(counters_.queue_overflows, 0u);
  EXPECT_FALSE(session_->closed());
}

TEST_P(SessionTest, NonBlockingReadReturnsWhatIsThere) {
  FillPool(10);
  StartSession({});
  Send({0x01, 0xff, 0x01, 0x05});
  const Bytes got = Receive(1 + 10 + 1);
  ASSERT_EQ(got.size(), 12u);
  EXPECT_EQ(got[0], 10);
  EXPECT_EQ(got[11], 0);  // the pool is empty now: 01 05 gets zero bytes
  EXPECT_TRUE(NothingMoreArrives());
}

TEST_P(SessionTest, BlockingReadWaitsAndKeepsReadingRequests) {
  StartSession({}, 1000);
  Bytes requests;
  for (int i = 0; i < 300; ++i) requests.insert(requests.end(), {0x02, 0x01});
  Send(requests);
  EXPECT_TRUE(NothingMoreArrives());
  // All 300 requests were read off the socket although no entropy was there.
  EXPECT_EQ(counters_.requests, 300u);
  FillPool(300);
  const Bytes got = Receive(300);
  EXPECT_EQ(got, Sequence(0, 300));
}

TEST_P(SessionTest, NonRandomReplyWaitsBehindEarlierBlockingRead) {
  StartSession({});
  Send({0x02, 0x08, 0x04});
  EXPECT_TRUE(NothingMoreArrives());  // the PID must not overtake the 8 owed bytes
  FillPool(8);
  const std::string pid = std::to_string(getpid());
  const Bytes got = Receive(8 + 1 + pid.size());
  ASSERT_EQ(got.size(), 8 + 1 + pid.size());
  EXPECT_EQ(Bytes(got.begin(), got.begin() + 8), Sequence(0, 8));
  EXPECT_EQ(got[8], pid.size());
}

TEST_P(SessionTest, UnknownCommandClosesAndCounts) {
  FillPool(100);
  StartSession({});
  Send({0x02, 0x04, 0x16, 0x03, 0x01});
  // The stream cannot be trusted past the bad byte: the connection closes at once,
  // and the read queued before it takes nothing from the pool.
  EXPECT_TRUE(PeerClosed());
  EXPECT_EQ(counters_.bad_requests, 1u);
  EXPECT_EQ(pool_.Available(), 100u);
  EXPECT_TRUE(closed_callback_ran_);
}

TEST_P(SessionTest, TooManyQueuedRequestsDisconnects) {
  StartSession({}, 16);
  Bytes requests;
  for (int i = 0; i < 17; ++i) requests.insert(requests.end(), {0x02, 0x10});
  Send(requests);
  EXPECT_TRUE(PeerClosed());
  EXPECT_EQ(counters_.queue_overflows, 1u);
}

TEST_P(SessionTest, LeadSendsUnsolicitedBytesAndTopsUp) {
  FillPool(1000);
  SessionOptions options;
  options.lead_bytes = 64;
  StartSession(options);
  EXPECT_EQ(Receive(64), Sequence(0, 64));  // no request was sent
  EXPECT_TRUE(NothingMoreArrives());
  Send({0x02, 0x40});
  EXPECT_EQ(Receive(64), Sequence(64, 64));
  EXPECT_TRUE(NothingMoreArrives());
}

TEST_P(SessionTest, LeadIsToppedUpInQuarters) {
  FillPool(8000);
  SessionOptions options;
  options.lead_bytes = 4096;
  StartSession(options);
  EXPECT_EQ(Receive(4096), Sequence(0, 4096));
  // QEMU's 64-byte requests: fifteen of them (960 bytes) stay below a quarter of the
  // lead, so nothing is written yet; the sixteenth (1024) brings all 1024 in one go.
  for (int i = 0; i < 15; ++i) Send({0x02, 0x40});
  EXPECT_TRUE(NothingMoreArrives());
  Send({0x02, 0x40});
  EXPECT_EQ(Receive(1024), Sequence(4096, 1024));
  EXPECT_TRUE(NothingMoreArrives());
}

TEST_P(SessionTest, RawStreamsUntilBackPressure) {
  FillPool(8000);
  SessionOptions options;
  options.raw = true;
  StartSession(options);
  const Bytes got = Receive(8000);
  EXPECT_EQ(got, Sequence(0, 8000));
}

TEST_P(SessionTest, BytesOwedToAClientThatLeavesAreWipedNotReserved) {
  StartSession({});
  Send({0x02, 0xff});
  io_.run_for(std::chrono::milliseconds(5));
  close(client_fd_);
  client_fd_ = -1;
  FillPool(255);
  for (int i = 0; i < 100 && !session_->closed(); ++i) io_.run_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(session_->closed());
  // Whatever was handed to the session before it noticed is counted as wiped;
  // what it never took stays in the pool for others. Nothing is both.
  EXPECT_EQ(counters_.served_bytes + pool_.Available(), 255u);
  EXPECT_EQ(counters_.wiped_undelivered_bytes, counters_.served_bytes);
}

// Review finding: with a lead, a peer that asked and then half-closed got only the
// lead (lead=64, 20 x 02 FF, SHUT_WR delivered 64 of 5,164 bytes).
TEST_P(SessionTest, HalfClosedPeerWithALeadGetsTheLeadAndEverythingItAsked) {
  SessionOptions options;
  options.lead_bytes = 64;
  StartSession(options);
  Bytes requests;
  for (int i = 0; i < 20; ++i) requests.insert(requests.end(), {0x02, 0xff});
  Send(requests);
  ASSERT_EQ(shutdown(client_fd_, SHUT_WR), 0);
  constexpr std::size_t kOwed = 64 + 20 * 255;
  for (std::size_t filled = 0; filled < kOwed; filled += 1000) {
    FillPool(std::min<std::size_t>(1000, kOwed - filled));
  }
  EXPECT_EQ(Receive(kOwed), Sequence(0, kOwed));
  EXPECT_TRUE(PeerClosed());
  EXPECT_EQ(counters_.wiped_undelivered_bytes, 0u);
}

// A lead that the pool could only partly cover is finished when bytes come, without
// waiting for a request (the remainder is below the top-up threshold).
TEST_P(SessionTest, PartlyDeliveredLeadIsFinished) {
  FillPool(4032);
  SessionOptions options;
  options.lead_bytes = 4096;
  StartSession(options);
  EXPECT_EQ(Receive(4032), Sequence(0, 4032));
  FillPool(64);
  EXPECT_EQ(Receive(64), Sequence(4032, 64));
  EXPECT_TRUE(NothingMoreArrives());
}

// An idle connection that has been sent its lead holds no output buffer.
TEST_P(SessionTest, IdleConnectionHoldsNoBufferMemoryAfterItsLead) {
  FillPool(8000);
  SessionOptions options;
  options.lead_bytes = 4096;
  StartSession(options);
  EXPECT_EQ(Receive(4096), Sequence(0, 4096));
  for (int i = 0; i < 20; ++i) io_.run_for(std::chrono::milliseconds(1));
  EXPECT_EQ(session_->buffered_capacity(), 0u);
}

// A reply larger than the socket takes at once (a client slow to read) is finished
// in order: with write loops, the rest waits for room on the serving loop's socket.
TEST_P(SessionTest, AReplyTheSocketCannotTakeAtOnceArrivesWholeAndInOrder) {
  ASSERT_NO_FATAL_FAILURE(StartWithAReplyStuck());
  EXPECT_EQ(Receive(31 * 255), Sequence(0, 31 * 255));
  EXPECT_TRUE(NothingMoreArrives());
  EXPECT_EQ(counters_.wiped_undelivered_bytes, 0u);
  if (write_loops_) {
    // Part left on a write loop, the rest once the socket had room again.
    EXPECT_GT(write_loops_->sent(), 0u);
    EXPECT_LT(write_loops_->sent(), 31u * 255);
  }
}

// A client that goes while its reply is stuck in a full socket: the session closes,
// its bytes are all accounted for, and it is gone once the write is back.
TEST_P(SessionTest, AClientThatLeavesWithAReplyStuckIsClosedAndAccountedFor) {
  ASSERT_NO_FATAL_FAILURE(StartWithAReplyStuck());
  close(client_fd_);
  client_fd_ = -1;
  for (int i = 0; i < 500 && !(closed_callback_ran_ && !session_->writing()); ++i) {
    io_.run_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(session_->closed());
  EXPECT_TRUE(closed_callback_ran_);
  EXPECT_FALSE(session_->writing());
  EXPECT_EQ(counters_.served_bytes + pool_.Available(), 8000u);
  // What was handed over and not known to have left is counted as wiped.
  EXPECT_GT(counters_.wiped_undelivered_bytes, 0u);
  EXPECT_LE(counters_.wiped_undelivered_bytes, counters_.served_bytes);
  // The session is not kept alive by a write that never comes back.
  const std::weak_ptr<Session> gone = session_;
  session_.reset();
  io_.poll();
  EXPECT_TRUE(gone.expired());
}

// The server lets a session go (a reload, a replacement, shutdown) while its reply is
// part in the socket and part still to send: what the socket took reaches the client
// and is not counted as wiped; the rest is, and nothing is both or neither.
TEST_P(SessionTest, ASessionClosedMidReplyCountsOnlyWhatItNeverSentAsWiped) {
  ASSERT_NO_FATAL_FAILURE(StartWithAReplyStuck());
  // Part of the reply is in the client's socket before the session is let go (on a
  // write loop the send may not have run yet).
  int queued = 0;
  for (int i = 0; i < 2000 && queued == 0; ++i) {
    io_.run_for(std::chrono::milliseconds(1));
    ASSERT_EQ(ioctl(client_fd_, FIONREAD, &queued), 0);
  }
  ASSERT_GT(queued, 0);
  session_->Close("let go");
  for (int i = 0; i < 500 && session_->writing(); ++i) io_.run_for(std::chrono::milliseconds(1));
  ASSERT_FALSE(session_->writing());
  io_.poll();
  Bytes got;
  for (int i = 0; i < 100; ++i) {
    std::uint8_t buffer[4096];
    const ssize_t n = read(client_fd_, buffer, sizeof buffer);
    if (n == 0) break;
    if (n > 0) got.insert(got.end(), buffer, buffer + n);
    if (n < 0) io_.run_for(std::chrono::milliseconds(1));
  }
  // The reply was in flight in part: some of it arrived, not all.
  ASSERT_GT(got.size(), 0u);
  ASSERT_LT(got.size(), 31u * 255);
  EXPECT_EQ(got, Sequence(0, got.size()));
  EXPECT_EQ(counters_.served_bytes, 31u * 255);
  EXPECT_EQ(counters_.wiped_undelivered_bytes, counters_.served_bytes - got.size());
}

INSTANTIATE_TEST_SUITE_P(, SessionTest, ::testing::Values(std::size_t{0}, std::size_t{2}),
                         [](const ::testing::TestParamInfo<std::size_t>& loops) {
                           return loops.param == 0 ? std::string("OnTheEventLoop")
                                                   : std::string("OnTwoWriteLoops");
                         });

// With a write loop only.
class WriteLoopSessionTest : public SessionTest {};

// A client that leaves while its reply is away on the write loop: the server lets the
// session go, and the session lives until the answer is back (the write holds its
// buffer), then goes, its reply counted as wiped.
TEST_P(WriteLoopSessionTest, ASessionLetGoWithAWriteAwayLivesUntilTheAnswer) {
  FillPool(1000);
  StartSession({});
  ASSERT_EQ(write_loops_->size(), 1u);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  asio::post(write_loops_->Next(), [released] { released.wait(); });  // the loop is busy
  Send({0x02, 0x40});
  for (int i = 0; i < 200 && !session_->writing(); ++i) io_.run_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(session_->writing());
  session_->Close("client gone");
  const std::weak_ptr<Session> session = session_;
  session_.reset();
  for (int i = 0; i < 20; ++i) io_.run_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(session.expired());
  release.set_value();
  for (int i = 0; i < 500 && !session.expired(); ++i) io_.run_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(session.expired());
  EXPECT_EQ(counters_.served_bytes, 64u);
  EXPECT_EQ(counters_.wiped_undelivered_bytes, 64u);
}

INSTANTIATE_TEST_SUITE_P(, WriteLoopSessionTest, ::testing::Values(std::size_t{1}),
                         [](const ::testing::TestParamInfo<std::size_t>&) {
                           return std::string("OnOneWriteLoop");
                         });

// An EGD client whose transport takes whatever is pending at once, counting the
// hand-overs (each would be one write).
class CountingSession final : public EgdSession {
 public:
  CountingSession(SessionContext& context, asio::io_context& io)
      : EgdSession(context, SessionOptions{}, "counting", 64 * 1024, io.get_executor()) {
    Begin([] {});
  }
  ~CountingSession() override { Close("test over"); }
  void Ask(std::uint8_t count, int times) {
    for (int i = 0; i < times; ++i) {
      ASSERT_TRUE(Enqueue(EgdRequest{EgdCommand::kReadBlocking, count}));
    }
    ProcessQueue();
  }
  void Deliver(std::span<const std::uint8_t> bytes) override {
    delivered += bytes.size();
    EgdSession::Deliver(bytes);
    if (on_deliver) on_deliver();
  }
  int writes = 0;
  Bytes sent;
  std::size_t delivered = 0;
  std::function<void()> on_deliver;
  bool fail_next_flush = false;

 private:
  void Flush() override {
    if (pending_.empty()) return;
    if (fail_next_flush) {
      fail_next_flush = false;
      throw std::bad_alloc();
    }
    ++writes;
    sent.insert(sent.end(), pending_.data(), pending_.data() + pending_.size());
    pending_.Clear();
  }
  bool TransportIdle() const override { return true; }
  void CloseTransport() override {}
};

TEST(SessionPumpTest, OneWritePerClientPerPumpWhateverTheTurns) {
  // Twelve clients of one tenant, each with 8 x 02 FF outstanding, as the latency
  // benchmark's streamers: the group hands out its share chunk by chunk, so each
  // client is given bytes on several turns of one pump. Writing on every turn was
  // two writes or more per client and pump; the pump's caller now flushes once.
  EntropyPool pool(256 * 1024);
  FairShare fair_share(pool);
  ServerCounters counters;
  asio::io_context io;
  int pumps_requested = 0;
  SessionContext context{pool, fair_share, counters, [&] { ++pumps_requested; }, 64};
  auto group = std::make_shared<ShareGroup>(
      "tenant", ShareGroup::Limits{}, fair_share, SteadyClock::Instance(),
      [&] { ++pumps_requested; }, [](Clock::TimePoint) {});
  std::vector<std::unique_ptr<CountingSession>> clients;
  for (int i = 0; i < 12; ++i) {
    clients.push_back(std::make_unique<CountingSession>(context, io));
    clients.back()->SetShareGroup(group);
    clients.back()->Ask(255, 8);
  }
  Bytes source(12 * 8 * 255);
  for (std::size_t i = 0; i < source.size(); ++i) source[i] = static_cast<std::uint8_t>(i * 7);
  Interrupt stop;
  ASSERT_EQ(pool.Put(source, stop), source.size());

  EXPECT_EQ(EgdSession::PumpAndFlush(context), source.size());
  Bytes all;
  for (const auto& client : clients) {
    EXPECT_EQ(client->writes, 1) << "one write for everything a pump gave the client";
    EXPECT_EQ(client->sent.size(), 8u * 255) << "every request answered in that write";
    all.insert(all.end(), client->sent.begin(), client->sent.end());
  }
  // Every byte went to exactly one client.
  std::sort(all.begin(), all.end());
  Bytes expected = source;
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(all, expected);
  EXPECT_TRUE(context.deferred_flush.empty());
  EXPECT_FALSE(context.defer_flush);
}

TEST(SessionPumpTest, AClientDestroyedByAnothersDeliveryIsNotFlushed) {
  // Two clients in one pump; whichever is given bytes second destroys the other, which
  // is by then listed to be flushed. No dangling entry may be flushed, and the
  // survivor still gets its one write.
  EntropyPool pool(8192);
  FairShare fair_share(pool);
  ServerCounters counters;
  asio::io_context io;
  SessionContext context{pool, fair_share, counters, [] {}, 64};
  std::unique_ptr<CountingSession> clients[2];
  for (auto& client : clients) {
    client = std::make_unique<CountingSession>(context, io);
    client->Ask(64, 1);
  }
  for (int i = 0; i < 2; ++i) {
    clients[i]->on_deliver = [&clients, i] {
      auto& other = clients[1 - i];
      if (other && other->delivered > 0) other.reset();
    };
  }
  // Beyond what they ask: a satisfied client's unspent turn is set aside for it.
  Bytes bytes(4096, 0x5A);
  Interrupt stop;
  ASSERT_EQ(pool.Put(bytes, stop), bytes.size());
  EXPECT_EQ(EgdSession::PumpAndFlush(context), 128u);
  const int survivors = (clients[0] ? 1 : 0) + (clients[1] ? 1 : 0);
  ASSERT_EQ(survivors, 1);
  const CountingSession& survivor = clients[0] ? *clients[0] : *clients[1];
  EXPECT_EQ(survivor.writes, 1);
  EXPECT_EQ(survivor.sent.size(), 64u);
  EXPECT_TRUE(context.deferred_flush.empty());
  EXPECT_EQ(counters.wiped_undelivered_bytes, 64u) << "the destroyed client's reply is wiped";
}

TEST(SessionPumpTest, AFailedFlushLeavesTheOthersListedAndAsksForAPump) {
  // One client's write fails (out of memory) in the flush after a pump: the clients
  // after it are flushed by the next pump, which is asked for at once.
  EntropyPool pool(8192);
  FairShare fair_share(pool);
  ServerCounters counters;
  asio::io_context io;
  int pumps_requested = 0;
  SessionContext context{pool, fair_share, counters, [&] { ++pumps_requested; }, 64};
  std::vector<std::unique_ptr<CountingSession>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<CountingSession>(context, io));
    clients.back()->Ask(64, 1);
  }
  pumps_requested = 0;
  clients[0]->fail_next_flush = true;
  Bytes bytes(4096, 0x33);
  Interrupt stop;
  ASSERT_EQ(pool.Put(bytes, stop), bytes.size());
  EXPECT_THROW(EgdSession::PumpAndFlush(context), std::bad_alloc);
  EXPECT_FALSE(context.defer_flush);
  EXPECT_EQ(pumps_requested, 1);
  EXPECT_EQ(context.deferred_flush.size(), 2u);
  EXPECT_EQ(EgdSession::PumpAndFlush(context), 0u);
  EXPECT_TRUE(context.deferred_flush.empty());
  EXPECT_EQ(clients[1]->writes, 1);
  EXPECT_EQ(clients[2]->writes, 1);
}

TEST(OutputBufferTest, GrowsToWhatItHoldsKeepsContentAndReleases) {
  OutputBuffer buffer(70'000);
  EXPECT_EQ(buffer.allocated(), 0u);
  Bytes first(100, 0xAB);
  buffer.Append(first);
  EXPECT_EQ(buffer.allocated(), 128u) << "a small reply takes a small block";
  Bytes more(9000);
  for (std::size_t i = 0; i < more.size(); ++i) more[i] = static_cast<std::uint8_t>(i);
  buffer.Append(more);
  EXPECT_GE(buffer.allocated(), 9100u);
  EXPECT_LE(buffer.allocated(), 70'000u);
  ASSERT_EQ(buffer.size(), 9100u);
  EXPECT_EQ(Bytes(buffer.data(), buffer.data() + 100), first);
  EXPECT_EQ(Bytes(buffer.data() + 100, buffer.data() + 9100), more);
  Bytes big(60'000, 1);
  buffer.Append(big);
  EXPECT_GE(buffer.allocated(), 69'100u);
  EXPECT_LE(buffer.allocated(), 70'000u) << "never beyond the capacity";
  buffer.Release();
  EXPECT_EQ(buffer.allocated(), 0u);
  EXPECT_TRUE(buffer.empty());
}

}  // namespace
}  // namespace rngmux
