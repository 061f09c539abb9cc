#include "endpoint/address_filter.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <optional>

namespace rngmux {
namespace {

std::string Quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

bool IsV4Mapped(const std::array<std::uint8_t, 16>& b) {
  for (int i = 0; i < 10; ++i) {
    if (b[i] != 0) return false;
  }
  return b[10] == 0xff && b[11] == 0xff;
}

IpAddress FromV6Bytes(const std::uint8_t* bytes) {
  IpAddress out;
  out.v6 = true;
  std::memcpy(out.bytes.data(), bytes, 16);
  if (IsV4Mapped(out.bytes)) {
    IpAddress v4;
    std::memcpy(v4.bytes.data(), bytes + 12, 4);
    return v4;
  }
  return out;
}

std::optional<IpAddress> ParseAddress(const std::string& text) {
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    IpAddress out;
    std::memcpy(out.bytes.data(), &v4, 4);
    return out;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return FromV6Bytes(v6.s6_addr);
  return std::nullopt;
}

bool HostBitsClear(const IpAddress& address, unsigned length) {
  for (std::size_t bit = length; bit < address.bits(); ++bit) {
    if (address.bytes[bit / 8] & (0x80u >> (bit % 8))) return false;
  }
  return true;
}

IpAddress Masked(IpAddress address, unsigned length) {
  for (std::size_t bit = length; bit < address.bits(); ++bit) {
    address.bytes[bit / 8] =
        static_cast<std::uint8_t>(address.bytes[bit / 8] & ~(0x80u >> (bit % 8)));
  }
  return address;
}

bool IsWordForEveryone(std::string_view entry) {
  return entry == "*" || entry == "any" || entry == "all" || entry == "everyone";
}

bool IsUnspecified(const IpAddress& address) {
  for (std::size_t i = 0; i < address.bits() / 8; ++i) {
    if (address.bytes[i] != 0) return false;
  }
  return true;
}

Result<IpPrefix> ParsePrefix(std::string_view entry) {
  const std::string kNameYourNetworks = "name your networks, like 10.0.0.0/8";
  if (entry.empty()) return Status::Error("empty entry");
  if (IsWordForEveryone(entry)) {
    return Status::Error(Quoted(entry) +
                         " would answer every sender (an amplifier for spoofed traffic); " +
                         kNameYourNetworks);
  }
  const std::size_t slash = entry.find('/');
  std::string_view address_text = entry.substr(0, slash);
  if (address_text.size() >= 2 && address_text.front() == '[' && address_text.back() == ']') {
    address_text = address_text.substr(1, address_text.size() - 2);
  }
  const std::optional<IpAddress> address = ParseAddress(std::string(address_text));
  if (!address) {
    return Status::Error(Quoted(entry) +
                         " is not an IP address or prefix (like 10.0.0.0/8 or fd00::/8)");
  }
  // An IPv4-mapped IPv6 prefix is the IPv4 prefix it maps.
  const bool mapped = !address->v6 && address_text.find(':') != std::string_view::npos;
  const unsigned offset = mapped ? 96 : 0;
  const unsigned max_length = static_cast<unsigned>(address->bits()) + offset;
  unsigned length = max_length;
  if (slash != std::string_view::npos) {
    const std::string_view digits = entry.substr(slash + 1);
    unsigned long value = 0;
    bool ok = !digits.empty() && digits.size() <= 3;
    for (char c : digits) {
      ok = ok && c >= '0' && c <= '9';
      if (ok) value = value * 10 + static_cast<unsigned long>(c - '0');
    }
    if (!ok || value > max_length || (mapped && value < offset)) {
      return Status::Error(Quoted(entry) + " has a bad prefix length (" +
                           (address->v6 || mapped ? "IPv6: 8-128" : "IPv4: 8-32") + ")");
    }
    length = static_cast<unsigned>(value);
  }
  if (IsUnspecified(*address) && length == max_length) {
    return Status::Error(Quoted(entry) + " is the unspecified address, not \"anyone\"; " +
                         kNameYourNetworks);
  }
  length -= offset;
  if (length < AddressFilter::kMinPrefixLength) {
    return Status::Error(Quoted(entry) + " is too wide: prefixes shorter than /" +
                         std::to_string(AddressFilter::kMinPrefixLength) +
                         " would answer much of the internet (" + kNameYourNetworks + ")");
  }
  if (!HostBitsClear(*address, length)) {
    return Status::Error(Quoted(entry) + " has host bits set (did you mean " +
                         (mapped ? "::ffff:" : "") + Masked(*address, length).ToString() + "/" +
                         std::to_string(length + offset) + "?)");
  }
  return IpPrefix{*address, length};
}

}  // namespace

bool IpAddress::FromSockaddr(const sockaddr* address, IpAddress* out) {
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    *out = IpAddress{};
    std::memcpy(out->bytes.data(), &in->sin_addr, 4);
    return true;
  }
  if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    *out = FromV6Bytes(in6->sin6_addr.s6_addr);
    return true;
  }
  return false;
}

std::string IpAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), text, sizeof text);
  return text;
}

bool IpPrefix::Contains(const IpAddress& address) const {
  if (address.v6 != network.v6) return false;
  return Masked(address, length).bytes == network.bytes;
}

std::string IpPrefix::ToString() const {
  if (length == network.bits()) return network.ToString();
  return network.ToString() + "/" + std::to_string(length);
}

AddressFilter AddressFilter::Loopback() {
  AddressFilter filter;
  filter.prefixes_.push_back(ParsePrefix("127.0.0.0/8").value());
  filter.prefixes_.push_back(ParsePrefix("::1").value());
  return filter;
}

Result<AddressFilter> AddressFilter::Parse(std::string_view list) {
  AddressFilter filter;
  while (true) {
    const std::size_t plus = list.find('+');
    if (filter.prefixes_.size() == kMaxEntries) {
      return Status::Error("more than " + std::to_string(kMaxEntries) + " entries");
    }
    Result<IpPrefix> prefix = ParsePrefix(list.substr(0, plus));
    if (!prefix.ok()) return prefix.status();
    filter.prefixes_.push_back(*prefix);
    if (plus == std::string_view::npos) break;
    list = list.substr(plus + 1);
  }
  return filter;
}

bool AddressFilter::Allows(const IpAddress& address) const {
  for (const IpPrefix& prefix : prefixes_) {
    if (prefix.Contains(address)) return true;
  }
  return false;
}

std::string AddressFilter::ToString() const {
  std::string out;
  for (const IpPrefix& prefix : prefixes_) {
    if (!out.empty()) out += "+";
    out += prefix.ToString();
  }
  return out;
}

bool AddressFilter::LoopbackOnly() const {
  std::array<std::uint8_t, 16> v6_loopback{};
  v6_loopback[15] = 1;
  for (const IpPrefix& prefix : prefixes_) {
    const bool loopback = prefix.network.v6
                              ? prefix.length == 128 && prefix.network.bytes == v6_loopback
                              : prefix.length >= 8 && prefix.network.bytes[0] == 127;
    if (!loopback) return false;
  }
  return true;
}

}  // namespace rngmux
