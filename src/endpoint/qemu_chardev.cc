#include "endpoint/qemu_chardev.h"

#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "common/option_list.h"

namespace rngmux {
namespace {

// The QEMU options a --qemu-chardev value may hold besides the chardev itself.
constexpr std::string_view kChardevFlag = "-chardev";
constexpr std::string_view kObjectFlag = "-object";
constexpr std::string_view kDeviceFlag = "-device";
constexpr std::string_view kVhostUserDevices[] = {"vhost-user-rng-pci", "vhost-user-rng"};
// Objects that belong to QEMU alone: the chardev's tls-authz names one, and rngmux has
// nothing to take from it (QEMU enforces it when it listens).
constexpr std::string_view kAuthzObjects[] = {"authz-simple", "authz-list", "authz-listfile",
                                              "authz-pam"};
// Spelling of QEMU's own refusal (char-socket.c), kept so the admin recognises it.
constexpr std::string_view kTlsOnUnixProblem =
    "'tls_creds' option is incompatible with 'unix' address type";

// One QEMU option of the value: "-object" and its argument.
struct QemuOption {
  std::string_view flag;  // kChardevFlag, kObjectFlag or kDeviceFlag; empty for a bare chardev
  std::string_view value;
};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// The position of the next " -chardev", " -object" or " -device" (any white space before,
// a space or "=" after) at or after `from`, and which flag it is.
std::size_t FindFlag(std::string_view text, std::size_t from, std::string_view& flag) {
  for (std::size_t at = text.find('-', from); at != std::string_view::npos;
       at = text.find('-', at + 1)) {
    if (at == 0 || !IsSpace(text[at - 1])) continue;
    for (std::string_view candidate : {kChardevFlag, kObjectFlag, kDeviceFlag}) {
      const std::size_t end = at + candidate.size();
      if (text.substr(at, candidate.size()) == candidate && end < text.size() &&
          (IsSpace(text[end]) || text[end] == '=')) {
        flag = candidate;
        return at - 1;
      }
    }
  }
  return std::string_view::npos;
}

// Splits "[-chardev] CHARDEV [-object OBJ]... [-device DEV]" (any order) into options.
std::vector<QemuOption> SplitQemuOptions(std::string_view text) {
  std::vector<QemuOption> options;
  // A leading flag is found like the others.
  std::string padded = " " + std::string(text);
  std::string_view body = padded;
  std::string_view flag;
  std::size_t at = FindFlag(body, 0, flag);
  const auto trimmed = [&](std::size_t begin, std::size_t end) {
    std::string_view part = body.substr(begin, end - begin);
    while (!part.empty() && (IsSpace(part.front()) || part.front() == '=')) part.remove_prefix(1);
    while (!part.empty() && IsSpace(part.back())) part.remove_suffix(1);
    // Views into `text`, which outlives the result (padded does not).
    return text.substr(part.data() - body.data() - 1, part.size());
  };
  if (at != 0) options.push_back({{}, trimmed(0, at)});
  while (at != std::string_view::npos) {
    std::string_view next_flag;
    const std::size_t next = FindFlag(body, at + 2, next_flag);
    options.push_back({flag, trimmed(at + 1 + flag.size(), next)});
    at = next;
    flag = next_flag;
  }
  return options;
}

std::string Quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

bool IsDigits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool IsBooleanKey(std::string_view key) {
  return key == "server" || key == "wait" || key == "nodelay" || key == "ipv4" || key == "ipv6";
}

// What rngmux takes from QEMU's -object tls-creds-x509.
struct TlsCreds {
  std::string id;
  std::string dir;
  bool server = false;  // endpoint=server (QEMU's default is client)
};

class ChardevParser {
 public:
  ChardevParser(const std::string& text, const std::string& extra_options)
      : text_(text), extra_options_(extra_options) {}

