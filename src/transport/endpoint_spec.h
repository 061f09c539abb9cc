#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace rngmux {

enum class EndpointRole { kListen, kConnect };
enum class TransportKind { kTcp, kUnix };

// How a session talks on an endpoint.
struct SessionOptions {
  bool raw = false;  // stream bytes without requests, paced by back-pressure
  // QEMU compatibility: keep `lead_bytes` unsolicited bytes in flight ahead of the
  // requests, starting right after the connection opens. 0 = strict EGD.
  std::size_t lead_bytes = 0;
};

// A parsed, validated endpoint. Immutable once made.
//
// Grammar (options after the address, comma separated):
//   tcp:HOST:PORT[,OPT...]        HOST: IPv4, name, or [IPv6]
//   unix:PATH[,OPT...]
// Options:
//   raw          stream without EGD requests (not with qemu/lead)
//   qemu         QEMU compatibility with the default lead (kDefaultQemuLeadBytes)
//   lead=BYTES   QEMU compatibility with this lead, 1..1048576 (implies qemu)
//   mode=OCTAL   unix listen only: permissions of the socket file, e.g. 0660
struct EndpointSpec {
  static constexpr std::size_t kDefaultQemuLeadBytes = 4096;
  static constexpr std::size_t kMaxLeadBytes = 1 << 20;

  EndpointRole role = EndpointRole::kListen;
  TransportKind transport = TransportKind::kTcp;
  std::string host;                   // tcp: without brackets ("::1")
  std::uint16_t port = 0;             // tcp
  std::string path;                   // unix
  std::optional<unsigned> unix_mode;  // unix listen
  SessionOptions session;
  std::string text;  // as written by the user

  // "tcp:127.0.0.1:1024" / "tcp:[::1]:1024" / "unix:/run/rngmux.sock" (no options).
  std::string Address() const;
  // Address plus the options that are on: "tcp:127.0.0.1:1024,lead=4096".
  std::string Describe() const;
};

// Parses one --listen or --connect value. Errors are one line naming the input:
//   listen "tcp:127.0.0.1": expected tcp:HOST:PORT
//   listen "tcp:127.0.0.1:99999": port must be 1-65535 (0 = any free port, listen only)
//   listen "tcp:[::1:80": missing "]" in IPv6 address
//   connect "udp:h:1": unknown transport "udp" (expected tcp or unix)
//   listen "unix:": empty path
//   listen "tcp:h:1,foo": unknown option "foo" (expected raw, qemu, lead=BYTES, mode=OCTAL)
//   listen "tcp:h:1,lead=0": lead must be 1-1048576 bytes
//   listen "tcp:h:1,raw,qemu": raw and qemu/lead cannot be combined
//   connect "unix:/x,mode=0660": mode applies only to unix listen endpoints
//   listen "unix:/x,mode=999": mode must be an octal permission like 0660
// and, for inputs the examples above do not cover:
//   listen "127.0.0.1": expected tcp:HOST:PORT or unix:PATH
//   listen "tcp:::1:80": IPv6 addresses need brackets, like tcp:[::1]:PORT
//   listen "tcp:[fe80::zz]:80": "fe80::zz" is not an IPv6 address
//   listen "tcp:300.1.1.1:80": "300.1.1.1" is not an IPv4 address
//   listen "tcp:a b:80": invalid host name "a b"
//   listen "unix:/very/long...": path is longer than 107 bytes
//   listen "tcp:h:1,lead=1,lead=2": option "lead" given twice
// Host names are checked for shape only; nothing is resolved here.
Result<EndpointSpec> ParseEndpointSpec(EndpointRole role, const std::string& text);

// True for 127.0.0.0/8 (also as ::ffff:127.x.y.z), ::1, "localhost" (any case) and
// unix sockets; false for wildcards (0.0.0.0, ::) and every other name. No DNS.
bool IsLoopbackEndpoint(const EndpointSpec& spec);

}  // namespace rngmux
