#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <asio/connect.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <deque>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/egd_client.h"
#include "cli/output.h"
#include "cli/process_cpu.h"
#include "endpoint/endpoint_spec.h"
#include "protocol/egd_parser.h"

namespace rngmux {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchFlags {
  std::string endpoint;
  unsigned clients = 8;
  unsigned size = kMaxEgdRequestBytes;
  unsigned depth = 16;
  double seconds = 5;
  double warmup_seconds = 0.5;
  double rate = 0;  // bytes a second per streaming client; 0: as fast as replies come
  bool probe = false;
  bool raw = false;
  bool json = false;
  unsigned guests = 0;  // QEMU-like clients: one 02 40 in flight each, paced to `rate`
  unsigned threads = 1;
  int pid = 0;  // a process whose CPU time to report (0: none)
  // Which of the options above the command line gave (some exclude --guests).
  bool clients_given = false, size_given = false, depth_given = false, rate_given = false;
};

// What a QEMU guest on a Linux kernel's virtio-rng asks: 64 bytes, one request at a time.
constexpr unsigned kGuestRequestBytes = 64;
constexpr double kDefaultGuestRate = 64000;  // bytes a second: a 512 kbit/s device

// One EGD client keeping `depth` `02 size` requests in flight. It counts bytes, and
// times each request from its write to the arrival of its last byte. Replies to
// 0x02 have no framing, so "every reply has its length" is checked as: the bytes
// received never exceed what was asked, and once sending stops, all that was asked
// arrives.
//
// Over UDP each datagram carries at most kRequestsPerDatagram requests (their replies
// fit the server's 4096-byte datagrams), and a lost datagram is not asked for again:
// it shows up as bytes missing at the end.
class BenchClient : public std::enable_shared_from_this<BenchClient> {
 public:
  using Socket = asio::generic::stream_protocol::socket;
  static constexpr std::size_t kRequestsPerDatagram = 16;
  static constexpr std::size_t kMinReadBytes = 4096, kMaxReadBytes = 65536;

  BenchClient(Socket socket, unsigned depth, unsigned size, bool record_latency, bool raw)
      : socket_(std::move(socket)),
        udp_(socket_.get_executor()),
        pacer_(socket_.get_executor()),
        depth_(depth),
        size_(size),
        record_(record_latency),
        raw_(raw),
        input_(raw ? kMaxReadBytes
                   : std::clamp<std::size_t>(std::size_t{depth} * size, kMinReadBytes,
                                             kMaxReadBytes)) {}

  // Ask for at most this many bytes a second on average (a token bucket `depth`
  // requests deep), like a guest reading a device of that speed; 0 is unpaced.
  // `phase` (0..1) staggers the first tick, so that paced clients do not all ask at
  // the same instants.
  void PaceTo(double bytes_per_second, double phase) {
    rate_ = bytes_per_second;
    next_tick_ = std::chrono::duration_cast<Clock::duration>(kPaceTick * phase);
  }

  // Ask like a guest reading a device of this speed: one request every `interval`,
  // the first at `start + phase * interval` (so that clients do not ask in lockstep).
  // A reply that comes later than the next request is due is followed by the next
  // request at once, and the schedule restarts from there: a client the server holds
  // up falls behind for good (no burst to catch up), which shows as a delivered share
  // below 1. Needs depth 1.
  void PaceAsGuest(Clock::duration interval, double phase) {
    interval_ = interval;
    phase_ = phase;
  }

  void Start(Clock::time_point measure_from) {
    measure_from_ = measure_from;
    refilled_at_ = Clock::now();
    due_ = refilled_at_ + std::chrono::duration_cast<Clock::duration>(interval_ * phase_);
    tokens_ = static_cast<double>(depth_) * size_;
    if (!raw_) SendRequests(depth_);
    Read();
  }
  // Stop asking; keep reading until everything asked has arrived (raw: stop reading).
  void StopSending() {
    sending_ = false;
    pacer_.cancel();
    if (raw_) {
      asio::error_code ignored;
      socket_.close(ignored);
    }
  }
  // Speak over this connected datagram socket instead of the stream socket.
  void UseDatagrams(asio::ip::udp::socket socket) {
    udp_ = std::move(socket);
    datagrams_ = true;
  }

