#include "transport/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <cerrno>
#include <cstring>

#include "common/accept_failure.h"
#include "common/log.h"
#include "transport/socket_util.h"
#include "vhost/peer_identity.h"

namespace rngmux {
namespace {

// Connections accepted per readiness event before yielding to other handlers.
constexpr int kAcceptsPerTurn = 16;

// Decides what to do with a file already at a unix socket path: a socket nobody
// answers on is stale and is removed; anything else is the user's to resolve.
Status ClearStaleUnixSocket(const EndpointSpec& spec) {
  struct stat st {};
  if (lstat(spec.path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno("listen \"" + spec.text + "\": " + spec.path, errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Status::Error("listen \"" + spec.text + "\": " + spec.path +
                         " exists and is not a socket");
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("socket", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, spec.path.c_str(), sizeof addr.sun_path - 1);
  const int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  close(fd);
  if (rc == 0) {
    return Status::Error("listen \"" + spec.text + "\": another server is listening on " +
                         spec.path);
  }
  if (err != ECONNREFUSED && err != ENOENT) {
    return Status::FromErrno("listen \"" + spec.text + "\": probing " + spec.path, err);
  }
  if (unlink(spec.path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno("listen \"" + spec.text + "\": removing stale " + spec.path, errno);
  }
  LOG_INFO("removed stale socket file ", spec.path);
  return Status::Ok();
}

}  // namespace

Listener::Listener(asio::io_context& io, const EndpointSpec& spec, SessionHost& host)
    : spec_(spec), host_(host), acceptor_(io), retry_(io, host.accept_failures()) {}

Listener::~Listener() { Stop(); }

Result<std::unique_ptr<Listener>> Listener::Open(asio::io_context& io, const EndpointSpec& spec,
                                                 SessionHost& host) {
  std::unique_ptr<Listener> listener(new Listener(io, spec, host));
  const std::string prefix = "listen \"" + spec.text + "\": ";
  asio::error_code ec;
  asio::generic::stream_protocol::endpoint endpoint;
  if (spec.transport == TransportKind::kTcp) {
    asio::ip::tcp::resolver resolver(io);
    auto results = resolver.resolve(spec.host, std::to_string(spec.port),
                                    asio::ip::tcp::resolver::passive, ec);
    if (ec || results.empty()) {
      return Status::Error(prefix + "cannot resolve " + spec.host + ": " +
                           (ec ? ec.message() : "no addresses"));
    }
    endpoint = results.begin()->endpoint();
  } else {
    Status stale = ClearStaleUnixSocket(spec);
    if (!stale.ok()) return stale;
    endpoint = asio::local::stream_protocol::endpoint(spec.path);
  }

  Acceptor& acceptor = listener->acceptor_;
  ec = OpenCloseOnExec(acceptor, endpoint.protocol());
  if (ec) return Status::Error(prefix + "socket: " + ec.message());
  if (spec.transport == TransportKind::kTcp) {
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  // The socket file gets its final mode at creation (bind applies the umask), so it
  // is never briefly wider, and no chmod by path afterwards could follow a symlink
  // put there in between.
  const mode_t old_umask =
      spec.unix_mode ? umask(static_cast<mode_t>(0777 & ~*spec.unix_mode)) : umask(0);
  if (!spec.unix_mode) umask(old_umask);
  acceptor.bind(endpoint, ec);
  if (spec.unix_mode) umask(old_umask);
  if (ec) return Status::Error(prefix + "bind: " + ec.message());
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::Error(prefix + "listen: " + ec.message());
  if (spec.transport == TransportKind::kTcp) {
    listener->spec_.port = LocalPort(acceptor.native_handle());
  }
  listener->bound_address_ = listener->spec_.Address();
  if (IsUnixSocketEndpoint(spec)) {
    struct stat st {};
    if (lstat(spec.path.c_str(), &st) == 0) {
      listener->socket_file_device_ = st.st_dev;
      listener->socket_file_inode_ = st.st_ino;
    }
  }
  return listener;
}

Result<std::unique_ptr<Listener>> Listener::Adopt(asio::io_context& io, const EndpointSpec& spec,
                                                  SessionHost& host, int fd) {
  std::unique_ptr<Listener> listener(new Listener(io, spec, host));
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) {
    const int err = errno;
    close(fd);
    return Status::FromErrno("listen \"" + spec.text + "\": passed socket", err);
  }
  const int protocol = local.ss_family == AF_UNIX ? 0 : IPPROTO_TCP;
  asio::error_code ec;
  listener->acceptor_.assign(asio::generic::stream_protocol(local.ss_family, protocol), fd, ec);
  if (ec) {
    close(fd);
    return Status::Error("listen \"" + spec.text + "\": passed socket: " + ec.message());
  }
  listener->bound_address_ = listener->spec_.Address();
  return listener;
}

void Listener::Start() {
  stopped_ = false;
  Accept();
}

void Listener::UpdateSpec(const EndpointSpec& spec) {
  const std::uint16_t bound_port = spec_.port;
  spec_ = spec;
  spec_.port = bound_port;
}

void Listener::Stop() {
  if (stopped_ && !acceptor_.is_open()) return;
  stopped_ = true;
  asio::error_code ignored;
  retry_.Cancel();
  // Handshakes under way end now, not at their timeout (a shutdown waits for them).
  for (const auto& handshake : pending_handshakes_) {
    if (auto h = handshake.lock()) h->Cancel("the endpoint stopped");
  }
  pending_handshakes_.clear();
  if (acceptor_.is_open()) {
    acceptor_.close(ignored);
    struct stat st {};
    if (IsUnixSocketEndpoint(spec_) && lstat(spec_.path.c_str(), &st) == 0 &&
        st.st_dev == socket_file_device_ && st.st_ino == socket_file_inode_) {
      unlink(spec_.path.c_str());
    }
  }
}

void Listener::Accept() {
  // accept4() rather than asio's accept: the new socket must be close-on-exec from
  // its first instant (a QNG worker may be spawned at any time on another thread).
  acceptor_.async_wait(asio::socket_base::wait_read, [this](const asio::error_code& ec) {
    if (stopped_ || ec == asio::error::operation_aborted) return;
    if (!ec) {
      for (int i = 0; i < kAcceptsPerTurn && !stopped_; ++i) {
        const int fd =
            accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EINTR) {
            break;
          }
          return RetryLater(std::strerror(errno));
        }
        Welcome(fd);
      }
      if (!stopped_) Accept();
      return;
    }
    RetryLater(ec.message());
  });
}

void Listener::RetryLater(const std::string& error) {
  // EMFILE and friends: say so, and try again shortly instead of spinning.
  retry_.After(bound_address_, error, [this] {
    if (!stopped_) Accept();
  });
}

void Listener::Welcome(int fd) {
  const bool unix_socket =
      spec_.transport == TransportKind::kUnix || spec_.transport == TransportKind::kVhostUser;
  ClientIdentity identity = IdentifyStreamPeer(fd, unix_socket);
  if (!unix_socket && identity.address.empty()) {
    // Reset before it was accepted (no peer address): nobody to serve, and nobody to
    // count as denied either; that counter is for clients the allow list turned away.
    LOG_DEBUG("accept on ", bound_address_, ": the peer had gone already");
    close(fd);
    return;
  }
  if (host_.Refuse(spec_, identity)) {
    close(fd);
    return;
  }
  Session::Socket socket(acceptor_.get_executor());
  asio::error_code ec;
  socket.assign(acceptor_.local_endpoint(ec).protocol(), fd, ec);
  if (ec) {
    close(fd);
    LOG_WARNING("accept on ", bound_address_, ": ", ec.message());
    return;
  }
  if (spec_.transport == TransportKind::kVhostUser) {
    std::string peer = DescribeUnixPeer(socket.native_handle(), spec_.Address());
    LOG_INFO("vhost-user device ", peer, ": connected");
    host_.AdoptVhostUser(std::move(socket), spec_, std::move(peer), std::move(identity), nullptr);
    return;
  }
  ConfigureStreamSocket(socket);
  std::string peer = unix_socket ? spec_.Address() + "#" + std::to_string(fd)
                                 : DescribePeer(socket.native_handle());
  if (tls_) return StartHandshake(std::move(socket), std::move(peer), std::move(identity));
  host_.Adopt(std::move(socket), spec_, std::move(peer), std::move(identity), nullptr);
}

void Listener::StartHandshake(Session::Socket socket, std::string peer, ClientIdentity identity) {
  std::erase_if(pending_handshakes_, [](const auto& h) { return h.expired(); });
  if (pending_handshakes_.size() >= kMaxHandshakes) {
    // At the limit the oldest handshake gives way: a flood of stalled connections
    // cannot keep a real client out (a real handshake takes milliseconds).
    if (auto oldest = pending_handshakes_.front().lock()) {
      oldest->Cancel("closed to make room: " + std::to_string(kMaxHandshakes) +
                     " TLS handshakes were under way on this endpoint, this the oldest");
    }
    pending_handshakes_.erase(pending_handshakes_.begin());
  }
  pending_handshakes_.push_back(
      StartTlsHandshake(tls_, std::move(socket), "",
                        [this, alive = std::weak_ptr<char>(alive_), peer = std::move(peer),
                         identity = std::move(identity)](TlsHandshakeOutcome outcome) mutable {
                          // Retired by a reload, or stopped: the stream closes with it.
                          if (alive.expired() || stopped_) return;
                          host_.TlsHandshakeFinished(spec_, identity, peer, outcome);
                          if (!outcome.stream) return;
                          AddCertificate(identity, outcome.certificate);
                          if (host_.Refuse(spec_, identity))
                            return;  // allow-subject=; the stream closes
                          host_.Adopt(Session::Transport(std::move(outcome.stream)), spec_,
                                      std::move(peer), std::move(identity), nullptr);
                        }));
}

}  // namespace rngmux
