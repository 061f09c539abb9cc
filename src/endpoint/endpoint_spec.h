#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "endpoint/address_filter.h"
#include "tls/tls_options.h"
#include "transport/client_identity.h"

namespace rngmux {

enum class EndpointRole { kListen, kConnect };
// kVhostUser: a unix socket speaking vhost-user (one virtio-rng device per
// connection), not EGD.
enum class TransportKind { kTcp, kUnix, kUdp, kVhostUser };

// How a session talks on an endpoint.
struct SessionOptions {
  bool raw = false;  // stream bytes without requests, paced by back-pressure
  // QEMU compatibility: keep `lead_bytes` unsolicited bytes in flight ahead of the
  // requests, starting right after the connection opens. 0 = strict EGD.
  std::size_t lead_bytes = 0;
};

// What a UDP endpoint adds. Every peer address is a client of its own; these bound
// what one peer can get (rate, burst), how long a silent one is remembered (idle),
// how many are remembered at once (peers), and, for listeners, who is answered
// (allow). Defaults are generous for a QEMU guest (which draws at most about 1 MB/s)
// and tight enough to keep a spoofed flood small.
struct UdpOptions {
  static constexpr std::uint64_t kDefaultRateBytesPerSecond = 2 << 20;
  static constexpr std::uint64_t kDefaultBurstBytes = 64 << 10;
  static constexpr std::chrono::seconds kDefaultIdle{60};
  static constexpr std::size_t kDefaultMaxPeers = 1024;
  static constexpr std::uint64_t kMaxRateBytes = 1 << 30;
  // One request datagram may ask for at most this many reply bytes (it is also the
  // largest datagram sent), so the burst must hold at least one of them.
  static constexpr std::uint64_t kMinBurstBytes = 4096;
  static constexpr unsigned kMaxIdleSeconds = 86400;
  static constexpr std::size_t kMaxPeers = 65536;

  std::string local_host;        // connect: address to bind ("" = any)
  std::uint16_t local_port = 0;  // connect: port to bind (0 = any)
  std::uint64_t rate_bytes_per_second = kDefaultRateBytesPerSecond;
  std::uint64_t burst_bytes = kDefaultBurstBytes;
  std::chrono::seconds idle = kDefaultIdle;
  std::size_t max_peers = kDefaultMaxPeers;  // listen only
};

// Who may use a listen endpoint. A client must pass both filters: its address (TCP
// and UDP) must be in `allow`, and, if `users` lists anyone, its identity must be
// admitted by it (unix peers, and TCP peers on loopback, whose uid the kernel knows).
struct AccessOptions {
  AddressFilter allow = AddressFilter::Loopback();
  UserFilter users;
};

// How the clients of an endpoint share the source. By default every client identity
// (see ClientIdentity) is one tenant with one share, whatever number of connections
// it opens; `per_connection` gives each connection a share of its own instead (a
// trusted single-tenant endpoint). Stream endpoints only.
struct ShareOptions {
  static constexpr std::size_t kMaxWeight = 1000;
  static constexpr std::size_t kDefaultMaxConnections = 1024;
  static constexpr std::size_t kMaxConnections = 65536;
  std::size_t weight = 1;  // this endpoint's tenants get weight x the share of weight 1
  bool per_connection = false;
  // Most connections of one identity at once; a new one beyond it replaces that
  // identity's oldest (a reconnecting QEMU gets in; its stale connection goes).
  std::size_t max_connections = kDefaultMaxConnections;
  std::optional<std::uint64_t> rate_bytes_per_second;  // per identity; none = unlimited
  std::uint64_t burst_bytes = 0;                       // with a rate
};

// A parsed, validated endpoint. Immutable once made.
//
// Grammar (options after the address, comma separated):
//   tcp:HOST:PORT[,OPT...]        HOST: IPv4, name, or [IPv6]
//   unix:PATH[,OPT...]
//   udp:HOST:PORT[,OPT...]
//   vhost-user:PATH[,mode=OCTAL]   QEMU's vhost-user-rng-pci on a unix socket
// Options:
//   raw          stream without EGD requests (not with qemu/lead; not on udp)
//   qemu         QEMU compatibility with the default lead (kDefaultQemuLeadBytes)
//   lead=BYTES   QEMU compatibility with this lead, 1..1048576 (implies qemu)
//   mode=OCTAL   unix listen only: permissions of the socket file, e.g. 0660
// TLS (tcp only; see tls/tls_options.h for every option):
//   tls, tls-dir=DIR, tls-cert=FILE, tls-key=FILE, tls-ca=FILE, tls-crl=FILE,
//   tls-verify=on|off, tls-min=1.2|1.3, tls-name=NAME (connect), tls-timeout=SECONDS,
//   allow-subject=NAME[+NAME...] (listen: certificate names admitted)
//   name=NAME    listen only: adopt the socket systemd passes under this name
//                (FileDescriptorName=); without it, a passed socket is adopted by the
//                endpoint with its address (see InheritedSockets)
// Access (listen endpoints):
//   allow=NET[+NET...]        tcp and udp: the peer addresses served (default
//                             127.0.0.0/8+::1); see AddressFilter::Parse
//   allow-user=USER[+USER...] unix and tcp: only these users (names or uids); a TCP
//                             peer's user is known on loopback only
//   allow-group=GRP[+GRP...]  unix and tcp: only members of these groups
//   (with both, a client in either list is admitted)
// Sharing (tcp and unix):
//   weight=N       1-1000: this endpoint's tenants get N times the share (default 1)
//   share=identity|connection   one share per client identity (default) or per
//                  connection (a trusted single-tenant endpoint)
//   max-conns=N    listen only: connections per identity, 1-65536 (default 1024); a
//                  new one beyond it replaces the identity's oldest
//   rate=BYTES     bytes per second per identity (default unlimited)
//   burst=BYTES    bytes at once per identity (default the larger of rate and 65536)
// UDP options:
//   allow=NET[+NET...]  listen only: the senders answered (default 127.0.0.0/8+::1);
//                       see AddressFilter::Parse
//   local=ADDR:PORT     connect only: bind this address first (QEMU's host=/port=)
//   rate=BYTES          bytes per second one peer may be sent (default 2 MiB/s)
//   burst=BYTES         bytes one peer may be sent at once (default 64 KiB, >= 4096)
//   idle=SECONDS        forget a peer after this long without a datagram (default 60)
//   peers=N             listen only: peers remembered at once (default 1024)
// qemu/lead (the unsolicited primer) is for udp connect endpoints only: a listener
// never sends a byte nobody asked for. There the primer is charged to the peer's
// rate limit, so the lead may not exceed the burst.
struct EndpointSpec {
  static constexpr std::size_t kDefaultQemuLeadBytes = 4096;
  static constexpr std::size_t kMaxLeadBytes = 1 << 20;
  static constexpr std::size_t kMaxNameBytes = 255;

