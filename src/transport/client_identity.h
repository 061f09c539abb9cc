#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "endpoint/address_filter.h"

namespace rngmux {

// Who a client is, as far as the kernel (or, later, a TLS certificate) can vouch for
// it. Access control, the fair share and the per-identity limits all key on it, so
// a tenant that opens many connections is still one tenant.
//
//   unix socket    uid, gid and pid of the peer (SO_PEERCRED)
//   TCP, loopback  the uid owning the peer's socket (NETLINK_SOCK_DIAG), and its address
//   TCP, elsewhere the peer's address (without the port)
//   UDP            the peer's address (without the port)
//   TLS            the certificate's subject (a seam: `subject` is set by the TLS layer)
//
// Value type; cheap to copy.
struct ClientIdentity {
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;     // unix peers only (the peer process's gid)
  std::optional<pid_t> pid;     // unix peers only; informative, never a key
  std::string address;          // "127.0.0.1", "::1"; "" for unix peers
  std::optional<IpAddress> ip;  // the same, for address filters
  std::string subject;          // a verified certificate's subject CN (or first name)
  // TLS: the handshake is done, and `certificate_names` are the verified certificate's
  // names (CN, DNS and IP SANs; empty if the peer was not verified).
  bool tls = false;
  std::vector<std::string> certificate_names;

  // What the fair share and the limits key on: "cert:SUBJECT", "uid:N", or
  // "addr:ADDRESS". A uid outranks an address (loopback TCP from two users are two
  // tenants), a certificate outranks both.
  std::string Key() const;
  // For logs: "uid=1000(alice) pid=4242", "uid=0(root) 127.0.0.1", "10.0.0.5".
  std::string Describe() const;
};

// Adds what a TLS handshake verified: the certificate's CN (or its first name) becomes
// the subject, which then outranks uid and address as the key.
struct PeerCertificate;
void AddCertificate(ClientIdentity& identity, const std::optional<PeerCertificate>& certificate);

// Reads the identity of a connected stream socket. `unix_socket` says which kind
// the caller accepted it as. Never fails: what cannot be read is left empty (the
// address alone then identifies a TCP peer).
ClientIdentity IdentifyStreamPeer(int fd, bool unix_socket);

// The uid owning the local TCP socket at the other end of `fd` (a connection over
// loopback), asked of the kernel through NETLINK_SOCK_DIAG; nullopt if the peer is
// not local or the kernel does not say.
std::optional<uid_t> LoopbackPeerUid(int fd);

// True if `address` (as in ClientIdentity::address) is 127.0.0.0/8, ::1 or
// ::ffff:127.x.y.z.
bool IsLoopbackAddress(const std::string& address);

// Who may connect to an endpoint besides the address filter: users and groups, by
// number (names are resolved once, when the endpoint spec is parsed). Empty lists
// admit everyone. A client is admitted if its uid is listed, or if it is in a listed
// group (its own gid for unix peers, or any group of its uid's account).
struct UserFilter {
  std::vector<uid_t> users;
  std::vector<gid_t> groups;

  bool empty() const { return users.empty() && groups.empty(); }
  // False for a client whose uid is unknown when a list is set.
  bool Admits(const ClientIdentity& identity) const;
  std::string ToString() const;  // "allow-user=0+1000,allow-group=64055"
};

// Resolves "alice" or "1000" to a uid; nullopt if no such user. Uses NSS.
std::optional<uid_t> ResolveUser(const std::string& name);
std::optional<gid_t> ResolveGroup(const std::string& name);

}  // namespace rngmux
