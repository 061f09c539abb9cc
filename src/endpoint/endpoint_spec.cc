#include "endpoint/endpoint_spec.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <cstdio>
#include <string_view>
#include <vector>

#include "common/number_text.h"
#include "common/option_list.h"

namespace rngmux {
namespace {

// sun_path holds the path and its terminating NUL.
constexpr std::size_t kMaxUnixPathBytes = sizeof(sockaddr_un::sun_path) - 1;
constexpr unsigned kMaxUnixMode = 0777;
constexpr std::uint64_t kDefaultStreamBurstBytes = 64 * 1024;

const char* RoleName(EndpointRole role) {
  return role == EndpointRole::kListen ? "listen" : "connect";
}

std::string Quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

bool IsIpv4Literal(const std::string& host) {
  in_addr addr{};
  return inet_pton(AF_INET, host.c_str(), &addr) == 1;
}

bool IsIpv6Literal(const std::string& host) {
  in6_addr addr{};
  return inet_pton(AF_INET6, host.c_str(), &addr) == 1;
}

// Decimal digits no larger than `max`; no sign, no spaces.
std::optional<unsigned long> ParseDecimal(std::string_view text, unsigned long max) {
  return ParseNumber<unsigned long>(text, 0, max);
}

std::optional<unsigned> ParseOctalMode(std::string_view text) {
  return ParseNumber<unsigned>(text, 0, kMaxUnixMode, 8);
}

// A host name as a resolver would take it: letters, digits, '-', '_' and '.'.
bool IsPlausibleHostName(std::string_view host) {
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

bool LooksLikeIpv4(std::string_view host) {
  for (char c : host) {
    if ((c < '0' || c > '9') && c != '.') return false;
  }
  return true;
}

class SpecParser {
 public:
  SpecParser(EndpointRole role, const std::string& text) : role_(role), text_(text) {}

  Result<EndpointSpec> Parse() {
    spec_.role = role_;
    spec_.text = text_;
    // inet_pton and the socket calls would stop at a NUL ("::1\0junk" as "::1").
    if (HasNulByte(text_)) return Error(std::string(kNulByteProblem));
    const std::string_view all = text_;
    const std::size_t comma = all.find(',');
    const std::string_view address = all.substr(0, comma);
    const std::size_t colon = address.find(':');
    if (colon == std::string_view::npos) {
      return Error("expected tcp:HOST:PORT, udp:HOST:PORT or unix:PATH");
    }
    const std::string_view transport = address.substr(0, colon);
    const std::string_view rest = address.substr(colon + 1);
    Status status;
    if (transport == "tcp") {
      spec_.transport = TransportKind::kTcp;
      status = ParseInet(rest);
    } else if (transport == "udp") {
      spec_.transport = TransportKind::kUdp;
      status = ParseInet(rest);
    } else if (transport == "unix") {
      spec_.transport = TransportKind::kUnix;
      status = ParseUnix(rest);
    } else if (transport == "vhost-user") {
      spec_.transport = TransportKind::kVhostUser;
      status = ParseUnix(rest);
    } else {
      return Error("unknown transport " + Quoted(transport) +
                   " (expected tcp, unix, udp or vhost-user)");
    }
    if (!status.ok()) return status;
    if (comma != std::string_view::npos) {
      status = ParseOptions(all.substr(comma + 1));
      if (!status.ok()) return status;
    }
    return spec_;
  }

 private:
  Status Error(const std::string& problem) const {
    return Status::Error(std::string(RoleName(role_)) + " " + Quoted(text_) + ": " + problem);
  }

  bool udp() const { return spec_.transport == TransportKind::kUdp; }
  bool listen() const { return role_ == EndpointRole::kListen; }

  Status ParseInet(std::string_view rest) {
    const std::string name = udp() ? "udp" : "tcp";
    const std::string expected = "expected " + name + ":HOST:PORT";
    std::string_view host;
    std::string_view port;
    if (!rest.empty() && rest.front() == '[') {
      const std::size_t close = rest.find(']');
      if (close == std::string_view::npos) return Error("missing \"]\" in IPv6 address");
      host = rest.substr(1, close - 1);
      const std::string_view after = rest.substr(close + 1);
      if (after.empty() || after.front() != ':') return Error(expected);
      port = after.substr(1);
      if (host.empty() || port.empty()) return Error(expected);
      if (!IsIpv6Literal(std::string(host))) {
        return Error(Quoted(host) + " is not an IPv6 address");
      }
    } else {
      const std::size_t colon = rest.rfind(':');
      if (colon == std::string_view::npos) return Error(expected);
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
      if (host.empty() || port.empty()) return Error(expected);
      if (host.find(':') != std::string_view::npos) {
        return Error("IPv6 addresses need brackets, like " + name + ":[::1]:PORT");
      }
      if (LooksLikeIpv4(host) && !IsIpv4Literal(std::string(host))) {
        return Error(Quoted(host) + " is not an IPv4 address");
      }
      if (!IsPlausibleHostName(host)) return Error("invalid host name " + Quoted(host));
    }
    const std::optional<unsigned long> number = ParseDecimal(port, 65535);
    if (!number || (*number == 0 && role_ == EndpointRole::kConnect)) {
      return Error("port must be 1-65535 (0 = any free port, listen only)");
    }
    spec_.host = std::string(host);
    spec_.port = static_cast<std::uint16_t>(*number);
    return Status::Ok();
  }

  Status ParseUnix(std::string_view path) {
    if (path.empty()) return Error("empty path");
    if (path.size() > kMaxUnixPathBytes) {
      return Error("path is longer than " + std::to_string(kMaxUnixPathBytes) + " bytes");
    }
    spec_.path = std::string(path);
    return Status::Ok();
  }

  // ADDR:PORT with ADDR an IPv4 address, a name or [IPv6], PORT 0-65535.
  Status ParseLocal(std::string_view value) {
    const Status bad = Error("local must be ADDR:PORT, like 127.0.0.1:4555 or [::1]:4555");
    std::string_view host;
    std::string_view port;
    if (!value.empty() && value.front() == '[') {
      const std::size_t close = value.find(']');
      if (close == std::string_view::npos || value.substr(close + 1, 1) != ":") return bad;
      host = value.substr(1, close - 1);
      port = value.substr(close + 2);
      if (!IsIpv6Literal(std::string(host))) return bad;
    } else {
      const std::size_t colon = value.rfind(':');
      if (colon == std::string_view::npos) return bad;
      host = value.substr(0, colon);
      port = value.substr(colon + 1);
      if (host.empty() || host.find(':') != std::string_view::npos ||
          (LooksLikeIpv4(host) && !IsIpv4Literal(std::string(host))) ||
          !IsPlausibleHostName(host)) {
        return bad;
      }
    }
    const std::optional<unsigned long> number = ParseDecimal(port, 65535);
    if (!number) return bad;
    spec_.udp.local_host = std::string(host);
    spec_.udp.local_port = static_cast<std::uint16_t>(*number);
    return Status::Ok();
  }

  Status ParseOptions(std::string_view options) {
    bool raw = false;
    bool qemu = false;
    std::optional<std::size_t> lead;
    const std::optional<std::vector<OptionItem>> items = ParseOptionList(options);
    if (!items) return Error(std::string(kNulByteProblem));
    for (const OptionItem& item : *items) {
      Status status = ParseOption(item, raw, qemu, lead);
      if (!status.ok()) return status;
    }
    if (spec_.transport == TransportKind::kVhostUser && (raw || qemu || lead)) {
      return Error(std::string(raw    ? "raw"
                               : qemu ? "qemu"
                                      : "lead") +
                   " does not apply to vhost-user (the guest's driver asks through the ring)");
    }
    if (raw && (qemu || lead)) return Error("raw and qemu/lead cannot be combined");
    if (udp() && raw) return Error("raw is not supported on udp");
    if (udp() && listen() && (qemu || lead)) {
      return Error(
          "qemu/lead would push unsolicited bytes to any sender; it is for udp connect "
          "endpoints (a fixed peer) only");
    }
    spec_.session.raw = raw;
    if (lead) {
      spec_.session.lead_bytes = *lead;
    } else if (qemu) {
      spec_.session.lead_bytes = EndpointSpec::kDefaultQemuLeadBytes;
    }
    if (!udp() && spec_.share.rate_bytes_per_second && spec_.share.burst_bytes == 0) {
      spec_.share.burst_bytes =
          std::max<std::uint64_t>(*spec_.share.rate_bytes_per_second, kDefaultStreamBurstBytes);
    }
    if (!udp() && spec_.share.burst_bytes > 0 && !spec_.share.rate_bytes_per_second) {
      return Error("burst needs rate");
    }
    Status tls = CheckTlsOptions(spec_.tls, listen());
    if (!tls.ok()) return Error(tls.message());
    if (udp() && spec_.session.lead_bytes > spec_.udp.burst_bytes) {
      return Error(
          "lead must not exceed burst on udp (the primer is charged to the peer's rate limit)");
    }
    return Status::Ok();
  }

  // name=NAME: the systemd socket (FileDescriptorName=) a listener adopts. systemd
  // takes 1-255 printable ASCII characters without ":" as a name.
  Status ParseName(std::string_view value, bool repeated) {
    if (!listen()) return Error("name applies only to listen endpoints");
    Status once = Once("name", repeated);
    if (!once.ok()) return once;
    const bool printable = std::all_of(value.begin(), value.end(),
                                       [](char c) { return c > ' ' && c < 0x7f && c != ':'; });
    if (value.empty() || value.size() > EndpointSpec::kMaxNameBytes || !printable) {
      return Error(
          "name must be 1-255 printable characters without spaces or \":\" (a "
          "systemd FileDescriptorName=)");
    }
    spec_.name = std::string(value);
    return Status::Ok();
  }

  // Options that only udp endpoints take; false if `key` is none of them.
  bool IsUdpKey(std::string_view key) const {
    return key == "local" || key == "idle" || key == "peers";
  }

  // Options whose meaning depends on the transport (allow, rate, burst) or that
  // only tcp and unix take.
  bool IsSharedKey(std::string_view key) const {
    return key == "allow" || key == "allow-user" || key == "allow-group" || key == "weight" ||
           key == "share" || key == "max-conns" || key == "rate" || key == "burst";
  }

  // `repeated` is the option list's mark (ParseOptionList): an earlier option had this key.
  Status Once(std::string_view key, bool repeated) {
    if (repeated) {
      return Error("option " + Quoted(key) + " given twice");
    }
    return Status::Ok();
  }

  // "a+b+c" into names, each resolved by `resolve`; `what` is "user" or "group".
  template <typename Id, typename Resolve>
  Status ParseIdList(std::string_view key, std::string_view value, const char* what,
                     Resolve resolve, std::vector<Id>* out) {
    if (value.empty()) return Error(std::string(key) + ": empty list");
    while (true) {
      const std::size_t plus = value.find('+');
      const std::string name(value.substr(0, plus));
      if (name.empty()) return Error(std::string(key) + ": empty name in list");
      const std::optional<Id> id = resolve(name);
      if (!id) return Error(std::string(key) + ": no " + what + " " + Quoted(name));
      out->push_back(*id);
      if (plus == std::string_view::npos) break;
      value = value.substr(plus + 1);
    }
    return Status::Ok();
  }

  Status ParseSharedOption(std::string_view key, std::string_view value, bool repeated) {
    const bool stream = !udp();
    if (key == "allow") {
      if (!listen()) {
        return Error(std::string("allow applies only to listen endpoints") +
                     (udp() ? " (a udp connect endpoint answers its one peer)" : ""));
      }
      if (spec_.transport == TransportKind::kUnix) {
        return Error(
            "allow applies only to tcp and udp endpoints (a unix socket has no peer address: "
            "use allow-user=/allow-group=)");
      }
    } else if (key == "allow-user" || key == "allow-group") {
      if (udp()) return Error(std::string(key) + " applies only to unix and tcp endpoints");
      if (!listen()) return Error(std::string(key) + " applies only to listen endpoints");
    } else if (key == "weight" || key == "share" || key == "max-conns") {
      if (!stream) return Error(std::string(key) + " applies only to tcp and unix endpoints");
      if (key == "max-conns" && !listen()) {
        return Error("max-conns applies only to listen endpoints");
      }
    }
    Status once = Once(key, repeated);
    if (!once.ok()) return once;

    if (key == "allow") {
      Result<AddressFilter> filter = AddressFilter::Parse(value);
      if (!filter.ok()) return Error("allow: " + filter.status().message());
      spec_.access.allow = std::move(filter).value();
    } else if (key == "allow-user") {
      return ParseIdList<uid_t>(key, value, "user", ResolveUser, &spec_.access.users.users);
    } else if (key == "allow-group") {
      return ParseIdList<gid_t>(key, value, "group", ResolveGroup, &spec_.access.users.groups);
    } else if (key == "weight") {
      const auto weight = ParseDecimal(value, ShareOptions::kMaxWeight);
      if (!weight || *weight == 0) {
        return Error("weight must be 1-" + std::to_string(ShareOptions::kMaxWeight));
      }
      spec_.share.weight = *weight;
    } else if (key == "share") {
      if (value != "identity" && value != "connection") {
        return Error("share must be identity or connection");
      }
      spec_.share.per_connection = value == "connection";
    } else if (key == "max-conns") {
      const auto count = ParseDecimal(value, ShareOptions::kMaxConnections);
      if (!count || *count == 0) {
        return Error("max-conns must be 1-" + std::to_string(ShareOptions::kMaxConnections));
      }
      spec_.share.max_connections = *count;
    } else if (key == "rate") {
      const auto rate = ParseDecimal(value, UdpOptions::kMaxRateBytes);
      if (!rate || *rate == 0) {
        return Error("rate must be 1-" + std::to_string(UdpOptions::kMaxRateBytes) +
                     " bytes per second");
      }
      if (udp()) {
        spec_.udp.rate_bytes_per_second = *rate;
      } else {
        spec_.share.rate_bytes_per_second = *rate;
      }
    } else if (key == "burst") {
      const auto burst = ParseDecimal(value, UdpOptions::kMaxRateBytes);
      if (!burst || *burst < UdpOptions::kMinBurstBytes) {
        return Error("burst must be " + std::to_string(UdpOptions::kMinBurstBytes) + "-" +
                     std::to_string(UdpOptions::kMaxRateBytes) + " bytes");
      }
      if (udp()) {
        spec_.udp.burst_bytes = *burst;
      } else {
        spec_.share.burst_bytes = *burst;
      }
    }
    return Status::Ok();
  }

  Status ParseUdpOption(std::string_view key, std::string_view value, bool repeated) {
    const bool listen_only = key == "peers";
    if (!udp()) {
      if (key == "local") return Error("local applies only to udp connect endpoints");
      if (listen_only) return Error(std::string(key) + " applies only to udp listen endpoints");
      return Error(std::string(key) + " applies only to udp endpoints");
    }
    if (listen_only && !listen()) {
      return Error(std::string(key) + " applies only to udp listen endpoints");
    }
    if (key == "local" && listen()) return Error("local applies only to udp connect endpoints");
    Status once = Once(key, repeated);
    if (!once.ok()) return once;
    UdpOptions& udp_options = spec_.udp;
    if (key == "local") {
      return ParseLocal(value);
    } else if (key == "idle") {
      const auto seconds = ParseDecimal(value, UdpOptions::kMaxIdleSeconds);
      if (!seconds || *seconds == 0) {
        return Error("idle must be 1-" + std::to_string(UdpOptions::kMaxIdleSeconds) + " seconds");
      }
      udp_options.idle = std::chrono::seconds(*seconds);
    } else if (key == "peers") {
      const auto peers = ParseDecimal(value, UdpOptions::kMaxPeers);
      if (!peers || *peers == 0) {
        return Error("peers must be 1-" + std::to_string(UdpOptions::kMaxPeers));
      }
      udp_options.max_peers = *peers;
    }
    return Status::Ok();
  }

  Status ParseOption(const OptionItem& item, bool& raw, bool& qemu,
                     std::optional<std::size_t>& lead) {
    const std::string_view key = item.key;
    const std::string_view value = item.value;
    const bool has_value = item.has_value;
    if (key == "raw" && !has_value) {
      raw = true;
    } else if (key == "qemu" && !has_value) {
      qemu = true;
    } else if (key == "lead" && has_value) {
      if (lead) return Error("option \"lead\" given twice");
      const std::optional<unsigned long> bytes = ParseDecimal(value, EndpointSpec::kMaxLeadBytes);
      if (!bytes || *bytes == 0) {
        return Error("lead must be 1-" + std::to_string(EndpointSpec::kMaxLeadBytes) + " bytes");
      }
      lead = *bytes;
    } else if (key == "mode" && has_value) {
      if (!IsUnixSocketEndpoint(spec_) || role_ != EndpointRole::kListen) {
        return Error("mode applies only to unix listen endpoints");
      }
      if (spec_.unix_mode) return Error("option \"mode\" given twice");
      spec_.unix_mode = ParseOctalMode(value);
      if (!spec_.unix_mode) return Error("mode must be an octal permission like 0660");
    } else if (key == "name" && has_value) {
      return ParseName(value, item.repeated);
    } else if (IsTlsOptionKey(key)) {
      if (spec_.transport != TransportKind::kTcp) {
        return Error(std::string(key) +
                     " applies only to tcp endpoints (QEMU's TLS chardevs are tcp only)");
      }
      Status tls = ParseTlsOption(spec_.tls, key, value, has_value, item.repeated);
      return tls.ok() ? tls : Error(tls.message());
    } else if (IsUdpKey(key) && has_value) {
      return ParseUdpOption(key, value, item.repeated);
    } else if (IsSharedKey(key) && has_value) {
      return ParseSharedOption(key, value, item.repeated);
    } else if (udp()) {
      return Error("unknown option " + Quoted(item.text) +
                   " (expected qemu, lead=BYTES, allow=LIST, local=ADDR:PORT, rate=BYTES, "
                   "burst=BYTES, idle=SECONDS, peers=N, name=NAME)");
    } else {
      return Error("unknown option " + Quoted(item.text) +
                   " (expected raw, qemu, lead=BYTES, mode=OCTAL, allow=LIST, allow-user=LIST, "
                   "allow-group=LIST, weight=N, share=identity|connection, max-conns=N, "
                   "rate=BYTES, burst=BYTES, name=NAME, tls, tls-dir=DIR, tls-*=..., "
                   "allow-subject=LIST)");
    }
    return Status::Ok();
  }

  const EndpointRole role_;
  const std::string& text_;
  EndpointSpec spec_;
};

std::string BracketedHost(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

}  // namespace

std::string EndpointSpec::Address() const {
  if (transport == TransportKind::kUnix) return "unix:" + path;
  if (transport == TransportKind::kVhostUser) return "vhost-user:" + path;
  return (transport == TransportKind::kUdp ? "udp:" : "tcp:") + BracketedHost(host) + ":" +
         std::to_string(port);
}

bool EndpointSpec::BindsAnyPort() const {
  return role == EndpointRole::kListen && port == 0 &&
         (transport == TransportKind::kTcp || transport == TransportKind::kUdp);
}

std::string EndpointSpec::LocalAddress() const {
  if (transport != TransportKind::kUdp || (udp.local_host.empty() && udp.local_port == 0)) {
    return "";
  }
  return BracketedHost(udp.local_host) + ":" + std::to_string(udp.local_port);
}

std::string EndpointSpec::Describe() const {
  std::string out = Address();
  if (session.raw) out += ",raw";
  if (session.lead_bytes > 0) out += ",lead=" + std::to_string(session.lead_bytes);
  if (transport == TransportKind::kUdp) {
    const UdpOptions defaults;
    if (role == EndpointRole::kListen) out += ",allow=" + access.allow.ToString();
    if (!LocalAddress().empty()) out += ",local=" + LocalAddress();
    if (udp.rate_bytes_per_second != defaults.rate_bytes_per_second) {
      out += ",rate=" + std::to_string(udp.rate_bytes_per_second);
    }
    if (udp.burst_bytes != defaults.burst_bytes) out += ",burst=" + std::to_string(udp.burst_bytes);
    if (udp.idle != defaults.idle) out += ",idle=" + std::to_string(udp.idle.count());
    if (role == EndpointRole::kListen && udp.max_peers != defaults.max_peers) {
      out += ",peers=" + std::to_string(udp.max_peers);
    }
  }
  if (transport != TransportKind::kUdp) {
    const ShareOptions defaults;
    if (role == EndpointRole::kListen && transport == TransportKind::kTcp &&
        !access.allow.LoopbackOnly()) {
      out += ",allow=" + access.allow.ToString();
    }
    if (!access.users.empty()) out += "," + access.users.ToString();
    if (share.weight != 1) out += ",weight=" + std::to_string(share.weight);
    if (share.per_connection) out += ",share=connection";
    if (share.max_connections != defaults.max_connections) {
      out += ",max-conns=" + std::to_string(share.max_connections);
    }
    if (share.rate_bytes_per_second) {
      out += ",rate=" + std::to_string(*share.rate_bytes_per_second) +
             ",burst=" + std::to_string(share.burst_bytes);
    }
  }
  out += tls.ToOptionText();
  if (!name.empty()) out += ",name=" + name;
  if (unix_mode) {
    char mode[16];
    std::snprintf(mode, sizeof mode, "%04o", *unix_mode);
    out += ",mode=";
    out += mode;
  }
  return out;
}

Result<EndpointSpec> ParseEndpointSpec(EndpointRole role, const std::string& text) {
  Result<EndpointSpec> spec = SpecParser(role, text).Parse();
  if (spec.ok()) {
    spec->id = (role == EndpointRole::kListen ? "listen " : "connect ") + spec->Address();
  }
  return spec;
}

bool IsLoopbackEndpoint(const EndpointSpec& spec) {
  if (IsUnixSocketEndpoint(spec)) return true;
  std::string lower = spec.host;
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (lower == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, spec.host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, spec.host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    // ::ffff:127.x.y.z reaches the IPv4 loopback network.
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace rngmux