  EndpointRole role = EndpointRole::kListen;
  TransportKind transport = TransportKind::kTcp;
  std::string host;                   // tcp: without brackets ("::1")
  std::uint16_t port = 0;             // tcp
  std::string path;                   // unix, vhost-user
  std::optional<unsigned> unix_mode;  // unix listen
  UdpOptions udp;                     // udp
  AccessOptions access;               // listen endpoints
  ShareOptions share;                 // tcp and unix
  SessionOptions session;
  TlsOptions tls;    // tcp: TLS on when tls.enabled
  std::string name;  // name=: the systemd socket this listener adopts ("" = by address)
  std::string text;  // as written by the user
  // The role and address as written ("listen tcp:127.0.0.1:0"): what a reload matches
  // an endpoint by. Unlike Address(), it keeps port 0 after a listener has bound.
  std::string id;

  // "tcp:127.0.0.1:1024" / "udp:[::1]:1024" / "unix:/run/rngmux.sock" /
  // "vhost-user:/run/vm1.sock" (no options).
  std::string Address() const;
  // Address plus the options that are on: "tcp:127.0.0.1:1024,lead=4096"; udp
  // listeners always show their allow list, other udp options only when not default.
  std::string Describe() const;
  // udp connect: "127.0.0.1:4555" or "[::1]:4555", the local= value ("" if none).
  std::string LocalAddress() const;
  // A tcp or udp listener on port 0: it binds any free port, so several may share an
  // address as written (reloads tell them apart by their order, see IdentifyEndpoints).
  bool BindsAnyPort() const;
};

// Parses one --listen or --connect value. Errors are one line naming the input:
//   listen "tcp:127.0.0.1": expected tcp:HOST:PORT
//   listen "tcp:127.0.0.1:99999": port must be 1-65535 (0 = any free port, listen only)
//   listen "tcp:[::1:80": missing "]" in IPv6 address
//   connect "sctp:h:1": unknown transport "sctp" (expected tcp, unix, udp or vhost-user)
//   listen "unix:": empty path
//   listen "tcp:h:1,foo": unknown option "foo" (expected raw, qemu, lead=BYTES, mode=OCTAL,
//       allow=LIST, allow-user=LIST, allow-group=LIST, weight=N, share=identity|connection,
//       max-conns=N, rate=BYTES, burst=BYTES)            (one line in the message)
//   listen "tcp:h:1,lead=0": lead must be 1-1048576 bytes
//   listen "tcp:h:1,raw,qemu": raw and qemu/lead cannot be combined
//   connect "unix:/x,mode=0660": mode applies only to unix listen endpoints
//   listen "unix:/x,mode=999": mode must be an octal permission like 0660
// and, for inputs the examples above do not cover:
//   listen "127.0.0.1": expected tcp:HOST:PORT, udp:HOST:PORT or unix:PATH
//   listen "tcp:::1:80": IPv6 addresses need brackets, like tcp:[::1]:PORT
//   listen "tcp:[fe80::zz]:80": "fe80::zz" is not an IPv6 address
//   listen "tcp:300.1.1.1:80": "300.1.1.1" is not an IPv4 address
//   listen "tcp:a b:80": invalid host name "a b"
//   listen "unix:/very/long...": path is longer than 107 bytes
//   listen "tcp:h:1,lead=1,lead=2": option "lead" given twice
//   listen "tcp:[::1\0junk]:80": contains a NUL byte   (any NUL, anywhere)
// UDP (udp:HOST:PORT has the tcp address errors with "udp" in them):
//   listen "udp:h:1,allow=0.0.0.0/0": allow: "0.0.0.0/0" is too wide: ...
//       (every AddressFilter::Parse error, after "allow: ")
//   connect "udp:h:1,allow=10.0.0.0/8": allow applies only to udp listen endpoints
//       (a udp connect endpoint answers its one peer)
//   listen "udp:h:1,local=127.0.0.1:9": local applies only to udp connect endpoints
//   connect "udp:h:1,local=h": local must be ADDR:PORT, like 127.0.0.1:4555 or [::1]:4555
//   listen "udp:h:1,qemu": qemu/lead would push unsolicited bytes to any sender; it is for
//       udp connect endpoints (a fixed peer) only        (one line in the message)
//   listen "udp:h:1,raw": raw is not supported on udp
//   connect "udp:h:1,lead=8192,burst=4096": lead must not exceed burst on udp (the
//       primer is charged to the peer's rate limit)     (one line in the message)
//   listen "udp:h:1,rate=0": rate must be 1-1073741824 bytes per second
//   listen "udp:h:1,burst=100": burst must be 4096-1073741824 bytes
//   listen "udp:h:1,idle=0": idle must be 1-86400 seconds
//   listen "udp:h:1,peers=0": peers must be 1-65536
//   connect "udp:h:1,peers=9": peers applies only to udp listen endpoints
//   listen "tcp:h:1,idle=10": idle applies only to udp endpoints
//   connect "tcp:h:1,allow=10.0.0.0/8": allow applies only to listen endpoints
//   listen "unix:/x,allow=10.0.0.0/8": allow applies only to tcp and udp endpoints
//       (a unix socket has no peer address: use allow-user=/allow-group=)
//   listen "udp:h:1,allow-user=root": allow-user applies only to unix and tcp endpoints
//   listen "unix:/x,allow-user=nosuchuser": allow-user: no user "nosuchuser"
//   listen "unix:/x,allow-group=nosuchgroup": allow-group: no group "nosuchgroup"
//   listen "tcp:h:1,weight=0": weight must be 1-1000
//   listen "tcp:h:1,share=tenant": share must be identity or connection
//   listen "tcp:h:1,max-conns=0": max-conns must be 1-65536
//   connect "tcp:h:1,max-conns=2": max-conns applies only to listen endpoints
//   listen "udp:h:1,share=connection": share applies only to tcp and unix endpoints
//       (also max-conns; weight too)
//   listen "udp:h:1,foo": unknown option "foo" (expected qemu, lead=BYTES, allow=LIST,
//       local=ADDR:PORT, rate=BYTES, burst=BYTES, idle=SECONDS, peers=N)
// vhost-user (the path has the unix path errors):
//   listen "vhost-user:/x,qemu": qemu does not apply to vhost-user (the guest's driver
//       asks through the ring)      (also raw and lead; one line in the message)
//   connect "vhost-user:/x,mode=0660": mode applies only to unix listen endpoints
// TLS:
//   listen "unix:/x,tls": tls applies only to tcp endpoints (QEMU's TLS chardevs are tcp only)
//   listen "tcp:h:1,tls": TLS on a listen endpoint needs a certificate and key: ...
//   (and every ParseTlsOption and CheckTlsOptions error)
// name= (any transport):
//   connect "tcp:h:1,name=egd": name applies only to listen endpoints
//   listen "tcp:h:1,name=a:b": name must be 1-255 printable characters without spaces or
//       ":" (a systemd FileDescriptorName=)
// Host names are checked for shape only; nothing is resolved here.
Result<EndpointSpec> ParseEndpointSpec(EndpointRole role, const std::string& text);

// True for 127.0.0.0/8 (also as ::ffff:127.x.y.z), ::1, "localhost" (any case) and
// unix sockets; false for wildcards (0.0.0.0, ::) and every other name. No DNS.
bool IsLoopbackEndpoint(const EndpointSpec& spec);

// True for the transports that are a unix socket path (unix and vhost-user).
inline bool IsUnixSocketEndpoint(const EndpointSpec& spec) {
  return spec.transport == TransportKind::kUnix || spec.transport == TransportKind::kVhostUser;
}

}  // namespace rngmux