  std::uint64_t requested() const { return requested_; }
  std::uint64_t received() const { return received_; }
  std::uint64_t measured_bytes() const { return measured_bytes_; }
  const std::vector<std::uint32_t>& latencies_ns() const { return latencies_; }
  const std::string& error() const { return error_; }
  bool done() const { return !error_.empty() || (!sending_ && (raw_ || received_ == requested_)); }

 private:
  void SendRequests(unsigned n) {
    if (!sending_) return;
    owed_ += n;
    if (interval_.count() > 0) return SendWhenDue();
    const Clock::time_point now = Clock::now();
    if (rate_ > 0) {
      // The bucket holds at most `depth` requests' worth: a client held up (by the
      // server or by this process) does not make up for it with a burst afterwards.
      const double elapsed = std::chrono::duration<double>(now - refilled_at_).count();
      refilled_at_ = now;
      tokens_ = std::min(static_cast<double>(depth_) * size_, tokens_ + rate_ * elapsed);
      n = static_cast<unsigned>(std::min<double>(owed_, tokens_ / size_));
      tokens_ -= static_cast<double>(n) * size_;
      if (n < owed_) WaitForTokens();
    } else {
      n = owed_;
    }
    owed_ -= n;
    Send(n, now);
  }

  void SendWhenDue() {
    if (owed_ == 0 || pacing_ || !sending_) return;
    const Clock::time_point now = Clock::now();
    if (now < due_) {
      pacing_ = true;
      pacer_.expires_at(due_);
      pacer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
        self->pacing_ = false;
        if (!ec) self->SendWhenDue();
      });
      return;
    }
    due_ = std::max(due_, now - interval_) + interval_;
    --owed_;
    Send(1, now);
  }

  void Send(unsigned n, Clock::time_point now) {
    if (n == 0) return;
    const std::size_t start = outgoing_.size();
    outgoing_.resize(start + 2 * std::size_t{n});
    const auto request = ReadRequest(static_cast<std::uint8_t>(size_));
    for (unsigned i = 0; i < n; ++i) {
      std::copy(request.begin(), request.end(), outgoing_.begin() + start + 2 * i);
      requested_ += size_;
      in_flight_.push_back({now, requested_});
    }
    Write();
  }

  // Ticks of 10 ms: 100 paced clients cost the bench 10,000 timer events a second.
  static constexpr std::chrono::milliseconds kPaceTick{10};
  void WaitForTokens() {
    if (pacing_) return;
    pacing_ = true;
    pacer_.expires_after(next_tick_);
    next_tick_ = kPaceTick;
    pacer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      self->pacing_ = false;
      if (!ec) self->SendRequests(0);
    });
  }

  void Write() {
    if (writing_ || outgoing_.empty()) return;
    writing_ = true;
    sending_buffer_.swap(outgoing_);
    if (datagrams_) return SendDatagram(0);
    asio::async_write(socket_, asio::buffer(sending_buffer_),
                      [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
                        self->writing_ = false;
                        self->sending_buffer_.clear();
                        if (ec) return self->Fail("write: " + ec.message());
                        self->Write();
                      });
  }

  void SendDatagram(std::size_t offset) {
    const std::size_t n = std::min(sending_buffer_.size() - offset, 2 * kRequestsPerDatagram);
    udp_.async_send(
        asio::buffer(sending_buffer_.data() + offset, n),
        [self = shared_from_this(), offset, n](const asio::error_code& ec, std::size_t) {
          if (ec) return self->Fail("send: " + ec.message());
          if (offset + n < self->sending_buffer_.size()) {
            return self->SendDatagram(offset + n);
          }
          self->writing_ = false;
          self->sending_buffer_.clear();
          self->Write();
        });
  }

  void Read() {
    if (datagrams_) {
      udp_.async_receive(asio::buffer(input_),
                         [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
                           if (ec) return self->Fail("receive: " + ec.message());
                           self->OnData(n);
                         });
      return;
    }
    socket_.async_read_some(asio::buffer(input_),
                            [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
                              if (ec) return self->Fail("read: " + ec.message());
                              self->OnData(n);
                            });
  }

  void OnData(std::size_t n) {
    received_ += n;
    const Clock::time_point now = Clock::now();
    if (now >= measure_from_ && sending_) measured_bytes_ += n;
    if (raw_) {
      if (sending_) Read();
      return;
    }
    if (received_ > requested_) {
      return Fail("received " + std::to_string(received_) + " bytes but asked for " +
                  std::to_string(requested_));
    }
    unsigned completed = 0;
    while (!in_flight_.empty() && in_flight_.front().end <= received_) {
      if (record_ && now >= measure_from_ && sending_) {
        latencies_.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - in_flight_.front().sent)
                .count(),
            UINT32_MAX)));
      }
      in_flight_.pop_front();
      ++completed;
    }
    SendRequests(completed);
    if (!done()) Read();
  }

  void Fail(const std::string& why) {
    if (error_.empty()) error_ = why;
  }

  struct InFlight {
    Clock::time_point sent;
    std::uint64_t end;  // cumulative bytes once this request is answered
  };

  Socket socket_;
  asio::ip::udp::socket udp_;
  asio::steady_timer pacer_;
  bool datagrams_ = false;
  unsigned depth_;
  unsigned size_;
  bool record_;
  bool raw_;
  bool sending_ = true;
  bool writing_ = false;
  bool pacing_ = false;
  double rate_ = 0;
  unsigned owed_ = 0;            // requests answered but not yet asked again (pacing)
  Clock::duration interval_{0};  // guest pacing: time between requests; 0: off
  double phase_ = 0;
  Clock::time_point due_;  // guest pacing: when the next request may go
  Clock::duration next_tick_ = kPaceTick;
  double tokens_ = 0;  // bytes this client may still ask for now (pacing)
  Clock::time_point measure_from_, refilled_at_;
  std::vector<std::uint8_t> outgoing_, sending_buffer_;
  std::deque<InFlight> in_flight_;
  // Room for what `depth` requests return (a UDP reply datagram at least), up to 64 KiB:
  // a thousand guests need 64 bytes each, not 64 KiB.
  std::vector<std::uint8_t> input_;
  std::uint64_t requested_ = 0, received_ = 0, measured_bytes_ = 0;
  std::vector<std::uint32_t> latencies_;
  std::string error_;
};

