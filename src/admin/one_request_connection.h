#pragma once

#include <array>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace rngmux {

// One connection of an administrative endpoint (the control socket, the metrics
// endpoint): it carries one request, gets one answer and is closed; a timer bounds all
// of it. What differs between endpoints is the Host:
//
//   using Socket = ...;           // an asio stream socket
//   using Parser = ...;           // Feed(span<const char>) -> Parser::Result
//                                 //   {kNeedMore, kComplete, kBad}; error()
//   static constexpr std::size_t kReadBytes;           // read buffer size
//   static constexpr std::chrono::seconds kRequestTimeout;
//   static constexpr bool kSilenceIsBad;  // a peer that sends nothing counts as bad
//   std::string Answer(const Parser&);    // the reply to a complete request
//   std::string Refuse(const Parser&);    // the reply to a malformed one
//   void Bad(const std::string& why, const Socket&);   // count and log a bad request
//
// Replies are sent whole, the sending side is shut first (the peer reads the whole
// reply before the end), then the socket is closed. Event-loop thread only.
template <typename Host>
class OneRequestConnection : public std::enable_shared_from_this<OneRequestConnection<Host>> {
 public:
  using Socket = typename Host::Socket;
  using Parser = typename Host::Parser;

  // `open` counts the host's open connections: one more now, one less at Close().
  OneRequestConnection(Host& host, Socket socket, std::size_t& open)
      : host_(host), socket_(std::move(socket)), timer_(socket_.get_executor()), open_(open) {
    open_++;
  }

  void Start() {
    auto self = this->shared_from_this();
    timer_.expires_after(Host::kRequestTimeout);
    timer_.async_wait([self](const std::error_code& ec) {
      if (ec || self->closed_) return;
      if (!self->answered_ && (Host::kSilenceIsBad || self->received_ > 0)) {
        self->host_.Bad(
            "no complete request within " + std::to_string(Host::kRequestTimeout.count()) + " s",
            self->socket_);
      }
      self->Close();
    });
    Read();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    std::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_both, ignored);
    socket_.close(ignored);
    timer_.cancel();
    open_--;
  }

 private:
  void Read() {
    auto self = this->shared_from_this();
    socket_.async_read_some(
        asio::buffer(buffer_), [self](const std::error_code& ec, std::size_t n) {
          if (self->closed_) return;
          if (ec) {
            // A peer that leaves before a whole request: bad only if it sent something.
            if (self->received_ > 0) {
              self->host_.Bad("connection closed before a complete request", self->socket_);
            }
            self->Close();
            return;
          }
          self->received_ += n;
          switch (self->parser_.Feed(std::span<const char>(self->buffer_.data(), n))) {
            case Parser::Result::kNeedMore:
              self->Read();
              return;
            case Parser::Result::kComplete:
              self->answered_ = true;
              self->Reply(self->host_.Answer(self->parser_));
              return;
            case Parser::Result::kBad:
              self->answered_ = true;
              self->host_.Bad(self->parser_.error(), self->socket_);
              self->Reply(self->host_.Refuse(self->parser_));
              return;
          }
        });
  }

  void Reply(std::string reply) {
    reply_ = std::move(reply);
    auto self = this->shared_from_this();
    asio::async_write(socket_, asio::buffer(reply_), [self](const std::error_code&, std::size_t) {
      std::error_code ignored;
      self->socket_.shutdown(asio::socket_base::shutdown_send, ignored);
      self->Close();
    });
  }

  Host& host_;
  Socket socket_;
  asio::steady_timer timer_;
  std::size_t& open_;
  std::array<char, Host::kReadBytes> buffer_{};
  Parser parser_;
  std::size_t received_ = 0;
  std::string reply_;
  bool answered_ = false;
  bool closed_ = false;
};

// The connections of one administrative endpoint: how many are open, and a way to
// close them all when the endpoint stops.
template <typename Host>
class OneRequestConnections {
 public:
  using Connection = OneRequestConnection<Host>;

  std::size_t open() const { return open_; }

  // Starts serving `socket`.
  void Serve(Host& host, typename Host::Socket socket) {
    auto connection = std::make_shared<Connection>(host, std::move(socket), open_);
    std::erase_if(connections_, [](const auto& weak) { return weak.expired(); });
    connections_.push_back(connection);
    connection->Start();
  }

  void CloseAll() {
    for (const auto& weak : connections_) {
      if (auto connection = weak.lock()) connection->Close();
    }
    connections_.clear();
  }

 private:
  std::size_t open_ = 0;
  std::vector<std::weak_ptr<Connection>> connections_;
};

}  // namespace rngmux
