#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace rngmux {

// An IP address without a port. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a
// dual-stack socket reports for IPv4 senders) are stored as the IPv4 address they
// map, so one allow list entry covers both spellings.
struct IpAddress {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};  // IPv4 uses the first 4

  static bool FromSockaddr(const sockaddr* address, IpAddress* out);
  std::size_t bits() const { return v6 ? 128 : 32; }
  std::string ToString() const;
};

// A network: an address and how many leading bits must match.
struct IpPrefix {
  IpAddress network;
  unsigned length = 0;

  bool Contains(const IpAddress& address) const;
  // "10.0.0.0/8", "::1" (a whole address is written without its length).
  std::string ToString() const;
};

// Which senders a UDP listener answers: an explicit list of networks. There is no
// way to spell "everyone": an open UDP service that answers spoofed requests is an
// amplifier, so the parser refuses prefixes shorter than kMinPrefixLength.
class AddressFilter {
 public:
  static constexpr unsigned kMinPrefixLength = 8;
  static constexpr std::size_t kMaxEntries = 64;

  // 127.0.0.0/8 and ::1: what a listener answers unless told otherwise.
  static AddressFilter Loopback();

  // Parses "10.0.0.0/8+192.168.1.5+fd00::/8" (entries joined by '+', IPv6 bare or in
  // brackets). Errors are one phrase naming the offending entry, for the caller to
  // prefix with the endpoint:
  //   "0.0.0.0/0" is too wide: prefixes shorter than /8 would answer much of the
  //       internet (name your networks, like 10.0.0.0/8)
  //   "any" would answer every sender (an amplifier for spoofed traffic); name your
  //       networks, like 10.0.0.0/8            (also for *, all and everyone)
  //   "0.0.0.0" is the unspecified address, not "anyone"; name your networks, like 10.0.0.0/8
  //   "10.1.2.3/8" has host bits set (did you mean 10.0.0.0/8?)
  //   "10.0.0.0/33" has a bad prefix length (IPv4: 8-32)
  //   "fd00::/200" has a bad prefix length (IPv6: 8-128)
  //   "foo" is not an IP address or prefix (like 10.0.0.0/8 or fd00::/8)
  //   empty entry
  //   more than 64 entries
  static Result<AddressFilter> Parse(std::string_view list);

  bool Allows(const IpAddress& address) const;
  const std::vector<IpPrefix>& prefixes() const { return prefixes_; }
  // The list as Parse() takes it: "127.0.0.0/8+::1".
  std::string ToString() const;
  // True if every network in the list is loopback.
  bool LoopbackOnly() const;

 private:
  std::vector<IpPrefix> prefixes_;
};

}  // namespace rngmux