// The client library's sockets, adopted by asio.
Result<asio::ip::udp::socket> ConnectUdp(asio::io_context& io, const EndpointSpec& spec) {
  auto fd = ConnectDatagram(spec, 1 << 20);
  if (!fd.ok()) return fd.status();
  const bool v6 = SocketFamily(fd->get()) == AF_INET6;
  asio::ip::udp::socket s(io);
  asio::error_code ec;
  s.assign(v6 ? asio::ip::udp::v6() : asio::ip::udp::v4(), fd->get(), ec);
  if (ec) return Status::Error(spec.Address() + ": " + ec.message());
  fd->release();
  return s;
}

// GCC 12 sees asio's move of a socket's reactor data as maybe uninitialized when it
// inlines this function (a false positive: the moved-from socket is constructed).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
Result<BenchClient::Socket> Connect(asio::io_context& io, const EndpointSpec& spec) {
  BenchClient::Socket out(io);
  if (spec.transport == TransportKind::kUdp) return out;  // unused
  auto fd = ConnectStream(spec);
  if (!fd.ok()) return fd.status();
  const int family = SocketFamily(fd->get());
  asio::error_code ec;
  out.assign(asio::generic::stream_protocol(family, family == AF_UNIX ? 0 : IPPROTO_TCP), fd->get(),
             ec);
  if (ec) return Status::Error(spec.Address() + ": " + ec.message());
  fd->release();
  return out;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

double Percentile(std::vector<std::uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto i = static_cast<std::size_t>(std::ceil(p / 100 * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, i == 0 ? 0 : i - 1)] / 1000.0;  // us
}

// How long clients may take, once the measurement ends, to receive what they asked for.
constexpr std::chrono::seconds kDrainTime{10};

// One io_context and the clients it drives, run on a thread of its own.
struct Loop {
  asio::io_context io;
  std::vector<std::shared_ptr<BenchClient>> clients;
  bool drained_in_time = true;
};

// Runs `loop` until, after `end`, every client has all it asked for (or kDrainTime
// has passed: drained_in_time becomes false).
void RunLoop(Loop& loop, Clock::time_point end) {
  if (loop.clients.empty()) return;
  asio::steady_timer stop(loop.io), drain(loop.io);
  stop.expires_at(end);
  stop.async_wait([&](const asio::error_code&) {
    for (auto& c : loop.clients) c->StopSending();
    drain.expires_after(kDrainTime);
    drain.async_wait([&](const asio::error_code& ec) {
      if (ec) return;
      loop.drained_in_time = false;
      loop.io.stop();
    });
  });
  while (!loop.io.stopped()) {
    loop.io.run_one();
    if (Clock::now() > end && std::all_of(loop.clients.begin(), loop.clients.end(),
                                          [](const auto& c) { return c->done(); })) {
      break;
    }
  }
}

// CPU seconds (user + system) this process has used, all its threads.
double OwnCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Fills in what --guests implies, or says which flag contradicts it.
Status ApplyGuestMode(BenchFlags& flags) {
  if (flags.guests == 0) return Status::Ok();
  if (flags.clients_given) return Status::Error("--guests sets the number of clients; drop -c");
  if (flags.size_given || flags.depth_given) {
    return Status::Error("--guests asks 02 40 with one request in flight; drop -s/-d");
  }
  if (flags.raw) return Status::Error("--guests needs EGD, not --raw");
  if (flags.probe) return Status::Error("--guests times every request already; drop --probe");
  if (flags.rate_given && flags.rate <= 0) {
    return Status::Error("--rate 0: --guests needs a rate above 0");
  }
  flags.clients = flags.guests;
  flags.size = kGuestRequestBytes;
  flags.depth = 1;
  if (!flags.rate_given) flags.rate = kDefaultGuestRate;
  return Status::Ok();
}

int RunBench(BenchFlags flags) {
  auto spec = ParseEndpointSpec(EndpointRole::kConnect, flags.endpoint);
  if (!spec.ok()) return ReportUsageError(spec.status().message());
  if (spec->session.lead_bytes > 0 || spec->session.raw) {
    return ReportUsageError("endpoint \"" + flags.endpoint +
                            "\": bench speaks strict EGD; drop ,qemu/,lead/,raw (use --raw "
                            "for a server that streams without requests)");
  }
  if (const Status guests = ApplyGuestMode(flags); !guests.ok()) {
    return ReportUsageError(guests.message());
  }
  if (flags.raw && flags.rate > 0) return ReportUsageError("--rate needs EGD, not --raw");
  if (flags.raw && flags.probe) return ReportUsageError("--probe needs EGD, not --raw");
  if (flags.raw && spec->transport == TransportKind::kUdp) {
    return ReportUsageError("--raw needs a stream endpoint (tcp: or unix:)");
  }
  if (flags.pid != 0) {
    if (auto cpu = ProcessTreeCpuSeconds(flags.pid); !cpu.ok()) {
      return ReportUsageError("--pid " + std::to_string(flags.pid) + ": " + cpu.status().message());
    }
  }
  const bool guests = flags.guests > 0;
  // Streaming clients are spread over `threads` loops; the probe has a loop of its own:
  // behind the streamers' traffic in one loop, its replies would wait for the bench
  // itself, not for the daemon.
  std::vector<std::unique_ptr<Loop>> loops;
  for (unsigned t = 0; t < flags.threads; ++t) loops.push_back(std::make_unique<Loop>());
  Loop probe_loop;
  std::vector<std::shared_ptr<BenchClient>> streamers;
  std::shared_ptr<BenchClient> probe;
  const auto guest_interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(guests ? kGuestRequestBytes / flags.rate : 0));
  for (unsigned i = 0; i < flags.clients + (flags.probe ? 1 : 0); ++i) {
    const bool is_probe = flags.probe && i == flags.clients;
    Loop& loop = is_probe ? probe_loop : *loops[i % loops.size()];
    auto socket = Connect(loop.io, *spec);
    if (!socket.ok()) {
      std::fprintf(stderr, "rngmux: error: %s\n", socket.status().message().c_str());
      return 1;
    }
    auto client = std::make_shared<BenchClient>(
        std::move(socket).value(), is_probe ? 1 : flags.depth, is_probe ? 64 : flags.size,
        is_probe || !flags.probe, flags.raw);
    if (spec->transport == TransportKind::kUdp) {
      auto udp = ConnectUdp(loop.io, *spec);
      if (!udp.ok()) {
        std::fprintf(stderr, "rngmux: error: %s\n", udp.status().message().c_str());
        return 1;
      }
      client->UseDatagrams(std::move(udp).value());
    }
    const double phase = static_cast<double>(i) / std::max(1u, flags.clients);
    if (guests) {
      client->PaceAsGuest(guest_interval, phase);
    } else if (!is_probe) {
      client->PaceTo(flags.rate, phase);
    }
    (is_probe ? probe : streamers.emplace_back()) = client;
    loop.clients.push_back(client);
  }

  const auto warmup = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(flags.warmup_seconds));
  const auto duration =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(flags.seconds));
  const Clock::time_point start = Clock::now();
  const Clock::time_point measure_from = start + warmup;
  const Clock::time_point end = measure_from + duration;
  for (auto& c : streamers) c->Start(measure_from);
  if (probe) probe->Start(measure_from);
  std::vector<std::thread> threads;
  for (auto& loop : loops) threads.emplace_back([&loop, end] { RunLoop(*loop, end); });
  threads.emplace_back([&probe_loop, end] { RunLoop(probe_loop, end); });

  // CPU over the measured window: this process's (every loop thread) and, with --pid,
  // the daemon's, so that a reader can tell the generator's share of the cores.
  std::string errors;
  std::this_thread::sleep_until(measure_from);
  const double bench_cpu_start = OwnCpuSeconds();
  Result<double> daemon_cpu_start = flags.pid ? ProcessTreeCpuSeconds(flags.pid) : 0.0;
  std::this_thread::sleep_until(end);
  const double bench_cpu = OwnCpuSeconds() - bench_cpu_start;
  double daemon_cpu = NAN;
  if (flags.pid) {
    Result<double> daemon_cpu_end = ProcessTreeCpuSeconds(flags.pid);
    if (daemon_cpu_start.ok() && daemon_cpu_end.ok()) {
      daemon_cpu = *daemon_cpu_end - *daemon_cpu_start;
    } else {
      errors = "--pid " + std::to_string(flags.pid) + ": " +
               (daemon_cpu_start.ok() ? daemon_cpu_end : daemon_cpu_start).status().message();
    }
  }
  for (auto& t : threads) t.join();
  bool drained_in_time = probe_loop.drained_in_time;
  for (const auto& loop : loops) drained_in_time = drained_in_time && loop->drained_in_time;
  std::vector<std::shared_ptr<BenchClient>> all = streamers;
  if (probe) all.push_back(probe);
  const double seconds = flags.seconds;

  std::uint64_t total = 0, requested = 0, received = 0;
  double sum = 0, sum_squares = 0, min_client = 1e300, max_client = 0;
  for (const auto& c : streamers) {
    const double b = static_cast<double>(c->measured_bytes());
    total += c->measured_bytes();
    sum += b;
    sum_squares += b * b;
    min_client = std::min(min_client, b);
    max_client = std::max(max_client, b);
  }
  for (const auto& c : all) {
    requested += c->requested();
    received += c->received();
    if (!c->error().empty()) errors += (errors.empty() ? "" : "; ") + c->error();
  }
  const double jain =
      sum_squares > 0 ? sum * sum / (static_cast<double>(streamers.size()) * sum_squares) : 0;
  // Paced clients: the share of what they asked to be given that they were given. A
  // client the server (or this machine) cannot keep up with shows below 1.
  const bool paced = flags.rate > 0 && !streamers.empty();
  const double asked_per_client = flags.rate * seconds;
  const double delivered_share =
      paced ? sum / (asked_per_client * static_cast<double>(streamers.size())) : NAN;
  const double min_share = paced ? min_client / asked_per_client : NAN;
  unsigned below_90 = 0;
  for (const auto& c : streamers) {
    if (paced && static_cast<double>(c->measured_bytes()) < 0.9 * asked_per_client) ++below_90;
  }
  const double daemon_cpu_per_gb =
      total > 0 ? daemon_cpu / (static_cast<double>(total) / 1e9) : NAN;
  std::vector<std::uint32_t> latencies;
  for (const auto& c : all) {
    latencies.insert(latencies.end(), c->latencies_ns().begin(), c->latencies_ns().end());
  }
  std::sort(latencies.begin(), latencies.end());
  const bool complete = errors.empty() && drained_in_time && (flags.raw || received == requested);
  if (complete) {
    // nothing to add
  } else if (errors.empty()) {
    errors = "got " + std::to_string(received) + " of " + std::to_string(requested) +
             " bytes asked within " + std::to_string(kDrainTime.count()) + " s of the end";
  }
  const double rate = static_cast<double>(total) / seconds;
  const char* latency_of = probe ? "probe (one 02 40 at a time)" : "all requests";

  if (flags.json) {
    JsonReport pid = nullptr;
    if (flags.pid) pid = flags.pid;
    PrintJsonReport({{"endpoint", flags.endpoint},
                     {"clients", flags.clients},
                     {"depth", flags.depth},
                     {"size", flags.size},
                     {"client_rate", flags.rate},
                     {"seconds", seconds},
                     {"bytes", total},
                     {"bytes_per_second", rate},
                     {"client_min_bytes", min_client},
                     {"client_max_bytes", max_client},
                     {"jain", jain},
                     {"latency_of", probe ? "probe" : "all"},
                     {"latency_samples", latencies.size()},
                     {"p50_us", Percentile(latencies, 50)},
                     {"p99_us", Percentile(latencies, 99)},
                     {"p999_us", Percentile(latencies, 99.9)},
                     {"requested_bytes", requested},
                     {"received_bytes", received},
                     {"complete", complete},
                     {"guests", flags.guests},
                     {"threads", flags.threads},
                     {"delivered_share", delivered_share},
                     {"client_min_share", min_share},
                     {"clients_below_90pct", below_90},
                     {"bench_cpu_seconds", bench_cpu},
                     {"daemon_pid", pid},
                     {"daemon_cpu_seconds", daemon_cpu},
                     {"daemon_cpu_seconds_per_gb", daemon_cpu_per_gb}});
  } else {
    char pace[64] = "";
    if (flags.rate > 0) std::snprintf(pace, sizeof pace, ", each paced to %.0f B/s", flags.rate);
    if (guests) {
      std::printf(
          "rngmux bench: %s, %u QEMU-like clients (one 02 40 in flight)%s, %.1f s, %u "
          "thread%s\n",
          flags.endpoint.c_str(), flags.clients, pace, seconds, flags.threads,
          flags.threads == 1 ? "" : "s");
    } else {
      std::printf("rngmux bench: %s, %u clients x %u requests of %u bytes in flight%s, %.1f s%s\n",
                  flags.endpoint.c_str(), flags.clients, flags.depth, flags.size, pace, seconds,
                  probe ? ", plus a latency probe" : "");
    }
    std::printf("  throughput  %.1f MB/s (%llu bytes); per client %.0f..%.0f bytes, Jain %.4f\n",
                rate / 1e6, static_cast<unsigned long long>(total), min_client, max_client, jain);
    if (paced) {
      std::printf(
          "  delivered   %.1f %% of the asked rate; lowest client %.1f %%, %u of %u "
          "clients below 90 %%\n",
          100 * delivered_share, 100 * min_share, below_90, flags.clients);
    }
    std::printf("  latency     p50 %.1f us, p99 %.1f us, p99.9 %.1f us (%zu requests, %s)\n",
                Percentile(latencies, 50), Percentile(latencies, 99), Percentile(latencies, 99.9),
                latencies.size(), latency_of);
    std::printf("  cpu         bench %.2f s", bench_cpu);
    if (flags.pid) {
      std::printf("; pid %d %.2f s (%.2f s per GB delivered)", flags.pid, daemon_cpu,
                  daemon_cpu_per_gb);
    }
    std::printf(" over the %.1f s measured\n", seconds);
    std::printf("  replies     %s\n",
                complete ? (flags.raw ? "raw stream: not checked"
                                      : "every byte asked for arrived, and never more")
                         : errors.c_str());
  }
  if (!complete) {
    std::fprintf(stderr, "rngmux: error: %s\n", errors.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

Command AddBenchCommand(CLI::App& root) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* app =
      root.add_subcommand("bench",
                          "EGD load generator: N clients with pipelined 02 NN requests against an "
                          "endpoint; reports throughput, fairness and latency percentiles.");
  app->add_option("endpoint", flags->endpoint, "tcp:HOST:PORT, unix:PATH or udp:HOST:PORT")
      ->required();
  app->add_option("-c,--clients", flags->clients, "Streaming clients")
      ->capture_default_str()
      ->check(CLI::Range(0u, 20000u));
  app->add_option("-s,--size", flags->size, "Bytes per request (NN)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 255u));
  app->add_option("-d,--depth", flags->depth, "Requests each client keeps in flight")
      ->capture_default_str()
      ->check(CLI::Range(1u, 4096u));
  app->add_option("-t,--seconds", flags->seconds, "How long to measure")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app->add_option("--warmup", flags->warmup_seconds, "Seconds before measuring")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 60.0));
  app->add_option("--rate", flags->rate,
                  "Bytes a second each streaming client asks for at most (0: as fast as it is "
                  "answered)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e10));
  app->add_flag("--probe", flags->probe,
                "Add one client with a single 02 40 outstanding (what a Linux guest does) and "
                "report its latency");
  app->add_flag("--raw", flags->raw,
                "Send nothing and just read (for servers that stream, e.g. socat on /dev/urandom)");
  app->add_option("--guests", flags->guests,
                  "QEMU-like clients: each keeps one 02 40 in flight, paced to --rate (default "
                  "64000) with staggered phases; every request is timed (excludes -c, -s, -d, "
                  "--probe, --raw)")
      ->check(CLI::Range(1u, 20000u));
  app->add_option("--threads", flags->threads,
                  "Event-loop threads of the bench itself; clients are spread over them")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  app->add_option("--pid", flags->pid,
                  "Report this process's CPU time over the measured window (with its live "
                  "children: a forking socat), and per GB delivered")
      ->check(CLI::Range(1, INT_MAX));
  app->add_flag("--json", flags->json, "Print one JSON object");
  const CLI::Option* clients = app->get_option("--clients");
  const CLI::Option* size = app->get_option("--size");
  const CLI::Option* depth = app->get_option("--depth");
  const CLI::Option* rate = app->get_option("--rate");
  return Command{app, [flags] { return RunBench(*flags); },
                 [flags, clients, size, depth, rate] {
                   flags->clients_given = clients->count() > 0;
                   flags->size_given = size->count() > 0;
                   flags->depth_given = depth->count() > 0;
                   flags->rate_given = rate->count() > 0;
                 }};
}

}  // namespace rngmux
