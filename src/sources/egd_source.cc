#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>

#include "common/number_text.h"
#include "common/secure_memory.h"
#include "sources/drivers.h"
#include "tls/tls_context.h"
#include "tls/tls_options.h"

namespace rngmux {
namespace {

// The relay asks in requests of the largest size EGD can express ("02 NN").
constexpr std::size_t kMaxEgdRequestBytes = 255;
constexpr std::uint8_t kEgdBlockingRead = 0x02;

// What an upstream serves cannot be known from here: another rngmux in front of a
// QNG passes on full-entropy bytes, a generic EGD server may pass on anything. The
// default credits 6 bits per byte, so the relay's conditioner (32 bytes out per 54
// in) keeps the downstream claim sound even if the upstream's was optimistic; an
// admin who trusts the upstream's own claim writes entropy=8 and bytes are passed
// on unchanged.
constexpr double kDefaultEgdEntropyBits = 6;

using Clock = std::chrono::steady_clock;

Status ErrnoStatus(const std::string& what, int error) { return Status::FromErrno(what, error); }

// A deadline as a poll() timeout in milliseconds, rounded up (0 once passed).
int PollTimeoutMs(Clock::time_point deadline) {
  const auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<std::int64_t>(ms, 1'000'000));
}

enum class Wait { kReady, kStopped, kTimedOut };

// Waits until `fd` has one of `events`, `stop` is triggered or `deadline` passes.
Result<Wait> WaitFor(int fd, short events, Clock::time_point deadline, const Interrupt& stop) {
  for (;;) {
    pollfd fds[2] = {{fd, events, 0}, {stop.fd(), POLLIN, 0}};
    const int ready = poll(fds, 2, PollTimeoutMs(deadline));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("poll", errno);
    }
    if (fds[1].revents != 0) return Wait::kStopped;
    if (fds[0].revents != 0) return Wait::kReady;
    if (Clock::now() >= deadline) return Wait::kTimedOut;
  }
}

}  // namespace

Result<EgdUpstream> ParseEgdUpstream(const std::string& text) {
  const auto bad = [&text](const std::string& why) {
    return Status::Error("egd upstream \"" + text + "\": " + why);
  };
  EgdUpstream upstream;
  upstream.text = text;
  if (text.starts_with("unix:")) {
    upstream.unix_socket = true;
    upstream.path = text.substr(5);
    if (upstream.path.empty()) return bad("unix: needs a socket path (unix:PATH)");
    if (upstream.path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return bad("socket path longer than " + std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                 " bytes");
    }
    return upstream;
  }
  if (!text.starts_with("tcp:")) return bad("expected tcp:HOST:PORT or unix:PATH");
  const std::string host_port = text.substr(4);
  const std::size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return bad("expected tcp:HOST:PORT");
  std::string host = host_port.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return bad("an IPv6 address needs brackets (tcp:[::1]:PORT)");
  }
  if (host.empty()) return bad("missing host (tcp:HOST:PORT)");
  const std::optional<unsigned> port = ParseNumber<unsigned>(host_port.substr(colon + 1), 1, 65535);
  if (!port) return bad("port must be 1-65535");
  upstream.host = host;
  upstream.port = static_cast<std::uint16_t>(*port);
  return upstream;
}

namespace {

// A relay: draws bytes from an upstream EGD server (another rngmux, or any EGD
// server) with pipelined "02 NN" requests, keeping `requests` of them outstanding.
//
// Exactly once: bytes are read from the socket straight into the caller's buffer,
// never more than were requested, so nothing upstream bytes are kept here between
// calls (OpenSSL cleanses its plaintext buffer after each read: CLEANSE_PLAINTEXT).
// A byte beyond what was requested is a protocol error (the upstream is not strict
// EGD, e.g. a QEMU endpoint with lead bytes): the bytes of that read are wiped and
// the connection dropped. Whatever the upstream sent that was never read is lost
// with the connection, never served.
//
// The connection is made lazily by Read, and dropped on any error; the runner backs
// off and the next Read connects again. Blocking only in poll(), beside `stop`.
class EgdSource final : public Source {
 public:
  EgdSource(std::string name, EgdUpstream upstream, CommonSourceOptions options,
            std::size_t requests, std::chrono::seconds timeout,
            std::chrono::seconds handshake_timeout, TlsOptions tls_options)
      : name_(std::move(name)),
        upstream_(std::move(upstream)),
        label_("egd:" + upstream_.text),
        options_(options),
        requests_(requests),
        timeout_(timeout),
        handshake_timeout_(handshake_timeout),
        tls_options_(std::move(tls_options)) {}
  ~EgdSource() override { Disconnect(); }

