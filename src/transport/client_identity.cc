#include "transport/client_identity.h"

#include <arpa/inet.h>
#include <grp.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "tls/tls_context.h"

namespace rngmux {
namespace {

// The address of a connected socket's peer (or our own end), as text without
// brackets or port; false for non-IP sockets.
bool ReadAddress(int fd, bool peer, sockaddr_storage* storage) {
  socklen_t length = sizeof *storage;
  auto* address = reinterpret_cast<sockaddr*>(storage);
  const int rc = peer ? getpeername(fd, address, &length) : getsockname(fd, address, &length);
  return rc == 0 && (storage->ss_family == AF_INET || storage->ss_family == AF_INET6);
}

std::string AddressText(const sockaddr_storage& storage) {
  char text[INET6_ADDRSTRLEN] = {};
  if (storage.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(storage).sin_addr, text, sizeof text);
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(storage).sin6_addr, text,
              sizeof text);
  }
  return text;
}

std::string UserName(uid_t uid) {
  std::array<char, 1024> buffer{};
  passwd entry{};
  passwd* found = nullptr;
  if (getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return "";
  }
  return entry.pw_name;
}

template <typename Id>
std::optional<Id> ParseId(const std::string& text) {
  unsigned long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > 0xFFFFFFFEul) {
    return std::nullopt;
  }
  return static_cast<Id>(value);
}

}  // namespace

void AddCertificate(ClientIdentity& identity, const std::optional<PeerCertificate>& certificate) {
  identity.tls = true;
  if (!certificate) return;
  identity.certificate_names = certificate->names;
  identity.subject = !certificate->common_name.empty() ? certificate->common_name
                     : !certificate->names.empty()     ? certificate->names.front()
                                                       : certificate->distinguished_name;
}

std::string ClientIdentity::Key() const {
  if (!subject.empty()) return "cert:" + subject;
  if (uid) return "uid:" + std::to_string(*uid);
  return "addr:" + address;
}

std::string ClientIdentity::Describe() const {
  std::string text;
  if (!subject.empty()) text = "cert=" + subject;
  if (uid) {
    if (!text.empty()) text += ' ';
    text += "uid=" + std::to_string(*uid);
    const std::string name = UserName(*uid);
    if (!name.empty()) text += "(" + name + ")";
  }
  if (pid) text += " pid=" + std::to_string(*pid);
  if (!address.empty()) {
    if (!text.empty()) text += ' ';
    text += address;
  }
  return text.empty() ? "unknown" : text;
}