  Result<EndpointSpec> Parse() {
    // inet_pton would stop at a NUL ("host=::1\0junk" as "::1").
    if (HasNulByte(text_)) return Error(std::string(kNulByteProblem));
    std::optional<std::string_view> chardev;
    bool device_seen = false;
    for (const QemuOption& option : SplitQemuOptions(text_)) {
      if (option.flag == kObjectFlag) {
        if (Status status = ParseObject(option.value); !status.ok()) return status;
      } else if (option.flag == kDeviceFlag) {
        if (device_seen) return Error("give one -device (the vhost-user-rng-pci)");
        device_seen = true;
        std::string_view driver = option.value.substr(0, option.value.find(','));
        bool known = false;
        for (std::string_view name : kVhostUserDevices) known = known || driver == name;
        if (!known) {
          return Error("device " + Quoted(driver) +
                       " is not vhost-user-rng-pci (an rng-egd guest needs only the -chardev)");
        }
        vhost_user_ = true;
      } else {
        if (chardev) return Error("give one -chardev");
        chardev = option.value;
      }
    }
    if (!chardev || chardev->empty() || chardev->front() == '-') {
      return Error("expected a chardev like socket,id=c0,host=H,port=P");
    }
    std::string_view body = *chardev;
    // QEMU's option syntax: ",," is a literal comma.
    const std::optional<std::vector<OptionItem>> parts =
        ParseOptionList(body, {.double_comma_escape = true});
    if (!parts) return Error(std::string(kNulByteProblem));
    std::string backend = parts->front().text;
    if (backend.rfind("backend=", 0) == 0) backend.erase(0, 8);
    if (backend.empty() || backend.find('=') != std::string::npos) {
      return Error("expected a chardev like socket,id=c0,host=H,port=P");
    }
    if (backend != "socket" && backend != "udp") {
      return Error("chardev backend " + Quoted(backend) +
                   " cannot carry EGD (expected socket or udp)");
    }
    udp_ = backend == "udp";
    for (std::size_t i = 1; i < parts->size(); ++i) {
      Status status = ApplyProperty((*parts)[i]);
      if (!status.ok()) return status;
    }
    return MakeEndpoint();
  }

 private:
  Status Error(const std::string& problem) const {
    return Status::Error("qemu-chardev " + Quoted(text_) + ": " + problem);
  }

  Status ApplyProperty(const OptionItem& part) {
    std::string key = part.key;
    std::optional<std::string> value;
    if (part.has_value) value = part.value;

    if (!value) {
      // QEMU's legacy boolean flags: "server" means server=on, "nowait" wait=off.
      if (IsBooleanKey(key)) {
        value = "on";
      } else if (key.rfind("no", 0) == 0 && IsBooleanKey(std::string_view(key).substr(2))) {
        key.erase(0, 2);
        value = "off";
      } else if (IsKnownValueKey(key)) {
        return Error(key + ": expected a value (" + key + "=...)");
      } else {
        return Error("unknown key " + Quoted(key));
      }
    }
    if (!IsBooleanKey(key) && !IsKnownValueKey(key)) return Error("unknown key " + Quoted(key));
    if (udp_ && !IsUdpKey(key)) return Error("unknown key " + Quoted(key) + " for a udp chardev");
    if (!udp_ && (key == "localaddr" || key == "localport")) {
      return Error("unknown key " + Quoted(key) + " for a socket chardev");
    }
    // Not the option list's `repeated` mark: "nowait" and "wait=on" are the same key.
    if (!seen_.insert(key).second) return Error("key " + Quoted(key) + " given twice");

    if (IsBooleanKey(key)) {
      const std::optional<bool> flag = ParseSwitch(*value);
      if (!flag) return Error(key + ": expected on or off");
      if (key == "server") server_ = *flag;
      // wait, nodelay, ipv4 and ipv6 change how QEMU opens the socket, not where.
      return Status::Ok();
    }
    if (key == "host") {
      host_ = *value;
      // QEMU takes IPv6 hosts bare; tolerate the bracketed form too.
      if (host_->size() >= 2 && host_->front() == '[' && host_->back() == ']') {
        *host_ = host_->substr(1, host_->size() - 2);
      }
    } else if (key == "port") {
      port_ = *value;
    } else if (key == "path") {
      path_ = *value;
    } else if (key == "localaddr") {
      local_host_ = *value;
      if (local_host_->size() >= 2 && local_host_->front() == '[' && local_host_->back() == ']') {
        *local_host_ = local_host_->substr(1, local_host_->size() - 2);
      }
    } else if (key == "localport") {
      local_port_ = *value;
    } else if (key == "tls-creds") {
      tls_creds_ = *value;
    } else if (key == "tls-authz") {
      // QEMU's own check of who may connect when it listens (its authz object): nothing
      // for rngmux to do but present a certificate that passes it.
      tls_authz_ = true;
    } else if (key == "reconnect" || key == "reconnect-ms") {  // -ms: QEMU 9.2 and later
      if (!IsDigits(*value)) {
        return Error(std::string(key) +
                     (key == "reconnect" ? ": expected seconds" : ": expected milliseconds"));
      }
      reconnect_ = true;
    }
    return Status::Ok();
  }