  const std::string& name() const override { return name_; }
  double claimed_entropy_bits_per_byte() const override { return options_.entropy_bits_per_byte; }
  std::size_t preferred_block_size() const override { return options_.block_size; }

  Result<std::size_t> Read(std::span<std::uint8_t> out, const Interrupt& stop) override {
    if (out.empty()) return std::size_t{0};
    if (fd_ < 0) {
      Result<bool> connected = Connect(stop);
      if (!connected.ok()) return Fail(connected.status().message());
      if (!*connected) return std::size_t{0};
    }
    TopUpRequests();
    Clock::time_point deadline = Clock::now() + timeout_;
    for (;;) {
      bool want_read = true;
      bool want_write = false;
      if (!outgoing_.empty()) {
        Result<bool> flushed = Flush(&want_read, &want_write);
        if (!flushed.ok()) return Fail(flushed.status().message());
      }
      // Everything there is now, up to `out`: fewer, larger reads (and, with TLS, whole
      // records at once) per block.
      std::size_t total = 0;
      while (total < out.size()) {
        // One byte more than owed: if it arrives, the upstream sent what nobody asked for.
        const std::span<std::uint8_t> into =
            out.subspan(total).first(std::min(out.size() - total, owed_ + 1));
        Result<std::size_t> got = Receive(into, &want_read, &want_write);
        if (!got.ok()) {
          // What came before the error is the upstream's; the next Read reports it.
          if (total > 0) return total;
          return Fail(got.status().message());
        }
        if (*got > owed_) {
          SecureWipe(out.first(total + *got));
          return Fail("upstream sent bytes that were not requested (more than the " +
                      std::to_string(requested_on_connection_) +
                      " requested on this connection; not a strict EGD server?)");
        }
        if (*got == 0) break;
        owed_ -= *got;
        received_on_connection_ += *got;
        bytes_received_ += *got;
        total += *got;
      }
      if (total > 0) return total;
      short events = 0;
      if (want_read) events |= POLLIN;
      if (want_write || (!outgoing_.empty() && !tls_options_.enabled)) events |= POLLOUT;
      Result<Wait> waited = WaitFor(fd_, events, deadline, stop);
      if (!waited.ok()) return Fail(waited.status().message());
      if (*waited == Wait::kStopped) return std::size_t{0};
      if (*waited == Wait::kTimedOut) {
        return Fail("no data for " + std::to_string(timeout_.count()) + " s");
      }
    }
  }

  std::vector<std::pair<std::string, std::string>> ExtraStats() const override {
    const std::uint64_t connects = connects_;
    return {
        {"upstream", upstream_.text},
        {"upstream_tls", tls_options_.enabled ? "yes" : "no"},
        {"upstream_connected", connected_ ? "yes" : "no"},
        {"upstream_reconnects", std::to_string(connects == 0 ? 0 : connects - 1)},
        {"upstream_bytes", std::to_string(bytes_received_.load())},
    };
  }

 private:
  // Connects (and, with TLS, shakes hands). False when stopped meanwhile.
  Result<bool> Connect(const Interrupt& stop) {
    Result<bool> opened = upstream_.unix_socket ? ConnectUnix(stop) : ConnectTcp(stop);
    if (!opened.ok() || !*opened) {
      Disconnect();
      return opened;
    }
    if (tls_options_.enabled) {
      Result<bool> shook = Handshake(stop);
      if (!shook.ok() || !*shook) {
        Disconnect();
        return shook;
      }
    }
    ++connects_;
    connected_ = true;
    return true;
  }

