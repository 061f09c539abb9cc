#include "admin/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/accept_failure.h"
#include "common/log.h"

namespace rngmux {
namespace {

// True when something accepts connections on the unix socket at `path`.
bool SomeoneListens(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof address.sun_path - 1);
  const bool listening =
      connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  close(fd);
  return listening;
}

Status PreparePath(const std::string& path) {
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::Error("control socket \"" + path + "\": path must be 1 to " +
                         std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes");
  }
  namespace fs = std::filesystem;
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty() && !fs::exists(parent, ec)) {
    fs::create_directories(parent, ec);
    if (ec)
      return Status::Error("control socket " + path + ": mkdir " + parent.string() + ": " +
                           ec.message());
    fs::permissions(parent, fs::perms(0755), ec);
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno("control socket " + path + ": stat", errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Status::Error("control socket " + path + ": exists and is not a socket");
  }
  if (SomeoneListens(path)) {
    return Status::Error("control socket " + path +
                         ": another daemon is using it (give --control another path)");
  }
  if (unlink(path.c_str()) != 0) {
    return Status::FromErrno("control socket " + path + ": remove stale socket", errno);
  }
  return Status::Ok();
}

std::string ErrorReply(const std::string& error) {
  nlohmann::ordered_json reply;
  reply["ok"] = false;
  reply["error"] = error;
  return reply.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace

std::string ControlServer::Answer(const Parser& parser) {
  return handler_(parser.command()) + "\n";
}

std::string ControlServer::Refuse(const Parser& parser) {
  return ErrorReply(parser.error()) + "\n";
}

void ControlServer::Bad(const std::string& why, const Socket&) {
  counters_.control_bad_requests++;
  std::uint64_t suppressed = 0;
  if (!bad_log_.Allow(SteadyClock::Instance().Now(), &suppressed)) return;
  LOG_WARNING("control socket: closing a connection: ", why,
              suppressed > 0 ? " (" + std::to_string(suppressed) + " more not logged)" : "");
}

ControlServer::ControlServer(asio::io_context& io, std::string path, Handler handler,
                             ServerCounters& counters)
    : io_(io),
      path_(std::move(path)),
      handler_(std::move(handler)),
      counters_(counters),
      acceptor_(io),
      retry_(io, counters_.accept_failures) {}

ControlServer::~ControlServer() { Stop(); }

Result<std::unique_ptr<ControlServer>> ControlServer::Open(asio::io_context& io,
                                                           const std::string& path, Handler handler,
                                                           ServerCounters& counters) {
  if (Status prepared = PreparePath(path); !prepared.ok()) return prepared;
  std::unique_ptr<ControlServer> server(new ControlServer(io, path, std::move(handler), counters));
  asio::error_code ec;
  server->acceptor_.open(asio::local::stream_protocol(), ec);
  if (!ec) {
    // Created 0600 from the start (Open runs before any other thread does): there is
    // no moment at which others could connect.
    const mode_t old_mask = umask(0177);
    server->acceptor_.bind(asio::local::stream_protocol::endpoint(path), ec);
    umask(old_mask);
  }
  if (ec) return Status::Error("control socket " + path + ": bind: " + ec.message());
  server->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    unlink(path.c_str());
    return Status::Error("control socket " + path + ": listen: " + ec.message());
  }
  if (chmod(path.c_str(), 0600) != 0) {
    const int err = errno;
    unlink(path.c_str());
    return Status::FromErrno("control socket " + path + ": chmod", err);
  }
  return server;
}

void ControlServer::Start() { Accept(); }

bool ControlServer::Admits(unsigned uid) const { return uid == 0 || uid == geteuid(); }

void ControlServer::Accept() {
  acceptor_.async_accept([this](const asio::error_code& ec,
                                asio::local::stream_protocol::socket socket) {
    if (stopped_) return;
    if (ec) {
      if (ec != asio::error::operation_aborted) RetryLater(ec.message());
      return;
    }
    ucred credentials{};
    socklen_t length = sizeof credentials;
    const bool known =
        getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0;
    if (!known || !Admits(credentials.uid)) {
      counters_.control_refused_peers++;
      std::uint64_t suppressed = 0;
      if (refused_log_.Allow(SteadyClock::Instance().Now(), &suppressed)) {
        LOG_WARNING("control socket: refused ",
                    known ? "uid " + std::to_string(credentials.uid) + " (pid " +
                                std::to_string(credentials.pid) + ")"
                          : std::string("a peer without credentials"),
                    ": only root and uid ", geteuid(), " may use it",
                    suppressed > 0 ? " (" + std::to_string(suppressed) + " more not logged)" : "");
      }
    } else if (connections_.open() >= kMaxConnections) {
      counters_.control_busy_refusals++;
      std::uint64_t suppressed = 0;
      if (busy_log_.Allow(SteadyClock::Instance().Now(), &suppressed)) {
        LOG_WARNING("control socket: ", kMaxConnections,
                    " connections open already; closing a new one",
                    suppressed > 0 ? " (" + std::to_string(suppressed) + " more not logged)" : "");
      }
    } else {
      connections_.Serve(*this, std::move(socket));
    }
    Accept();
  });
}

void ControlServer::RetryLater(const std::string& error) {
  retry_.After("control socket " + path_, error, [this] {
    if (!stopped_) Accept();
  });
}

void ControlServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  retry_.Cancel();
  asio::error_code ignored;
  acceptor_.close(ignored);
  connections_.CloseAll();
  unlink(path_.c_str());
}

}  // namespace rngmux
