#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "protocol/egd_parser.h"

namespace rngmux {

// Most bytes of one datagram rngmux reads or sends over UDP. QEMU reads at most
// this much of a datagram (and drops the rest), and it also caps what one request
// datagram may ask for, so that a request never turns into more than one full
// reply datagram's worth of bytes.
inline constexpr std::size_t kMaxEgdDatagramBytes = 4096;

// The most bytes the reply to `request` can take: 4 for 00, 1 + NN for 01, NN for
// 02, none for 03, `pid_reply_bytes` (length byte + digits) for 04.
std::size_t MaxEgdReplyBytes(const EgdRequest& request, std::size_t pid_reply_bytes);

// One request datagram, parsed as a whole.
struct EgdDatagram {
  enum class Outcome {
    kRequests,     // `requests` (at least one), in order
    kEmpty,        // no bytes at all: nothing to answer, not an error
    kTooLong,      // more than kMaxEgdDatagramBytes
    kBadCommand,   // `bad_byte` is not an EGD command
    kIncomplete,   // ends inside a request (requests never span datagrams)
    kAsksTooMuch,  // replies could exceed kMaxEgdDatagramBytes (`reply_bytes`)
  };
  Outcome outcome = Outcome::kEmpty;
  std::vector<EgdRequest> requests;
  // Upper bound of the replies' bytes together: what a rate limit must charge.
  std::size_t reply_bytes = 0;
  std::uint8_t bad_byte = 0;

  bool ok() const { return outcome == Outcome::kRequests; }
  // For logs, when !ok(): "unknown EGD command 0x16", "incomplete EGD request", ...
  std::string Problem() const;
};

// Parses one datagram's payload. Each datagram must carry whole requests: over UDP
// there is no stream in which the rest of a request could follow. Does no I/O.
EgdDatagram ParseEgdDatagram(std::span<const std::uint8_t> payload, std::size_t pid_reply_bytes);

}  // namespace rngmux
