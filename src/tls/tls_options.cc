#include "tls/tls_options.h"

#include "common/number_text.h"
#include "common/option_list.h"

namespace rngmux {
namespace {

std::string Quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

Status Once(std::string_view key, bool repeated) {
  if (repeated) return Status::Error("option " + Quoted(key) + " given twice");
  return Status::Ok();
}

Status ParseSubjects(std::string_view value, std::vector<std::string>* out) {
  if (value.empty()) return Status::Error("allow-subject: empty list");
  while (true) {
    const std::size_t plus = value.find('+');
    const std::string_view name = value.substr(0, plus);
    if (name.empty()) return Status::Error("allow-subject: empty name in list");
    out->emplace_back(name);
    if (plus == std::string_view::npos) break;
    value = value.substr(plus + 1);
  }
  return Status::Ok();
}

}  // namespace

bool IsTlsOptionKey(std::string_view key) {
  return key == "tls" || key.substr(0, 4) == "tls-" || key == "allow-subject";
}

Status ParseTlsOption(TlsOptions& options, std::string_view key, std::string_view value,
                      bool has_value, bool repeated) {
  Status once = Once(key, repeated);
  if (!once.ok()) return once;
  options.enabled = true;
  if (key == "tls") {
    if (has_value) return Status::Error("tls takes no value (use tls-dir=DIR, tls-cert=FILE...)");
    return Status::Ok();
  }
  if (!has_value) return Status::Error(std::string(key) + " needs a value");
  std::string* path = key == "tls-dir"    ? &options.dir
                      : key == "tls-cert" ? &options.cert
                      : key == "tls-key"  ? &options.key
                      : key == "tls-ca"   ? &options.ca
                      : key == "tls-crl"  ? &options.crl
                                          : nullptr;
  if (path != nullptr) {
    if (value.empty()) return Status::Error(std::string(key) + ": empty path");
    *path = std::string(value);
    return Status::Ok();
  }
  if (key == "tls-verify") {
    const std::optional<bool> verify = ParseSwitch(value);
    if (!verify) return Status::Error("tls-verify must be on or off");
    options.verify = verify;
    return Status::Ok();
  }
  if (key == "tls-min") {
    if (value == "1.2") {
      options.min_tls13 = false;
    } else if (value == "1.3") {
      options.min_tls13 = true;
    } else {
      return Status::Error("tls-min must be 1.2 or 1.3");
    }
    return Status::Ok();
  }
  if (key == "tls-name") {
    const bool plausible = !value.empty() && value.size() <= 253 &&
                           value.find_first_of(" ,/\\") == std::string_view::npos;
    if (!plausible) return Status::Error("tls-name must be a host name or IP address");
    options.server_name = std::string(value);
    return Status::Ok();
  }
  if (key == "tls-timeout") {
    const std::optional<unsigned> seconds =
        ParseNumber<unsigned>(value, 1, TlsOptions::kMaxHandshakeTimeoutSeconds);
    if (!seconds) {
      return Status::Error("tls-timeout must be 1-" +
                           std::to_string(TlsOptions::kMaxHandshakeTimeoutSeconds) + " seconds");
    }
    options.handshake_timeout = std::chrono::seconds(*seconds);
    return Status::Ok();
  }
  if (key == "allow-subject") return ParseSubjects(value, &options.allow_subjects);
  return Status::Error("unknown option " + Quoted(key) +
                       " (TLS options: tls, tls-dir=DIR, tls-cert=FILE, tls-key=FILE, "
                       "tls-ca=FILE, tls-crl=FILE, tls-verify=on|off, tls-min=1.2|1.3, "
                       "tls-name=NAME, tls-timeout=SECONDS, allow-subject=LIST)");
}

std::string TlsOptions::ToOptionText() const {
  if (!enabled) return "";
  std::string out;
  auto add = [&out](const char* name, const std::string& value) {
    if (!value.empty()) out += std::string(",") + name + "=" + value;
  };
  add("tls-dir", dir);
  add("tls-cert", cert);
  add("tls-key", key);
  add("tls-ca", ca);
  add("tls-crl", crl);
  if (verify) out += *verify ? ",tls-verify=on" : ",tls-verify=off";
  if (min_tls13) out += ",tls-min=1.3";
  add("tls-name", server_name);
  if (handshake_timeout != kDefaultHandshakeTimeout) {
    out += ",tls-timeout=" + std::to_string(handshake_timeout.count());
  }
  if (!allow_subjects.empty()) {
    out += ",allow-subject=";
    for (std::size_t i = 0; i < allow_subjects.size(); ++i) {
      out += (i ? "+" : "") + allow_subjects[i];
    }
  }
  return out.empty() ? ",tls" : out;
}

TlsFiles ResolveTlsFiles(const TlsOptions& options, bool server) {
  TlsFiles files;
  const std::string dir = options.dir.empty() ? "" : options.dir + "/";
  const char* role = server ? "server" : "client";
  files.cert = !options.cert.empty() ? options.cert : !dir.empty() ? dir + role + "-cert.pem" : "";
  files.key = !options.key.empty() ? options.key : !dir.empty() ? dir + role + "-key.pem" : "";
  files.cert_optional = !server && options.cert.empty() && !dir.empty();
  files.ca = !options.ca.empty() ? options.ca : !dir.empty() ? dir + "ca-cert.pem" : "";
  files.crl = !options.crl.empty() ? options.crl : !dir.empty() ? dir + "ca-crl.pem" : "";
  files.crl_optional = options.crl.empty() && !dir.empty();
  // A server verifies clients when it has a CA; a client always verifies the server.
  files.verify = options.verify.value_or(server ? !files.ca.empty() : true);
  return files;
}

Status CheckTlsOptions(const TlsOptions& options, bool server) {
  if (!options.enabled) return Status::Ok();
  const TlsFiles files = ResolveTlsFiles(options, server);
  if (server && (files.cert.empty() || files.key.empty())) {
    return Status::Error(
        "TLS on a listen endpoint needs a certificate and key: tls-dir=DIR or tls-cert=FILE and "
        "tls-key=FILE");
  }
  if (files.cert.empty() != files.key.empty()) {
    return Status::Error("tls-cert and tls-key go together");
  }
  if (files.verify && files.ca.empty()) {
    return Status::Error(std::string("tls-verify=on needs a CA: tls-ca=FILE or tls-dir=DIR") +
                         (server ? "" : " (or tls-verify=off, which trusts any server)"));
  }
  if (!options.allow_subjects.empty() && (!server || !files.verify)) {
    return Status::Error(
        server ? "allow-subject needs verified client certificates (a CA, and not tls-verify=off)"
               : "allow-subject applies only to listen endpoints");
  }
  if (!options.server_name.empty() && server) {
    return Status::Error("tls-name applies only to the connecting side");
  }
  return Status::Ok();
}

}  // namespace rngmux