  static bool IsKnownValueKey(std::string_view key) {
    return key == "id" || key == "host" || key == "port" || key == "path" || key == "reconnect" ||
           key == "reconnect-ms" || key == "localaddr" || key == "localport" ||
           key == "tls-creds" || key == "tls-authz";
  }

  // One -object: tls-creds-x509 is remembered by id; QEMU's authz objects are ignored.
  Status ParseObject(std::string_view text) {
    const std::optional<std::vector<OptionItem>> parts =
        ParseOptionList(text, {.double_comma_escape = true});
    if (!parts) return Error(std::string(kNulByteProblem));
    std::string type = parts->front().text;
    if (type.rfind("qom-type=", 0) == 0) type.erase(0, 9);
    for (std::string_view authz : kAuthzObjects) {
      if (type == authz) return Status::Ok();
    }
    if (type == "tls-creds-psk" || type == "tls-creds-anon") {
      return Error("object " + Quoted(type) +
                   " is not supported: rngmux takes x509 credentials (tls-creds-x509)");
    }
    if (type != "tls-creds-x509") {
      return Error("object " + Quoted(type) +
                   " is not part of the chardev (give its tls-creds-x509 and authz objects)");
    }
    TlsCreds creds;
    std::set<std::string> seen;
    for (std::size_t i = 1; i < parts->size(); ++i) {
      const OptionItem& part = (*parts)[i];
      const std::string where = "tls-creds-x509 " + part.key;
      if (!seen.insert(part.key).second) return Error(where + " given twice");
      if (!part.has_value) return Error(where + ": expected a value (" + part.key + "=...)");
      if (part.key == "id") {
        creds.id = part.value;
      } else if (part.key == "dir") {
        creds.dir = part.value;
      } else if (part.key == "endpoint") {
        if (part.value != "client" && part.value != "server") {
          return Error(where + ": expected client or server");
        }
        creds.server = part.value == "server";
      } else if (part.key == "verify-peer" || part.key == "sanity-check" || part.key == "loaded") {
        // QEMU's checks of its own side: rngmux checks the peer by its own tls-verify.
        if (!ParseSwitch(part.value)) return Error(where + ": expected on or off");
      } else if (part.key != "priority" && part.key != "passwordid") {
        // priority= (GnuTLS's cipher list) and passwordid= (QEMU's key password) concern
        // QEMU's side only.
        return Error("unknown key " + Quoted(part.key) + " for a tls-creds-x509 object");
      }
    }
    if (creds.id.empty()) return Error("-object tls-creds-x509 needs id=");
    if (creds.dir.empty()) return Error("-object tls-creds-x509,id=" + creds.id + " needs dir=");
    for (const TlsCreds& other : tls_objects_) {
      if (other.id == creds.id) return Error("two objects with id " + Quoted(creds.id));
    }
    tls_objects_.push_back(std::move(creds));
    return Status::Ok();
  }

  // The endpoint option for the chardev's tls-creds: rngmux reads the same directory,
  // in the other role (server-*.pem when it listens, client-*.pem when it connects).
  Result<std::string> TlsOption() const {
    const TlsCreds* creds = nullptr;
    for (const TlsCreds& object : tls_objects_) {
      if (object.id == *tls_creds_) creds = &object;
    }
    if (creds == nullptr) {
      return Error("tls-creds=" + *tls_creds_ +
                   " names no -object tls-creds-x509,id=" + *tls_creds_ +
                   " (give it too, as on QEMU's command line: rngmux reads its dir=)");
    }
    if (creds->server != server_) {
      return Error("tls-creds=" + creds->id +
                   " has endpoint=" + (creds->server ? "server" : "client") + " but the chardev " +
                   (server_ ? "listens (server=on)" : "connects") +
                   ": QEMU expects endpoint=" + (server_ ? "server" : "client"));
    }
    if (creds->dir.find(',') != std::string::npos) {
      return Error("tls-creds-x509 dir with \",\" is not supported");
    }
    return ",tls-dir=" + creds->dir;
  }