  Result<bool> ConnectUnix(const Interrupt& stop) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return ErrnoStatus("socket", errno);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    upstream_.path.copy(address.sun_path, sizeof address.sun_path - 1);
    return FinishConnect(reinterpret_cast<const sockaddr*>(&address), sizeof address, stop);
  }

  Result<bool> ConnectTcp(const Interrupt& stop) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(upstream_.port);
    // Name resolution blocks without regard to `stop`; IP addresses resolve at once.
    const int rc = getaddrinfo(upstream_.host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0) {
      return Status::Error("resolve " + upstream_.host + ": " +
                           (rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc)));
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, freeaddrinfo);
    Status last = Status::Error("resolve " + upstream_.host + ": no address");
    for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
      fd_ = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd_ < 0) {
        last = ErrnoStatus("socket", errno);
        continue;
      }
      Result<bool> connected = FinishConnect(a->ai_addr, a->ai_addrlen, stop);
      if (connected.ok()) {
        if (*connected) {
          // Requests are two bytes each: send them at once.
          const int one = 1;
          setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        return connected;
      }
      last = connected.status();
      CloseSocket();
    }
    return last;
  }

  Result<bool> FinishConnect(const sockaddr* address, socklen_t size, const Interrupt& stop) {
    if (connect(fd_, address, size) == 0) return true;
    if (errno != EINPROGRESS && errno != EINTR) return ErrnoStatus("connect", errno);
    Result<Wait> waited = WaitFor(fd_, POLLOUT, Clock::now() + timeout_, stop);
    if (!waited.ok()) return waited.status();
    if (*waited == Wait::kStopped) return false;
    if (*waited == Wait::kTimedOut) {
      return Status::Error("connect: no answer in " + std::to_string(timeout_.count()) + " s");
    }
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
      return ErrnoStatus("connect", errno);
    }
    if (error != 0) return ErrnoStatus("connect", error);
    return true;
  }

  Result<bool> Handshake(const Interrupt& stop) {
    // The files are read again for every connection: a renewed certificate, key or CRL
    // is used from the next connection on, without a restart or a reload.
    Result<std::shared_ptr<TlsContext>> renewed = TlsContext::Make(tls_options_, false);
    if (!renewed.ok()) return renewed.status();
    tls_ = std::move(renewed).value();
    ERR_clear_error();
    ssl_ = tls_->NewConnection(upstream_.host);
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) {
      return Status::Error("TLS: " + DescribeTlsFailure(nullptr, "cannot make a connection"));
    }
    // Whole socket reads, not a header and then a body per record; Receive always
    // asks OpenSSL before it waits on the socket, so buffered records are not missed.
    SSL_set_read_ahead(ssl_, 1);
    // Received plaintext is wiped inside OpenSSL once handed over; an upstream that
    // hangs up without close_notify has merely closed the connection.
    SSL_set_options(ssl_, SSL_OP_CLEANSE_PLAINTEXT | SSL_OP_IGNORE_UNEXPECTED_EOF);
    const Clock::time_point deadline = Clock::now() + handshake_timeout_;
    for (;;) {
      const int rc = SSL_connect(ssl_);
      if (rc == 1) return true;
      const int error = SSL_get_error(ssl_, rc);
      short events = 0;
      if (error == SSL_ERROR_WANT_READ) {
        events = POLLIN;
      } else if (error == SSL_ERROR_WANT_WRITE) {
        events = POLLOUT;
      } else {
        const int saved_errno = errno;
        std::string fallback = "upstream closed the connection";
        if (error == SSL_ERROR_SYSCALL && saved_errno != 0) fallback = std::strerror(saved_errno);
        return Status::Error("TLS handshake: " + DescribeTlsFailure(ssl_, fallback));
      }
      Result<Wait> waited = WaitFor(fd_, events, deadline, stop);
      if (!waited.ok()) return waited.status();
      if (*waited == Wait::kStopped) return false;
      if (*waited == Wait::kTimedOut) {
        return Status::Error("TLS handshake: no answer in " +
                             std::to_string(handshake_timeout_.count()) + " s");
      }
    }
  }

  // Queues requests until `requests_` of them are outstanding.
  void TopUpRequests() {
    const std::size_t outstanding = (owed_ + kMaxEgdRequestBytes - 1) / kMaxEgdRequestBytes;
    for (std::size_t i = outstanding; i < requests_; ++i) {
      outgoing_.push_back(kEgdBlockingRead);
      outgoing_.push_back(static_cast<std::uint8_t>(kMaxEgdRequestBytes));
      owed_ += kMaxEgdRequestBytes;
      requested_on_connection_ += kMaxEgdRequestBytes;
    }
  }

  // Sends what it can of the queued requests without blocking.
  Result<bool> Flush(bool* want_read, bool* want_write) {
    while (!outgoing_.empty()) {
      if (ssl_ != nullptr) {
        ERR_clear_error();
        const int n = SSL_write(ssl_, outgoing_.data(), static_cast<int>(outgoing_.size()));
        if (n > 0) {
          outgoing_.erase(outgoing_.begin(), outgoing_.begin() + n);
          continue;
        }
        const int error = SSL_get_error(ssl_, n);
        if (error == SSL_ERROR_WANT_WRITE) *want_write = true;
        if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return false;
        return TlsIoError("write", error);
      }
      const ssize_t n = send(fd_, outgoing_.data(), outgoing_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        outgoing_.erase(outgoing_.begin(), outgoing_.begin() + n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
      if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
        // The upstream hung up: what it sent before is still to be read, and the
        // read that finds the end says so.
        outgoing_.clear();
        return false;
      }
      return ErrnoStatus("send", errno);
    }
    (void)want_read;
    return true;
  }

  // Reads what is there without blocking: the count, 0 when nothing is, an error when
  // the connection is over.
  Result<std::size_t> Receive(std::span<std::uint8_t> into, bool* want_read, bool* want_write) {
    for (;;) {
      if (ssl_ != nullptr) {
        ERR_clear_error();
        const int n = SSL_read(ssl_, into.data(), static_cast<int>(into.size()));
        if (n > 0) return static_cast<std::size_t>(n);
        const int error = SSL_get_error(ssl_, n);
        if (error == SSL_ERROR_WANT_READ) return std::size_t{0};
        if (error == SSL_ERROR_WANT_WRITE) {
          *want_write = true;
          return std::size_t{0};
        }
        if (error == SSL_ERROR_ZERO_RETURN) return Closed();
        return TlsIoError("read", error);
      }
      const ssize_t n = recv(fd_, into.data(), into.size(), MSG_DONTWAIT);
      if (n > 0) return static_cast<std::size_t>(n);
      if (n == 0) return Closed();
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        *want_read = true;
        return std::size_t{0};
      }
      if (errno == ECONNRESET) return Closed();
      return ErrnoStatus("recv", errno);
    }
  }

  Status Closed() const {
    if (received_on_connection_ == 0 && tls_options_.enabled) {
      // A TLS 1.3 server checks the client's certificate after the client has
      // finished its handshake: a refusal shows up here, as a hang-up.
      return Status::Error(
          "upstream closed the connection before sending anything (did it refuse this relay's "
          "certificate?)");
    }
    return Status::Error("upstream closed the connection");
  }

  Status TlsIoError(const char* what, int error) const {
    if (error == SSL_ERROR_SYSCALL && errno != 0) {
      return ErrnoStatus(std::string("TLS ") + what, errno);
    }
    return Status::Error(std::string("TLS ") + what + ": " +
                         DescribeTlsFailure(nullptr, "upstream closed the connection"));
  }

  // Drops the connection and names the upstream in the error.
  Status Fail(const std::string& message) {
    Disconnect();
    return Status::Error(label_ + ": " + message);
  }

  void Disconnect() {
    if (ssl_ != nullptr) {
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
    CloseSocket();
    outgoing_.clear();
    owed_ = 0;
    requested_on_connection_ = 0;
    received_on_connection_ = 0;
    connected_ = false;
  }

  void CloseSocket() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  const std::string name_;
  const EgdUpstream upstream_;
  const std::string label_;  // "egd:tcp:10.0.0.1:7000", the prefix of every error
  const CommonSourceOptions options_;
  const std::size_t requests_;
  const std::chrono::seconds timeout_;
  const std::chrono::seconds handshake_timeout_;
  const TlsOptions tls_options_;           // enabled == false: plain EGD
  std::shared_ptr<const TlsContext> tls_;  // Read's thread only: the connection's context

  // The connection: Read's thread only.
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  std::vector<std::uint8_t> outgoing_;  // requests not yet sent
  std::size_t owed_ = 0;                // bytes requested and not yet received
  std::uint64_t requested_on_connection_ = 0;
  std::uint64_t received_on_connection_ = 0;

  // For ExtraStats, from any thread.
  std::atomic<bool> connected_{false};
  std::atomic<std::uint64_t> connects_{0};
  std::atomic<std::uint64_t> bytes_received_{0};
};

}  // namespace

