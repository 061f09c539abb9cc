#pragma once

#include <asio/generic/stream_protocol.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "endpoint/endpoint_spec.h"
#include "tls/tls_context.h"

namespace rngmux {

using TlsStream = asio::ssl::stream<asio::generic::stream_protocol::socket>;

// One TLS handshake on a connected socket, on the event loop, bounded by the
// context's handshake timeout. On the server side it first peeks at the peer's
// first byte, so a plain EGD client on a TLS endpoint is told apart from a broken
// handshake ("sent plain data (0x02, an EGD request), not a TLS handshake").
//
// `done` runs once, on the socket's executor: with the stream and the peer's
// certificate (nullopt if none, or if it was not verified) on success; with a
// null stream and the reason on failure (the socket is then closed). Nothing is
// logged here: the caller knows the peer and the endpoint.
struct TlsHandshakeOutcome {
  std::unique_ptr<TlsStream> stream;  // nullptr: failed
  std::optional<PeerCertificate> certificate;
  std::string error;       // why it failed
  bool timed_out = false;  // it failed by the timeout
};
using TlsHandshakeDone = std::function<void(TlsHandshakeOutcome)>;

// A TCP endpoint's TLS context, its files read now; nullptr for a plain endpoint.
// Errors name the endpoint as its other errors do: `listen "TEXT": tls-cert FILE: ...`.
// The daemon makes one at start and at every reload, check-config to check the files.
Result<std::shared_ptr<const TlsContext>> MakeEndpointTlsContext(const EndpointSpec& endpoint);

// A handshake under way. Cancel(reason) closes its socket now: `done` then runs with
// a failure, `reason` its error (a listener or connector that stops does not wait for
// the timeout; a listener at its limit drops its oldest handshake).
class TlsHandshake {
 public:
  virtual ~TlsHandshake() = default;
  virtual void Cancel(const std::string& reason) = 0;
};

// `server_name`: client side, the name the server's certificate must carry (the
// context's tls-name= wins); ignored on the server side. The handle expires when
// the handshake is over.
std::weak_ptr<TlsHandshake> StartTlsHandshake(std::shared_ptr<const TlsContext> context,
                                              asio::generic::stream_protocol::socket socket,
                                              const std::string& server_name,
                                              TlsHandshakeDone done);

}  // namespace rngmux
