#include "transport/endpoint_spec.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstdio>
#include <string_view>
#include <vector>

namespace rngmux {
namespace {

// sun_path holds the path and its terminating NUL.
constexpr std::size_t kMaxUnixPathBytes = sizeof(sockaddr_un::sun_path) - 1;
constexpr unsigned kMaxUnixMode = 0777;

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

bool IsDigits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Parses decimal digits no larger than `max`; no sign, no spaces.
std::optional<unsigned long> ParseDecimal(std::string_view text, unsigned long max) {
  if (!IsDigits(text)) return std::nullopt;
  unsigned long value = 0;
  for (char c : text) {
    value = value * 10 + static_cast<unsigned long>(c - '0');
    if (value > max) return std::nullopt;
  }
  return value;
}

std::optional<unsigned> ParseOctalMode(std::string_view text) {
  if (text.empty()) return std::nullopt;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return std::nullopt;
    value = value * 8 + static_cast<unsigned>(c - '0');
    if (value > kMaxUnixMode) return std::nullopt;
  }
  return value;
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
    const std::string_view all = text_;
    const std::size_t comma = all.find(',');
    const std::string_view address = all.substr(0, comma);
    const std::size_t colon = address.find(':');
    if (colon == std::string_view::npos) {
      return Error("expected tcp:HOST:PORT or unix:PATH");
    }
    const std::string_view transport = address.substr(0, colon);
    const std::string_view rest = address.substr(colon + 1);
    Status status;
    if (transport == "tcp") {
      spec_.transport = TransportKind::kTcp;
      status = ParseTcp(rest);
    } else if (transport == "unix") {
      spec_.transport = TransportKind::kUnix;
      status = ParseUnix(rest);
    } else {
      return Error("unknown transport " + Quoted(transport) + " (expected tcp or unix)");
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

  Status ParseTcp(std::string_view rest) {
    std::string_view host;
    std::string_view port;
    if (!rest.empty() && rest.front() == '[') {
      const std::size_t close = rest.find(']');
      if (close == std::string_view::npos) return Error("missing \"]\" in IPv6 address");
      host = rest.substr(1, close - 1);
      const std::string_view after = rest.substr(close + 1);
      if (after.empty() || after.front() != ':') return Error("expected tcp:HOST:PORT");
      port = after.substr(1);
      if (host.empty() || port.empty()) return Error("expected tcp:HOST:PORT");
      if (!IsIpv6Literal(std::string(host))) {
        return Error(Quoted(host) + " is not an IPv6 address");
      }
    } else {
      const std::size_t colon = rest.rfind(':');
      if (colon == std::string_view::npos) return Error("expected tcp:HOST:PORT");
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
      if (host.empty() || port.empty()) return Error("expected tcp:HOST:PORT");
      if (host.find(':') != std::string_view::npos) {
        return Error("IPv6 addresses need brackets, like tcp:[::1]:PORT");
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

  Status ParseOptions(std::string_view options) {
    bool raw = false;
    bool qemu = false;
    std::optional<std::size_t> lead;
    while (true) {
      const std::size_t comma = options.find(',');
      const std::string_view option = options.substr(0, comma);
      Status status = ParseOption(option, raw, qemu, lead);
      if (!status.ok()) return status;
      if (comma == std::string_view::npos) break;
      options = options.substr(comma + 1);
    }
    if (raw && (qemu || lead)) return Error("raw and qemu/lead cannot be combined");
    spec_.session.raw = raw;
    if (lead) {
      spec_.session.lead_bytes = *lead;
    } else if (qemu) {
      spec_.session.lead_bytes = EndpointSpec::kDefaultQemuLeadBytes;
    }
    return Status::Ok();
  }

  Status ParseOption(std::string_view option, bool& raw, bool& qemu,
                     std::optional<std::size_t>& lead) {
    const std::size_t equals = option.find('=');
    const std::string_view key = option.substr(0, equals);
    const std::string_view value =
        equals == std::string_view::npos ? std::string_view() : option.substr(equals + 1);
    const bool has_value = equals != std::string_view::npos;
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
      if (spec_.transport != TransportKind::kUnix || role_ != EndpointRole::kListen) {
        return Error("mode applies only to unix listen endpoints");
      }
      if (spec_.unix_mode) return Error("option \"mode\" given twice");
      spec_.unix_mode = ParseOctalMode(value);
      if (!spec_.unix_mode) return Error("mode must be an octal permission like 0660");
    } else {
      return Error("unknown option " + Quoted(option) +
                   " (expected raw, qemu, lead=BYTES, mode=OCTAL)");
    }
    return Status::Ok();
  }

  const EndpointRole role_;
  const std::string& text_;
  EndpointSpec spec_;
};

}  // namespace

std::string EndpointSpec::Address() const {
  if (transport == TransportKind::kUnix) return "unix:" + path;
  const bool bracket = host.find(':') != std::string::npos;
  return "tcp:" + (bracket ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string EndpointSpec::Describe() const {
  std::string out = Address();
  if (session.raw) out += ",raw";
  if (session.lead_bytes > 0) out += ",lead=" + std::to_string(session.lead_bytes);
  if (unix_mode) {
    char mode[16];
    std::snprintf(mode, sizeof mode, "%04o", *unix_mode);
    out += ",mode=";
    out += mode;
  }
  return out;
}

Result<EndpointSpec> ParseEndpointSpec(EndpointRole role, const std::string& text) {
  return SpecParser(role, text).Parse();
}

bool IsLoopbackEndpoint(const EndpointSpec& spec) {
  if (spec.transport == TransportKind::kUnix) return true;
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