Result<std::unique_ptr<Source>> CreateEgdSource(const SourceSpec& spec,
                                                const SourceFactoryContext& /*context*/) {
  Result<CommonSourceOptions> options =
      ParseCommonSourceOptions(spec, kDefaultEgdEntropyBits, kDefaultBlockBytes, EgdOptionNames());
  if (!options.ok()) return options.status();
  Result<EgdUpstream> upstream = ParseEgdUpstream(spec.argument);
  if (!upstream.ok()) return SourceSpecError(spec, upstream.status().message());

  std::size_t requests = kDefaultEgdRequests;
  if (const auto it = spec.options.find("requests"); it != spec.options.end()) {
    const std::optional<std::size_t> n = ParseNumber<std::size_t>(it->second, 1, kMaxEgdRequests);
    if (!n) {
      return SourceSpecError(spec, "requests must be 1-" + std::to_string(kMaxEgdRequests) +
                                       ", got \"" + it->second + "\"");
    }
    requests = *n;
  }
  std::chrono::seconds timeout{kDefaultEgdTimeoutSeconds};
  if (const auto it = spec.options.find("timeout"); it != spec.options.end()) {
    const std::optional<unsigned> seconds =
        ParseNumber<unsigned>(it->second, 1, kMaxEgdTimeoutSeconds);
    if (!seconds) {
      return SourceSpecError(spec, "timeout must be 1-" + std::to_string(kMaxEgdTimeoutSeconds) +
                                       " seconds, got \"" + it->second + "\"");
    }
    timeout = std::chrono::seconds(*seconds);
  }

  TlsOptions tls_options;
  for (const auto& [key, value] : spec.options) {
    if (!IsTlsOptionKey(key)) continue;
    // "tls" alone (kept as an empty value by ParseSourceSpec), or tls=on|off as a
    // configuration file's boolean writes it.
    if (key == "tls" && value == "off") continue;
    const bool switch_on = key == "tls" && (value.empty() || value == "on");
    if (key == "tls" && !switch_on) {
      return SourceSpecError(spec, "tls takes no value, or on|off, got \"" + value + "\"");
    }
    Status parsed = ParseTlsOption(tls_options, key, switch_on ? "" : value, !switch_on, false);
    if (!parsed.ok()) return SourceSpecError(spec, parsed.message());
  }
  std::chrono::seconds handshake_timeout = timeout;
  if (tls_options.enabled) {
    if (upstream->unix_socket) return SourceSpecError(spec, "TLS options need a tcp: upstream");
    // The files are read here once, so bad ones fail at start; each connection reads
    // them again.
    Result<std::shared_ptr<TlsContext>> made = TlsContext::Make(tls_options, /*server=*/false);
    if (!made.ok()) return SourceSpecError(spec, made.status().message());
    if (spec.options.contains("tls-timeout")) handshake_timeout = tls_options.handshake_timeout;
  }
  return std::unique_ptr<Source>(std::make_unique<EgdSource>(spec.text, *upstream, *options,
                                                             requests, timeout, handshake_timeout,
                                                             std::move(tls_options)));
}

const std::set<std::string>& EgdOptionNames() {
  static const std::set<std::string> names = {"requests",   "timeout", "tls",      "tls-dir",
                                              "tls-cert",   "tls-key", "tls-ca",   "tls-crl",
                                              "tls-verify", "tls-min", "tls-name", "tls-timeout"};
  return names;
}

}  // namespace rngmux