  static bool IsUdpKey(std::string_view key) {
    return key == "id" || key == "host" || key == "port" || key == "localaddr" ||
           key == "localport" || key == "ipv4" || key == "ipv6";
  }

  static std::string Bracketed(const std::string& host) {
    return host.find(':') != std::string::npos ? "[" + host + "]" : host;
  }

  // QEMU's udp chardev sends to host:port from localaddr:localport (any address and
  // a random port if not given) and takes datagrams only from host:port. Without a
  // local address rngmux cannot reach QEMU first, so it listens on host:port and
  // answers; with one, rngmux binds host:port itself, sends to QEMU's local address
  // and may push the primer that un-sticks a guest whose request was lost.
  Result<EndpointSpec> MakeUdpEndpoint() const {
    if (!host_ || !port_) return Error("needs host= and port=");
    if (local_host_.has_value() != local_port_.has_value()) {
      return Error(
          "give localaddr= and localport= together (rngmux needs QEMU's exact address to send "
          "to it)");
    }
    std::string spec;
    EndpointRole role = EndpointRole::kListen;
    if (local_host_) {
      role = EndpointRole::kConnect;
      spec = "udp:" + Bracketed(*local_host_) + ":" + *local_port_ + ",local=" + Bracketed(*host_) +
             ":" + *port_ + ",qemu";
    } else {
      spec = "udp:" + Bracketed(*host_) + ":" + *port_;
    }
    if (!extra_options_.empty()) spec += "," + extra_options_;
    Result<EndpointSpec> endpoint = ParseEndpointSpec(role, spec);
    if (!endpoint.ok()) return Error(endpoint.status().message());
    return endpoint;
  }

  Result<EndpointSpec> MakeEndpoint() const {
    if (udp_) return MakeUdpEndpoint();
    const bool inet = host_ || port_;
    if (inet && path_) return Error("give host/port or path, not both");
    if (!path_ && !(host_ && port_)) return Error("needs host= and port=, or path=");
    if (server_ && reconnect_) return Error("QEMU refuses reconnect on a server socket");
    if (tls_authz_ && !tls_creds_) return Error("tls-authz needs tls-creds (QEMU refuses it too)");
    if (tls_creds_ && path_)
      return Error(std::string(kTlsOnUnixProblem) + " (QEMU refuses it too)");

    if (vhost_user_) return MakeVhostUserEndpoint();
    std::string spec;
    if (path_) {
      if (path_->find(',') != std::string::npos) return Error("paths with \",\" are not supported");
      spec = "unix:" + *path_;
    } else {
      const bool bracket = host_->find(':') != std::string::npos;
      spec = "tcp:" + (bracket ? "[" + *host_ + "]" : *host_) + ":" + *port_;
    }
    spec += ",qemu";
    if (tls_creds_) {
      Result<std::string> tls = TlsOption();
      if (!tls.ok()) return tls.status();
      spec += *tls;
    }
    if (!extra_options_.empty()) spec += "," + extra_options_;
    // A QEMU server socket is one rngmux connects to, and the other way round.
    const EndpointRole role = server_ ? EndpointRole::kConnect : EndpointRole::kListen;
    Result<EndpointSpec> endpoint = ParseEndpointSpec(role, spec);
    if (!endpoint.ok()) return Error(endpoint.status().message());
    return endpoint;
  }

  Result<EndpointSpec> MakeVhostUserEndpoint() const {
    if (udp_ || !path_) return Error("vhost-user needs a unix socket chardev (socket,path=...)");
    if (path_->find(',') != std::string::npos) return Error("paths with \",\" are not supported");
    if (reconnect_) {
      return Error(
          "reconnect= aborts QEMU 7.2 with vhost-user-rng (\"Failed to set msg fds\"); give QEMU "
          "server=on,wait=on instead (rngmux then connects, and reconnects after a restart)");
    }
    const EndpointRole role = server_ ? EndpointRole::kConnect : EndpointRole::kListen;
    Result<EndpointSpec> endpoint = ParseEndpointSpec(
        role, "vhost-user:" + *path_ + (extra_options_.empty() ? "" : "," + extra_options_));
    if (!endpoint.ok()) return Error(endpoint.status().message());
    return endpoint;
  }

