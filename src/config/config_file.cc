#include "config/config_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>
#include <vector>

#include "endpoint/endpoint_spec.h"
#include "endpoint/qemu_chardev.h"
#include "sources/source.h"

namespace rngmux {
namespace {

// A configuration file is a few kilobytes; this bounds what a wrong --config reads.
constexpr std::size_t kMaxConfigFileBytes = 1 << 20;

// One key of a table with where it was written, so that keys are checked in the order
// of the file (a toml::table iterates in key order) and errors name their line.
struct Entry {
  std::string key;
  const toml::node* node;
  std::uint32_t line;
  std::uint32_t column;
};

std::vector<Entry> EntriesOf(const toml::table& table) {
  std::vector<Entry> entries;
  for (auto&& [key, node] : table) {
    entries.push_back(
        {std::string(key.str()), &node, key.source().begin.line, key.source().begin.column});
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  return entries;
}

const char* TypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// Removes `prefix` from the front of `message` if it is there.
std::string StripPrefix(const std::string& message, const std::string& prefix) {
  return message.rfind(prefix, 0) == 0 ? message.substr(prefix.size()) : message;
}

std::string IntegerText(std::int64_t value) { return std::to_string(value); }

std::string FloatText(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

// toml++ 3.3.0 (Debian 12's) reaches __builtin_unreachable() on some non-ASCII
// characters where it expects whitespace (upstream issues #190, #295): undefined
// behaviour from a file anyone who may edit the configuration writes, read again at
// every reload. Non-ASCII bytes are taken on comment lines only, where that code is not
// reached; in a string, \uXXXX says the same. The line of the first other one, or 0.
std::uint32_t FirstNonAsciiLine(std::string_view text) {
  std::uint32_t line = 1;
  bool line_start = true;  // nothing but spaces and tabs so far on this line
  bool comment_line = false;
  for (const char c : text) {
    if (c == '\n') {
      ++line;
      line_start = true;
      comment_line = false;
      continue;
    }
    if (line_start && c == '#') comment_line = true;
    if (c != ' ' && c != '\t') line_start = false;
    if (static_cast<unsigned char>(c) >= 0x80 && !comment_line) return line;
  }
  return 0;
}

class ConfigParser {
 public:
  ConfigParser(std::string_view text, const std::string& file_name)
      : text_(text), file_(file_name) {}

  Result<ServeSettings> Parse() {
    if (const std::uint32_t line = FirstNonAsciiLine(text_); line != 0) {
      return Error(line,
                   "non-ASCII character outside a comment line (in a string, write it as "
                   "\\uXXXX)");
    }
    toml::table root;
    try {
      root = toml::parse(text_, file_);
    } catch (const toml::parse_error& e) {
      return Error(e.source().begin.line, "parse error: " + std::string(e.description()));
    }
    settings_.config_file = file_;
    for (const Entry& entry : EntriesOf(root)) {
      if (Status status = TopLevel(entry); !status.ok()) return status;
    }
    if (Status status = CheckDistinct(); !status.ok()) return status;
    return settings_;
  }

 private:
  Status Error(std::uint32_t line, const std::string& message) const {
    return Status::Error(file_ + ":" + std::to_string(line) + ": " + message);
  }
  Status TypeError(const Entry& entry, const std::string& name, const char* expected) const {
    return Error(entry.line,
                 name + ": expected " + expected + ", got " + TypeName(entry.node->type()));
  }
  void Given(const Entry& entry) {
    settings_.given[entry.key] = file_ + ":" + std::to_string(entry.line) + ": " + entry.key;
  }

  Status String(const Entry& entry, std::string& into) {
    const auto* value = entry.node->as_string();
    if (value == nullptr) return TypeError(entry, entry.key, "a string");
    into = value->get();
    Given(entry);
    return Status::Ok();
  }
  Status Count(const Entry& entry, std::size_t& into) {
    const auto* value = entry.node->as_integer();
    if (value == nullptr) return TypeError(entry, entry.key, "an integer");
    if (value->get() < 0) return Error(entry.line, entry.key + ": must not be negative");
    into = static_cast<std::size_t>(value->get());
    Given(entry);
    return Status::Ok();
  }
  Status Number(const Entry& entry, double& into) {
    if (const auto* integer = entry.node->as_integer()) {
      into = static_cast<double>(integer->get());
    } else if (const auto* floating = entry.node->as_floating_point()) {
      into = floating->get();
    } else {
      return TypeError(entry, entry.key, "a number");
    }
    Given(entry);
    return Status::Ok();
  }
  Status Boolean(const Entry& entry, bool& into) {
    const auto* value = entry.node->as_boolean();
    if (value == nullptr) return TypeError(entry, entry.key, "a boolean");
    into = value->get();
    Given(entry);
    return Status::Ok();
  }

  Status TopLevel(const Entry& entry) {
    const std::string& key = entry.key;
    if (key == "source") return Tables(entry, &ConfigParser::SourceTable);
    if (key == "listen") return Tables(entry, &ConfigParser::ListenTable);
    if (key == "connect") return Tables(entry, &ConfigParser::ConnectTable);
    if (key == "qemu-chardev") return QemuChardevs(entry);
    if (key == "source-mode") return String(entry, settings_.source_mode);
    if (key == "log-level") return String(entry, settings_.log_level);
    if (key == "control") return String(entry, settings_.control);
    if (key == "metrics") return String(entry, settings_.metrics);
    if (key == "user") return String(entry, settings_.user);
    if (key == "group") return String(entry, settings_.group);
    if (key == "seccomp") return String(entry, settings_.seccomp);
    if (key == "mix-min-sources") return Count(entry, settings_.min_mix_sources);
    if (key == "pool-size") return Count(entry, settings_.pool_bytes);
    if (key == "max-queued-requests") return Count(entry, settings_.max_queued_requests);
    if (key == "max-clients") return Count(entry, settings_.max_clients);
    if (key == "write-threads") return Count(entry, settings_.write_threads);
    if (key == "health-alpha") return Number(entry, settings_.health_alpha_log2);
    if (key == "allow-test-source") return Boolean(entry, settings_.allow_test_source);
    return Error(entry.line, "unknown key \"" + key + "\"");
  }

  using TableParser = Status (ConfigParser::*)(const std::string& name, const toml::table& table,
                                               std::uint32_t line);
  Status Tables(const Entry& entry, TableParser parse) {
    const toml::array* array = entry.node->as_array();
    if (array == nullptr || !array->is_array_of_tables()) {
      return TypeError(entry, entry.key, ("an array of tables ([[" + entry.key + "]])").c_str());
    }
    std::size_t index = 0;
    for (const toml::node& node : *array) {
      const std::string name = entry.key + "[" + std::to_string(index++) + "]";
      const toml::table& table = *node.as_table();
      if (Status status = (this->*parse)(name, table, table.source().begin.line); !status.ok()) {
        return status;
      }
    }
    Given(entry);
    return Status::Ok();
  }

  Status QemuChardevs(const Entry& entry) {
    const toml::array* array = entry.node->as_array();
    if (array == nullptr) return TypeError(entry, entry.key, "an array of strings");
    std::size_t index = 0;
    for (const toml::node& node : *array) {
      const std::string name = entry.key + "[" + std::to_string(index++) + "]";
      const std::uint32_t line = node.source().begin.line;
      const auto* value = node.as_string();
      if (value == nullptr) {
        return Error(line, name + ": expected a string, got " + TypeName(node.type()));
      }
      Result<EndpointSpec> spec = ParseQemuChardev(value->get());
      if (!spec.ok()) {
        return Error(line, name + ": " +
                               StripPrefix(spec.status().message(),
                                           "qemu-chardev \"" + value->get() + "\": "));
      }
      endpoints_.push_back({spec->id, name, line, false});
      settings_.qemu_chardev.push_back(value->get());
    }
    Given(entry);
    return Status::Ok();
  }

  // --- [[source]] ---------------------------------------------------------------

  Status SourceTable(const std::string& name, const toml::table& table, std::uint32_t line) {
    const std::vector<Entry> entries = EntriesOf(table);
    const Entry* spec_entry = nullptr;
    for (const Entry& entry : entries) {
      if (entry.key == "spec") spec_entry = &entry;
    }
    if (spec_entry == nullptr) return Error(line, name + ": missing key \"spec\"");
    const auto* spec_value = spec_entry->node->as_string();
    if (spec_value == nullptr) return TypeError(*spec_entry, name + ".spec", "a string");
    const std::string spec = spec_value->get();
    const std::string echo = "source \"" + spec + "\": ";
    Result<SourceSpec> alone = ValidateSourceSpec(spec);
    if (!alone.ok()) {
      return Error(spec_entry->line,
                   name + ".spec: " + StripPrefix(alone.status().message(), echo));
    }
    std::set<std::string> known = {"entropy", "block", "fips"};
    for (const SourceKind& kind : SourceKinds()) {
      if (kind.name == alone->kind) known.insert(kind.options.begin(), kind.options.end());
    }

    struct Option {
      const Entry* entry;
      std::string text;  // "rate=1000"
    };
    std::vector<Option> options;
    for (const Entry& entry : entries) {
      if (&entry == spec_entry) continue;
      const std::string key_name = name + "." + entry.key;
      if (known.count(entry.key) == 0) {
        std::string list = "spec";
        for (const char* common : {"entropy", "block", "fips"}) list += std::string(", ") + common;
        for (const std::string& option : known) {
          if (option != "entropy" && option != "block" && option != "fips") list += ", " + option;
        }
        return Error(entry.line,
                     name + ": unknown key \"" + entry.key + "\" (known: " + list + ")");
      }
      std::string value;
      if (const auto* boolean = entry.node->as_boolean()) {
        value = boolean->get() ? "on" : "off";
      } else if (const auto* integer = entry.node->as_integer()) {
        value = IntegerText(integer->get());
      } else if (const auto* floating = entry.node->as_floating_point()) {
        value = FloatText(floating->get());
      } else if (const auto* string = entry.node->as_string()) {
        value = string->get();
        if (value.find(',') != std::string::npos) {
          return Error(entry.line, key_name + ": must not contain \",\"");
        }
      } else {
        return TypeError(entry, key_name, "a string, a number or a boolean");
      }
      options.push_back({&entry, entry.key + "=" + value});
    }
    std::string whole = spec;
    for (const Option& option : options) whole += "," + option.text;
    Result<SourceSpec> all = ValidateSourceSpec(whole);
    if (!all.ok()) {
      // Blame the one key that fails on its own, else the table.
      for (const Option& option : options) {
        const std::string one = spec + "," + option.text;
        Result<SourceSpec> single = ValidateSourceSpec(one);
        if (!single.ok()) {
          return Error(option.entry->line,
                       name + "." + option.entry->key + ": " +
                           StripPrefix(single.status().message(), "source \"" + one + "\": "));
        }
      }
      return Error(line,
                   name + ": " + StripPrefix(all.status().message(), "source \"" + whole + "\": "));
    }
    settings_.sources.push_back(whole);
    return Status::Ok();
  }

  // --- [[listen]] and [[connect]] -----------------------------------------------

  Status ListenTable(const std::string& name, const toml::table& table, std::uint32_t line) {
    return EndpointTable(EndpointRole::kListen, name, table, line);
  }
  Status ConnectTable(const std::string& name, const toml::table& table, std::uint32_t line) {
    return EndpointTable(EndpointRole::kConnect, name, table, line);
  }

  // `listen "TEXT": why` -> `why`, less a leading "KEY: " the caller names already.
  static std::string Why(EndpointRole role, const std::string& text, const Status& status,
                         const std::string& key = "") {
    const std::string echo =
        std::string(role == EndpointRole::kListen ? "listen" : "connect") + " \"" + text + "\": ";
    std::string why = StripPrefix(status.message(), echo);
    if (!key.empty()) why = StripPrefix(why, key + ": ");
    return why;
  }

  Result<std::string> OptionText(const Entry& entry, const std::string& key_name,
                                 EndpointKeyType type) {
    switch (type) {
      case EndpointKeyType::kFlag: {
        const auto* value = entry.node->as_boolean();
        if (value == nullptr) return TypeError(entry, key_name, "a boolean");
        return value->get() ? entry.key : std::string();
      }
      case EndpointKeyType::kOnOff: {
        const auto* value = entry.node->as_boolean();
        if (value == nullptr) return TypeError(entry, key_name, "a boolean");
        return entry.key + (value->get() ? "=on" : "=off");
      }
      case EndpointKeyType::kInteger: {
        const auto* value = entry.node->as_integer();
        if (value == nullptr) return TypeError(entry, key_name, "an integer");
        return entry.key + "=" + IntegerText(value->get());
      }
      case EndpointKeyType::kString: {
        const auto* value = entry.node->as_string();
        if (value == nullptr) return TypeError(entry, key_name, "a string");
        if (value->get().find(',') != std::string::npos) {
          return Error(entry.line, key_name + ": must not contain \",\"");
        }
        return entry.key + "=" + value->get();
      }
      case EndpointKeyType::kList: {
        const toml::array* array = entry.node->as_array();
        if (array == nullptr) return TypeError(entry, key_name, "an array of strings");
        std::string joined;
        for (const toml::node& element : *array) {
          const auto* value = element.as_string();
          const std::uint32_t element_line = element.source().begin.line;
          if (value == nullptr) {
            return Error(element_line, key_name + ": expected an array of strings, got " +
                                           TypeName(element.type()) + " in it");
          }
          if (value->get().find_first_of(",+") != std::string::npos) {
            return Error(element_line,
                         key_name + ": \"" + value->get() + "\" must not contain \",\" or \"+\"");
          }
          joined += (joined.empty() ? "" : "+") + value->get();
        }
        if (array->empty()) return Error(entry.line, key_name + ": empty list");
        return entry.key + "=" + joined;
      }
    }
    return Status::Error("unreachable");
  }

  Status EndpointTable(EndpointRole role, const std::string& name, const toml::table& table,
                       std::uint32_t line) {
    const std::vector<Entry> entries = EntriesOf(table);
    const Entry* address_entry = nullptr;
    for (const Entry& entry : entries) {
      if (entry.key == "address") address_entry = &entry;
    }
    struct Option {
      const Entry* entry;
      std::string text;  // "weight=2"
    };
    std::vector<Option> options;
    for (const Entry& entry : entries) {
      if (&entry == address_entry) continue;
      const std::optional<EndpointKeyType> type = EndpointKeyTypeOf(entry.key);
      if (!type) return Error(entry.line, name + ": unknown key \"" + entry.key + "\"");
      Result<std::string> text = OptionText(entry, name + "." + entry.key, *type);
      if (!text.ok()) return text.status();
      if (!text->empty()) options.push_back({&entry, *text});
    }
    if (address_entry == nullptr) return Error(line, name + ": missing key \"address\"");
    const auto* address_value = address_entry->node->as_string();
    if (address_value == nullptr) return TypeError(*address_entry, name + ".address", "a string");
    const std::string address = address_value->get();

    std::string whole = address;
    for (const Option& option : options) whole += "," + option.text;
    Result<EndpointSpec> all = ParseEndpointSpec(role, whole);
    if (!all.ok()) {
      // Blame the address, else the one key that fails with the address alone, else
      // the table (a combination of options).
      Result<EndpointSpec> bare = ParseEndpointSpec(role, address);
      if (!bare.ok()) {
        return Error(address_entry->line, name + ".address: " + Why(role, address, bare.status()));
      }
      for (const Option& option : options) {
        const std::string one = address + "," + option.text;
        Result<EndpointSpec> single = ParseEndpointSpec(role, one);
        if (!single.ok()) {
          return Error(option.entry->line, name + "." + option.entry->key + ": " +
                                               Why(role, one, single.status(), option.entry->key));
        }
      }
      return Error(line, name + ": " + Why(role, whole, all.status()));
    }
    endpoints_.push_back({all->id, name + ".address", address_entry->line, all->BindsAnyPort()});
    (role == EndpointRole::kListen ? settings_.listen : settings_.connect).push_back(whole);
    return Status::Ok();
  }

  // A reload matches endpoints by role and address, so each may be given once (but
  // for listeners on any free port: see IdentifyEndpoints).
  Status CheckDistinct() const {
    std::set<std::string> seen;
    for (const Written& endpoint : endpoints_) {
      if (!endpoint.any_port && !seen.insert(endpoint.id).second) {
        return Error(endpoint.line,
                     endpoint.name + ": endpoint \"" + endpoint.id + "\" is given twice");
      }
    }
    return Status::Ok();
  }

  struct Written {
    std::string id;  // EndpointSpec::id
    std::string name;
    std::uint32_t line;
    bool any_port;  // a tcp or udp listener on port 0: may repeat
  };

  std::string_view text_;
  std::string file_;
  ServeSettings settings_;
  std::vector<Written> endpoints_;  // in the order of the file
};

}  // namespace

std::optional<EndpointKeyType> EndpointKeyTypeOf(std::string_view key) {
  static const std::map<std::string, EndpointKeyType, std::less<>> kTypes = {
      {"qemu", EndpointKeyType::kFlag},          {"raw", EndpointKeyType::kFlag},
      {"lead", EndpointKeyType::kInteger},       {"weight", EndpointKeyType::kInteger},
      {"rate", EndpointKeyType::kInteger},       {"burst", EndpointKeyType::kInteger},
      {"max-conns", EndpointKeyType::kInteger},  {"idle", EndpointKeyType::kInteger},
      {"peers", EndpointKeyType::kInteger},      {"mode", EndpointKeyType::kString},
      {"share", EndpointKeyType::kString},       {"local", EndpointKeyType::kString},
      {"allow", EndpointKeyType::kList},         {"allow-user", EndpointKeyType::kList},
      {"allow-group", EndpointKeyType::kList},   {"name", EndpointKeyType::kString},
      {"tls", EndpointKeyType::kFlag},           {"tls-dir", EndpointKeyType::kString},
      {"tls-cert", EndpointKeyType::kString},    {"tls-key", EndpointKeyType::kString},
      {"tls-ca", EndpointKeyType::kString},      {"tls-crl", EndpointKeyType::kString},
      {"tls-verify", EndpointKeyType::kOnOff},   {"tls-min", EndpointKeyType::kString},
      {"tls-name", EndpointKeyType::kString},    {"tls-timeout", EndpointKeyType::kInteger},
      {"allow-subject", EndpointKeyType::kList},
  };
  const auto it = kTypes.find(key);
  if (it == kTypes.end()) return std::nullopt;
  return it->second;
}

Result<ServeSettings> ParseConfig(std::string_view text, const std::string& file_name) {
  return ConfigParser(text, file_name).Parse();
}

Result<ServeSettings> LoadConfigFile(const std::string& path) {
  // Only a regular file is read: a FIFO put where the file was would block the open,
  // and a reload runs on the event loop; opening a device may do something. Checked
  // before the open, and again on what was opened (non-blocking, in case it changed).
  struct stat before {};
  if (::stat(path.c_str(), &before) == 0 && !S_ISREG(before.st_mode) && !S_ISDIR(before.st_mode)) {
    return Status::Error(path + ": not a regular file");
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return Status::FromErrno(path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int error = errno;
    ::close(fd);
    return Status::FromErrno(path, error);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    if (S_ISDIR(st.st_mode)) return Status::FromErrno(path, EISDIR);
    return Status::Error(path + ": not a regular file");
  }
  ::fcntl(fd, F_SETFL, O_RDONLY);  // blocking reads again (NFS and FUSE may say EAGAIN)
  std::string text;
  char buffer[16384];
  Status status;
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = Status::FromErrno(path, errno);
      break;
    }
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > kMaxConfigFileBytes) {
      status = Status::Error(path + ": larger than " + std::to_string(kMaxConfigFileBytes) +
                             " bytes; not a configuration file");
      break;
    }
  }
  ::close(fd);
  if (!status.ok()) return status;
  return ParseConfig(text, path);
}

}  // namespace rngmux
