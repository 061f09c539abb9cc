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
};

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

  BenchClient(Socket socket, unsigned depth, unsigned size, bool record_latency, bool raw)
      : socket_(std::move(socket)),
        udp_(socket_.get_executor()),
        pacer_(socket_.get_executor()),
        depth_(depth),
        size_(size),
        record_(record_latency),
        raw_(raw) {}

  // Ask for at most this many bytes a second on average (a token bucket `depth`
  // requests deep), like a guest reading a device of that speed; 0 is unpaced.
  // `phase` (0..1) staggers the first tick, so that paced clients do not all ask at
  // the same instants.
  void PaceTo(double bytes_per_second, double phase) {
    rate_ = bytes_per_second;
    next_tick_ = std::chrono::duration_cast<Clock::duration>(kPaceTick * phase);
  }

  void Start(Clock::time_point measure_from) {
    measure_from_ = measure_from;
    refilled_at_ = Clock::now();
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
  unsigned owed_ = 0;  // requests answered but not yet asked again (pacing)
  Clock::duration next_tick_ = kPaceTick;
  double tokens_ = 0;  // bytes this client may still ask for now (pacing)
  Clock::time_point measure_from_, refilled_at_;
  std::vector<std::uint8_t> outgoing_, sending_buffer_;
  std::deque<InFlight> in_flight_;
  std::array<std::uint8_t, 65536> input_{};
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

int RunBench(const BenchFlags& flags) {
  auto spec = ParseEndpointSpec(EndpointRole::kConnect, flags.endpoint);
  if (!spec.ok()) return ReportUsageError(spec.status().message());
  if (spec->session.lead_bytes > 0 || spec->session.raw) {
    return ReportUsageError("endpoint \"" + flags.endpoint +
                            "\": bench speaks strict EGD; drop ,qemu/,lead/,raw (use --raw "
                            "for a server that streams without requests)");
  }
  if (flags.raw && flags.rate > 0) return ReportUsageError("--rate needs EGD, not --raw");
  if (flags.raw && flags.probe) return ReportUsageError("--probe needs EGD, not --raw");
  if (flags.raw && spec->transport == TransportKind::kUdp) {
    return ReportUsageError("--raw needs a stream endpoint (tcp: or unix:)");
  }
  asio::io_context io;
  // The probe has a thread and loop of its own: behind the streamers' traffic in one
  // loop, its replies would wait for the bench itself, not for the daemon.
  asio::io_context probe_io;
  std::vector<std::shared_ptr<BenchClient>> streamers;
  std::shared_ptr<BenchClient> probe;
  for (unsigned i = 0; i < flags.clients + (flags.probe ? 1 : 0); ++i) {
    const bool is_probe = flags.probe && i == flags.clients;
    auto socket = Connect(is_probe ? probe_io : io, *spec);
    if (!socket.ok()) {
      std::fprintf(stderr, "rngmux: error: %s\n", socket.status().message().c_str());
      return 1;
    }
    auto client = std::make_shared<BenchClient>(
        std::move(socket).value(), is_probe ? 1 : flags.depth, is_probe ? 64 : flags.size,
        is_probe || !flags.probe, flags.raw);
    if (spec->transport == TransportKind::kUdp) {
      auto udp = ConnectUdp(is_probe ? probe_io : io, *spec);
      if (!udp.ok()) {
        std::fprintf(stderr, "rngmux: error: %s\n", udp.status().message().c_str());
        return 1;
      }
      client->UseDatagrams(std::move(udp).value());
    }
    if (!is_probe) client->PaceTo(flags.rate, static_cast<double>(i) / flags.clients);
    (is_probe ? probe : streamers.emplace_back()) = client;
  }

  const auto warmup = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(flags.warmup_seconds));
  const auto duration =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(flags.seconds));
  const Clock::time_point start = Clock::now();
  const Clock::time_point end = start + warmup + duration;
  bool drained_in_time = true;
  std::thread probe_thread;
  bool probe_drained = true;
  if (probe) {
    probe->Start(start + warmup);
    probe_thread = std::thread([&] {
      asio::steady_timer stop(probe_io), drain(probe_io);
      stop.expires_at(end);
      stop.async_wait([&](const asio::error_code&) {
        probe->StopSending();
        drain.expires_after(std::chrono::seconds(10));
        drain.async_wait([&](const asio::error_code& ec) {
          if (ec) return;
          probe_drained = false;
          probe_io.stop();
        });
      });
      while (!probe_io.stopped() && !(Clock::now() > end && probe->done())) probe_io.run_one();
    });
  }
  for (auto& c : streamers) c->Start(start + warmup);
  asio::steady_timer stop_timer(io), drain_timer(io);
  stop_timer.expires_at(end);
  stop_timer.async_wait([&](const asio::error_code&) {
    for (auto& c : streamers) c->StopSending();
    drain_timer.expires_after(std::chrono::seconds(10));
    drain_timer.async_wait([&](const asio::error_code& ec) {
      if (ec) return;
      drained_in_time = false;
      io.stop();
    });
  });
  // Run until every client has all it asked for (or the drain deadline passes).
  while (!io.stopped() && !streamers.empty()) {
    io.run_one();
    if (Clock::now() > end &&
        std::all_of(streamers.begin(), streamers.end(), [](const auto& c) { return c->done(); })) {
      break;
    }
  }
  if (probe_thread.joinable()) probe_thread.join();
  drained_in_time = drained_in_time && probe_drained;
  std::vector<std::shared_ptr<BenchClient>> all = streamers;
  if (probe) all.push_back(probe);
  const double seconds = flags.seconds;

  std::uint64_t total = 0, requested = 0, received = 0;
  double sum = 0, sum_squares = 0, min_client = 1e300, max_client = 0;
  std::string errors;
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
             " bytes asked within 10 s of the end";
  }
  const double rate = static_cast<double>(total) / seconds;
  const char* latency_of = probe ? "probe (one 02 40 at a time)" : "all requests";

  if (flags.json) {
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
                     {"complete", complete}});
  } else {
    char pace[64] = "";
    if (flags.rate > 0) std::snprintf(pace, sizeof pace, ", each paced to %.0f B/s", flags.rate);
    std::printf("rngmux bench: %s, %u clients x %u requests of %u bytes in flight%s, %.1f s%s\n",
                flags.endpoint.c_str(), flags.clients, flags.depth, flags.size, pace, seconds,
                probe ? ", plus a latency probe" : "");
    std::printf("  throughput  %.1f MB/s (%llu bytes); per client %.0f..%.0f bytes, Jain %.4f\n",
                rate / 1e6, static_cast<unsigned long long>(total), min_client, max_client, jain);
    std::printf("  latency     p50 %.1f us, p99 %.1f us, p99.9 %.1f us (%zu requests, %s)\n",
                Percentile(latencies, 50), Percentile(latencies, 99), Percentile(latencies, 99.9),
                latencies.size(), latency_of);
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
  app->add_flag("--json", flags->json, "Print one JSON object");
  return Command{app, [flags] { return RunBench(*flags); }};
}

}  // namespace rngmux
