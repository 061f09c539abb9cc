#include "admin/metrics_server.h"

#include <array>
#include <asio/ip/address.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <charconv>

#include "admin/http_request.h"
#include "admin/prometheus_text.h"
#include "common/log.h"

namespace rngmux {
namespace {

std::string HttpResponse(const char* status, const char* content_type, const std::string& body,
                         bool head_only, const char* extra_header = "") {
  std::string out = std::string("HTTP/1.1 ") + status + "\r\nContent-Type: " + content_type +
                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra_header +
                    "Connection: close\r\n\r\n";
  if (!head_only) out += body;
  return out;
}

}  // namespace

Result<MetricsAddress> ParseMetricsAddress(const std::string& text) {
  const std::string prefix = "metrics address \"" + text + "\": ";
  if (text.rfind("tcp:", 0) != 0) return Status::Error(prefix + "expected tcp:HOST:PORT");
  const std::string rest = text.substr(4);
  const std::size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::Error(prefix + "expected tcp:HOST:PORT");
  }
  std::string host = rest.substr(0, colon);
  const std::string port_text = rest.substr(colon + 1);
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  asio::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec || host.empty() || (address.is_v6() != bracketed)) {
    return Status::Error(prefix + "HOST must be a numeric IP address");
  }
  unsigned port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return Status::Error(prefix + "PORT must be 0 to 65535");
  }
  return MetricsAddress{host, static_cast<std::uint16_t>(port)};
}

class MetricsServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(MetricsServer& server, asio::ip::tcp::socket socket)
      : server_(server), socket_(std::move(socket)), timer_(socket_.get_executor()) {}

  void Start() {
    auto self = shared_from_this();
    timer_.expires_after(kRequestTimeout);
    timer_.async_wait([self](const asio::error_code& ec) {
      if (ec || self->closed_) return;
      if (!self->answered_ && self->received_ > 0) {
        self->server_.counters_.metrics_bad_requests++;
        self->LogBad("no complete request within " + std::to_string(kRequestTimeout.count()) +
                     " s");
      }
      self->Close();
    });
    Read();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_both, ignored);
    socket_.close(ignored);
    timer_.cancel();
    server_.open_connections_--;
  }

 private:
  void Read() {
    auto self = shared_from_this();
    socket_.async_read_some(
        asio::buffer(buffer_), [self](const asio::error_code& ec, std::size_t n) {
          if (self->closed_) return;
          if (ec) {
            if (self->received_ > 0) {
              self->server_.counters_.metrics_bad_requests++;
              self->LogBad("connection closed before a complete request");
            }
            self->Close();
            return;
          }
          self->received_ += n;
          switch (self->parser_.Feed(std::span<const char>(self->buffer_.data(), n))) {
            case HttpRequestParser::Result::kNeedMore:
              self->Read();
              return;
            case HttpRequestParser::Result::kComplete:
              self->answered_ = true;
              self->Answer();
              return;
            case HttpRequestParser::Result::kBad:
              self->answered_ = true;
              self->server_.counters_.metrics_bad_requests++;
              self->LogBad(self->parser_.error());
              self->Reply(HttpResponse("400 Bad Request", "text/plain; charset=utf-8",
                                       self->parser_.error() + "\n", false));
              return;
          }
        });
  }

  void Answer() {
    const std::string& method = parser_.method();
    const bool head = method == "HEAD";
    if (parser_.path() != "/metrics") {
      Reply(HttpResponse("404 Not Found", "text/plain; charset=utf-8",
                         "not found; metrics are at /metrics\n", head));
    } else if (method != "GET" && !head) {
      Reply(HttpResponse("405 Method Not Allowed", "text/plain; charset=utf-8",
                         "method not allowed\n", false, "Allow: GET, HEAD\r\n"));
    } else {
      Reply(HttpResponse("200 OK", kPrometheusContentType, server_.render_(), head));
    }
  }

  void Reply(std::string reply) {
    reply_ = std::move(reply);
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(reply_), [self](const asio::error_code&, std::size_t) {
      // Half-close first, so the client reads the whole answer before the end.
      asio::error_code ignored;
      self->socket_.shutdown(asio::socket_base::shutdown_send, ignored);
      self->Close();
    });
  }

  void LogBad(const std::string& why) {
    std::uint64_t suppressed = 0;
    if (!server_.bad_log_.Allow(SteadyClock::Instance().Now(), &suppressed)) return;
    asio::error_code ec;
    const auto peer = socket_.remote_endpoint(ec);
    LOG_WARNING("metrics: closing a connection",
                ec ? std::string() : " from " + peer.address().to_string(), ": ", why,
                suppressed > 0 ? " (" + std::to_string(suppressed) + " more not logged)" : "");
  }

  MetricsServer& server_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  std::array<char, 2048> buffer_{};
  HttpRequestParser parser_;
  std::size_t received_ = 0;
  std::string reply_;
  bool answered_ = false;
  bool closed_ = false;
};

MetricsServer::MetricsServer(asio::io_context& io, Render render, ServerCounters& counters)
    : io_(io), render_(std::move(render)), counters_(counters), acceptor_(io) {}

MetricsServer::~MetricsServer() { Stop(); }

Result<std::unique_ptr<MetricsServer>> MetricsServer::Open(asio::io_context& io,
                                                           const MetricsAddress& address,
                                                           Render render,
                                                           ServerCounters& counters) {
  std::unique_ptr<MetricsServer> server(new MetricsServer(io, std::move(render), counters));
  const std::string name =
      "metrics tcp:" +
      (address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host) +
      ":" + std::to_string(address.port);
  asio::error_code ec;
  const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(address.host, ec), address.port);
  if (ec) return Status::Error(name + ": " + ec.message());
  auto& acceptor = server->acceptor_;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (ec) return Status::Error(name + ": bind: " + ec.message());
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::Error(name + ": listen: " + ec.message());
  return server;
}

std::string MetricsServer::bound_address() const {
  asio::error_code ec;
  const auto endpoint = acceptor_.local_endpoint(ec);
  if (ec) return "tcp:?";
  const std::string host = endpoint.address().to_string();
  return "tcp:" + (endpoint.address().is_v6() ? "[" + host + "]" : host) + ":" +
         std::to_string(endpoint.port());
}

void MetricsServer::Start() { Accept(); }

void MetricsServer::Accept() {
  acceptor_.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
    if (stopped_) return;
    if (ec) {
      if (ec != asio::error::operation_aborted) Accept();
      return;
    }
    if (open_connections_ >= kMaxConnections) {
      std::uint64_t suppressed = 0;
      if (full_log_.Allow(SteadyClock::Instance().Now(), &suppressed)) {
        LOG_WARNING("metrics: ", kMaxConnections, " connections open already; closing new ones");
      }
    } else {
      open_connections_++;
      auto connection = std::make_shared<Connection>(*this, std::move(socket));
      std::erase_if(connections_, [](const auto& weak) { return weak.expired(); });
      connections_.push_back(connection);
      connection->Start();
    }
    Accept();
  });
}

void MetricsServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  asio::error_code ignored;
  acceptor_.close(ignored);
  for (const auto& weak : connections_) {
    if (auto connection = weak.lock()) connection->Close();
  }
  connections_.clear();
}

}  // namespace rngmux
