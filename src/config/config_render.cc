#include "config/config_render.h"

#include <toml++/toml.h>

#include <charconv>
#include <cstdint>
#include <sstream>
#include <string_view>

#include "common/option_list.h"
#include "config/config_file.h"

namespace rngmux {
namespace {

std::int64_t AsInteger(std::size_t value) { return static_cast<std::int64_t>(value); }

// One endpoint as a table: its address and each option written in its spec, typed.
toml::table EndpointTable(const EndpointSpec& endpoint) {
  toml::table table;
  const std::size_t comma = endpoint.text.find(',');
  table.insert("address", endpoint.text.substr(0, comma));
  if (comma == std::string::npos) return table;
  const auto items = ParseOptionList(std::string_view(endpoint.text).substr(comma + 1));
  if (!items) return table;  // a validated spec has no NUL byte
  for (const OptionItem& item : *items) {
    const std::optional<EndpointKeyType> type = EndpointKeyTypeOf(item.key);
    std::int64_t number = 0;
    const char* end = item.value.data() + item.value.size();
    if (!type) {
      table.insert(item.key, item.value);
    } else if (*type == EndpointKeyType::kFlag) {
      table.insert(item.key, true);
    } else if (*type == EndpointKeyType::kOnOff) {
      table.insert(item.key, ParseSwitch(item.value).value_or(false));
    } else if (*type == EndpointKeyType::kInteger &&
               std::from_chars(item.value.data(), end, number).ptr == end) {
      table.insert(item.key, number);
    } else if (*type == EndpointKeyType::kList) {
      toml::array list;
      std::size_t start = 0;
      while (true) {
        const std::size_t plus = item.value.find('+', start);
        list.push_back(item.value.substr(start, plus - start));
        if (plus == std::string::npos) break;
        start = plus + 1;
      }
      table.insert(item.key, std::move(list));
    } else {
      table.insert(item.key, item.value);
    }
  }
  return table;
}

}  // namespace

std::string RenderConfig(const ServeConfig& config) {
  toml::table root;
  root.insert("source-mode", config.source_mode == SourceMode::kMix ? "mix" : "failover");
  root.insert("mix-min-sources", AsInteger(config.min_mix_sources));
  root.insert("pool-size", AsInteger(config.pool_bytes));
  root.insert("allow-test-source", config.allow_test_source);
  root.insert("max-queued-requests", AsInteger(config.max_queued_requests));
  root.insert("max-clients", AsInteger(config.max_clients));
  root.insert("write-threads", AsInteger(config.write_threads));
  root.insert("health-alpha", config.health_alpha_log2);
  root.insert("log-level", config.log_level);
  root.insert("control", config.control_path);
  root.insert("metrics", config.metrics_address);
  root.insert("user", config.user);
  root.insert("group", config.group);
  root.insert("seccomp", SeccompModeName(config.seccomp));
  toml::array sources;
  for (const std::string& spec : config.sources) sources.push_back(toml::table{{"spec", spec}});
  root.insert("source", std::move(sources));
  toml::array listen;
  toml::array connect;
  for (const EndpointSpec& endpoint : config.endpoints) {
    (endpoint.role == EndpointRole::kListen ? listen : connect).push_back(EndpointTable(endpoint));
  }
  if (!listen.empty()) root.insert("listen", std::move(listen));
  if (!connect.empty()) root.insert("connect", std::move(connect));

  std::ostringstream out;
  std::string from = config.config_file;
  for (char& c : from) {
    if (static_cast<unsigned char>(c) < 0x20) c = '?';  // the comment stays one line
  }
  // One-line double-quoted strings with escapes: \uXXXX for non-ASCII (ParseConfig takes
  // non-ASCII bytes on comment lines only), \n for a newline (a multi-line string would
  // drop a leading one).
  constexpr toml::format_flags kFlags =
      toml::toml_formatter::default_flags & ~toml::format_flags::allow_literal_strings &
      ~toml::format_flags::allow_unicode_strings & ~toml::format_flags::allow_multi_line_strings;
  out << "# The effective configuration of rngmux serve"
      << (from.empty() ? "" : " (from " + from + ")") << ".\n"
      << toml::toml_formatter(root, kFlags) << "\n";
  return out.str();
}

}  // namespace rngmux