bool IsLoopbackAddress(const std::string& address) {
  in_addr v4{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, address.c_str(), &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

std::optional<uid_t> LoopbackPeerUid(int fd) {
  sockaddr_storage local{};
  sockaddr_storage peer{};
  if (!ReadAddress(fd, false, &local) || !ReadAddress(fd, true, &peer)) return std::nullopt;
  if (!IsLoopbackAddress(AddressText(peer))) return std::nullopt;

  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  inet_diag_req_v2& request = message.request;
  request.sdiag_family = static_cast<std::uint8_t>(peer.ss_family);
  request.sdiag_protocol = IPPROTO_TCP;
  request.idiag_states = ~0u;
  // The peer's socket: its source is the peer's address, its destination ours.
  inet_diag_sockid& id = request.id;
  if (peer.ss_family == AF_INET) {
    const auto& p = reinterpret_cast<const sockaddr_in&>(peer);
    const auto& l = reinterpret_cast<const sockaddr_in&>(local);
    id.idiag_sport = p.sin_port;
    id.idiag_dport = l.sin_port;
    std::memcpy(id.idiag_src, &p.sin_addr, sizeof p.sin_addr);
    std::memcpy(id.idiag_dst, &l.sin_addr, sizeof l.sin_addr);
  } else {
    const auto& p = reinterpret_cast<const sockaddr_in6&>(peer);
    const auto& l = reinterpret_cast<const sockaddr_in6&>(local);
    id.idiag_sport = p.sin6_port;
    id.idiag_dport = l.sin6_port;
    std::memcpy(id.idiag_src, &p.sin6_addr, sizeof p.sin6_addr);
    std::memcpy(id.idiag_dst, &l.sin6_addr, sizeof l.sin6_addr);
  }
  id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

  const int netlink = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (netlink < 0) return std::nullopt;
  // The kernel answers at once; the timeout only guards the event loop against a
  // kernel that never does.
  const timeval timeout{0, 100 * 1000};
  setsockopt(netlink, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  std::optional<uid_t> uid;
  if (sendto(netlink, &message, sizeof message, 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof kernel) == static_cast<ssize_t>(sizeof message)) {
    alignas(nlmsghdr) std::array<char, 8192> reply{};
    const ssize_t n = recv(netlink, reply.data(), reply.size(), 0);
    if (n > 0) {
      auto* header = reinterpret_cast<nlmsghdr*>(reply.data());
      auto length = static_cast<unsigned>(n);
      for (; NLMSG_OK(header, length); header = NLMSG_NEXT(header, length)) {
        if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY) break;
        if (header->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) break;
        const auto* diag = static_cast<const inet_diag_msg*>(NLMSG_DATA(header));
        uid = diag->idiag_uid;
        break;
      }
    }
  }
  close(netlink);
  return uid;
}

ClientIdentity IdentifyStreamPeer(int fd, bool unix_socket) {
  ClientIdentity identity;
  if (unix_socket) {
    ucred credentials{};
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 &&
        length == sizeof credentials) {
      identity.uid = credentials.uid;
      identity.gid = credentials.gid;
      identity.pid = credentials.pid;
    }
    return identity;
  }
  sockaddr_storage peer{};
  if (ReadAddress(fd, true, &peer)) {
    identity.address = AddressText(peer);
    IpAddress ip;
    if (IpAddress::FromSockaddr(reinterpret_cast<const sockaddr*>(&peer), &ip)) identity.ip = ip;
  }
  if (IsLoopbackAddress(identity.address)) identity.uid = LoopbackPeerUid(fd);
  return identity;
}

bool UserFilter::Admits(const ClientIdentity& identity) const {
  if (empty()) return true;
  if (!identity.uid) return false;
  if (std::find(users.begin(), users.end(), *identity.uid) != users.end()) return true;
  if (groups.empty()) return false;
  if (identity.gid && std::find(groups.begin(), groups.end(), *identity.gid) != groups.end()) {
    return true;
  }
  // The account's groups (primary and supplementary), through NSS.
  std::array<char, 1024> buffer{};
  passwd entry{};
  passwd* found = nullptr;
  if (getpwuid_r(*identity.uid, &entry, buffer.data(), buffer.size(), &found) != 0 ||
      found == nullptr) {
    return false;
  }
  int count = 64;
  std::vector<gid_t> member_of(static_cast<std::size_t>(count));
  if (getgrouplist(entry.pw_name, entry.pw_gid, member_of.data(), &count) < 0) {
    member_of.resize(static_cast<std::size_t>(count));
    if (getgrouplist(entry.pw_name, entry.pw_gid, member_of.data(), &count) < 0) return false;
  }
  member_of.resize(static_cast<std::size_t>(count));
  return std::any_of(member_of.begin(), member_of.end(), [this](gid_t gid) {
    return std::find(groups.begin(), groups.end(), gid) != groups.end();
  });
}

std::string UserFilter::ToString() const {
  std::string text;
  auto append = [&text](const char* key, const auto& ids) {
    if (ids.empty()) return;
    if (!text.empty()) text += ',';
    text += key;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      text += (i == 0 ? "=" : "+") + std::to_string(ids[i]);
    }
  };
  append("allow-user", users);
  append("allow-group", groups);
  return text;
}

std::optional<uid_t> ResolveUser(const std::string& name) {
  if (auto number = ParseId<uid_t>(name)) return number;
  std::array<char, 1024> buffer{};
  passwd entry{};
  passwd* found = nullptr;
  if (getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
      found == nullptr) {
    return std::nullopt;
  }
  return entry.pw_uid;
}

std::optional<gid_t> ResolveGroup(const std::string& name) {
  if (auto number = ParseId<gid_t>(name)) return number;
  std::array<char, 4096> buffer{};
  group entry{};
  group* found = nullptr;
  if (getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
      found == nullptr) {
    return std::nullopt;
  }
  return entry.gr_gid;
}

}  // namespace rngmux