  const std::string& text_;
  const std::string& extra_options_;
  bool vhost_user_ = false;
  std::set<std::string> seen_;
  std::optional<std::string> host_;
  std::optional<std::string> port_;
  std::optional<std::string> path_;
  std::optional<std::string> local_host_;
  std::optional<std::string> local_port_;
  std::optional<std::string> tls_creds_;
  bool tls_authz_ = false;
  std::vector<TlsCreds> tls_objects_;
  bool udp_ = false;
  bool server_ = false;
  bool reconnect_ = false;
};

// The dir= printed for QEMU when the endpoint names its TLS files one by one.
constexpr char kQemuTlsDirPlaceholder[] = "QEMU_PKI_DIR";

// QEMU must reach a listener on a wildcard address through a concrete one.
std::string ReachableHost(const std::string& host) {
  if (host == "0.0.0.0") return "127.0.0.1";
  if (host == "::") return "::1";
  return host;
}

}  // namespace

Result<EndpointSpec> ParseQemuChardev(const std::string& text, const std::string& extra_options) {
  return ChardevParser(text, extra_options).Parse();
}

std::string QemuArgumentsFor(const EndpointSpec& endpoint) {
  if (endpoint.transport == TransportKind::kVhostUser) {
    // The backend maps guest RAM, so it must be shared memory of exactly -m.
    std::string out =
        "-m 1024 -object memory-backend-memfd,id=mem,size=1024M,share=on -numa node,memdev=mem "
        "-chardev socket,id=rng0chr,path=" +
        endpoint.path;
    // QEMU 7.2 aborts with reconnect= on a vhost-user-rng chardev: when QEMU
    // connects, a restarted rngmux is not reconnected; when QEMU listens it is.
    if (endpoint.role == EndpointRole::kConnect) out += ",server=on,wait=on";
    return out + " -device vhost-user-rng-pci,chardev=rng0chr";
  }
  const std::string device_args =
      " -object rng-egd,id=rng0,chardev=rng0chr -device virtio-rng-pci,rng=rng0";
  if (endpoint.transport == TransportKind::kUdp) {
    std::string chardev = "udp,id=rng0chr,";
    if (endpoint.role == EndpointRole::kListen) {
      chardev += "host=" + ReachableHost(endpoint.host) + ",port=" + std::to_string(endpoint.port);
    } else {
      // QEMU sends to rngmux's local address and binds the one rngmux sends to.
      chardev += "host=" + ReachableHost(endpoint.udp.local_host) +
                 ",port=" + std::to_string(endpoint.udp.local_port) +
                 ",localaddr=" + endpoint.host + ",localport=" + std::to_string(endpoint.port);
    }
    return "-chardev " + chardev + device_args;
  }
  std::string chardev = "socket,id=rng0chr,";
  // QEMU reads its credentials from a directory: tls-dir's, or one the admin fills.
  std::string tls_object;
  if (endpoint.transport == TransportKind::kTcp && endpoint.tls.enabled) {
    const std::string dir = endpoint.tls.dir.empty() ? kQemuTlsDirPlaceholder : endpoint.tls.dir;
    // QEMU takes the other role: the TLS client when rngmux listens.
    tls_object =
        std::string("-object tls-creds-x509,id=rng0tls,dir=") + dir +
        (endpoint.role == EndpointRole::kListen ? ",endpoint=client " : ",endpoint=server ");
  }
  if (endpoint.transport == TransportKind::kUnix) {
    chardev += "path=" + endpoint.path;
  } else {
    const std::string host =
        endpoint.role == EndpointRole::kListen ? ReachableHost(endpoint.host) : endpoint.host;
    chardev += "host=" + host + ",port=" + std::to_string(endpoint.port);
  }
  // QEMU refuses reconnect on a server socket; there rngmux does the reconnecting.
  chardev += endpoint.role == EndpointRole::kListen ? ",reconnect=1" : ",server=on,wait=off";
  if (!tls_object.empty()) chardev += ",tls-creds=rng0tls";
  return tls_object + "-chardev " + chardev + device_args;
}

}  // namespace rngmux
