#include "admin/metrics_server.h"

#include <asio/ip/address.hpp>
#include <charconv>

#include "admin/prometheus_text.h"
#include "common/accept_failure.h"
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

std::string MetricsServer::Answer(const Parser& parser) {
  const std::string& method = parser.method();
  const bool head = method == "HEAD";
  if (parser.path() != "/metrics") {
    return HttpResponse("404 Not Found", "text/plain; charset=utf-8",
                        "not found; metrics are at /metrics\n", head);
  }
  if (method != "GET" && !head) {
    return HttpResponse("405 Method Not Allowed", "text/plain; charset=utf-8",
                        "method not allowed\n", false, "Allow: GET, HEAD\r\n");
  }
  return HttpResponse("200 OK", kPrometheusContentType, render_(), head);
}

std::string MetricsServer::Refuse(const Parser& parser) {
  return HttpResponse("400 Bad Request", "text/plain; charset=utf-8", parser.error() + "\n", false);
}

void MetricsServer::Bad(const std::string& why, const Socket& socket) {
  counters_.metrics_bad_requests++;
  std::uint64_t suppressed = 0;
  if (!bad_log_.Allow(SteadyClock::Instance().Now(), &suppressed)) return;
  asio::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  LOG_WARNING("metrics: closing a connection",
              ec ? std::string() : " from " + peer.address().to_string(), ": ", why,
              suppressed > 0 ? " (" + std::to_string(suppressed) + " more not logged)" : "");
}

MetricsServer::MetricsServer(asio::io_context& io, Render render, ServerCounters& counters)
    : io_(io),
      render_(std::move(render)),
      counters_(counters),
      acceptor_(io),
      retry_(io, counters_.accept_failures) {}

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
      if (ec != asio::error::operation_aborted) RetryLater(ec.message());
      return;
    }
    if (connections_.open() >= kMaxConnections) {
      counters_.metrics_busy_refusals++;
      std::uint64_t suppressed = 0;
      if (full_log_.Allow(SteadyClock::Instance().Now(), &suppressed)) {
        LOG_WARNING("metrics: ", kMaxConnections, " connections open already; closing new ones",
                    suppressed > 0 ? " (" + std::to_string(suppressed) + " more not logged)" : "");
      }
    } else {
      connections_.Serve(*this, std::move(socket));
    }
    Accept();
  });
}

void MetricsServer::RetryLater(const std::string& error) {
  retry_.After("metrics " + bound_address(), error, [this] {
    if (!stopped_) Accept();
  });
}

void MetricsServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  retry_.Cancel();
  asio::error_code ignored;
  acceptor_.close(ignored);
  connections_.CloseAll();
}

}  // namespace rngmux
