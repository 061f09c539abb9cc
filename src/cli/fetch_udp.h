#pragma once

#include <cstddef>

#include "endpoint/endpoint_spec.h"

namespace rngmux {

struct UdpFetchOptions {
  std::size_t count = 0;
  bool hex = false;
  unsigned chunk = 255;             // bytes per 02 NN request (one request per datagram)
  unsigned depth = 16;              // requests in flight
  double timeout_seconds = 30;      // for the whole fetch
  double retransmit_seconds = 0.5;  // ask again after this long without a reply
};

// `rngmux fetch udp:HOST:PORT[,local=ADDR:PORT]`: keeps `depth` 02 NN datagrams in
// flight and writes the first `count` bytes that come back. Datagrams get lost, and
// nothing in an EGD reply says which request it answers, so when no reply has come
// for a while it asks again for everything still owed (the wait doubling each time,
// up to 8 s); replies that were only late then arrive as surplus and are used or
// dropped, never written twice. Returns the exit code; failures are one line.
int RunUdpFetch(const EndpointSpec& spec, const UdpFetchOptions& options);

}  // namespace rngmux
