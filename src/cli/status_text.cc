#include "cli/status_text.h"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <sstream>

namespace rngmux {
namespace {

using Json = nlohmann::ordered_json;

std::string Text(const Json& object, const char* key) {
  if (!object.is_object() || !object.contains(key)) return "?";
  const Json& value = object[key];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_boolean()) return value.get<bool>() ? "yes" : "no";
  if (value.is_number_unsigned()) return std::to_string(value.get<std::uint64_t>());
  if (value.is_number_integer()) return std::to_string(value.get<std::int64_t>());
  if (value.is_number_float()) {
    char number[32];
    std::snprintf(number, sizeof number, "%.0f", value.get<double>());
    return number;
  }
  return "?";
}

double Number(const Json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_number()) return 0;
  return object[key].get<double>();
}

const Json& Array(const Json& object, const char* key) {
  static const Json kEmpty = Json::array();
  if (!object.is_object() || !object.contains(key) || !object[key].is_array()) return kEmpty;
  return object[key];
}

// "12s ago" from Unix seconds `then` seen at `now`; "-" for never (0).
std::string Ago(double then, double now) {
  if (then <= 0) return "-";
  return FormatDuration(std::max(0.0, now - then)) + " ago";
}

std::string UtcTime(double unix_seconds) {
  const auto seconds = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return text;
}

}  // namespace

TextTable::TextTable(std::vector<std::string> headings, std::vector<bool> right_aligned)
    : right_(std::move(right_aligned)) {
  right_.resize(headings.size(), false);
  rows_.push_back(std::move(headings));
}

void TextTable::Row(std::vector<std::string> cells) {
  cells.resize(rows_.front().size());
  rows_.push_back(std::move(cells));
}

std::string TextTable::Render() const {
  std::vector<std::size_t> widths(rows_.front().size(), 0);
  for (const auto& row : rows_) {
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      const std::string pad(widths[i] - row[i].size(), ' ');
      if (i > 0) line += "  ";
      line += right_[i] ? pad + row[i] : row[i] + (i + 1 < row.size() ? pad : "");
    }
    out += line + "\n";
  }
  return out;
}

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0)) seconds = 0;
  const auto total = static_cast<std::uint64_t>(seconds);
  char text[48];
  const std::uint64_t days = total / 86400;
  const auto h = static_cast<unsigned>(total % 86400 / 3600);
  const auto m = static_cast<unsigned>(total % 3600 / 60);
  const auto s = static_cast<unsigned>(total % 60);
  if (days > 0) {
    std::snprintf(text, sizeof text, "%llud %02u:%02u:%02u", static_cast<unsigned long long>(days),
                  h, m, s);
  } else {
    std::snprintf(text, sizeof text, "%02u:%02u:%02u", h, m, s);
  }
  return text;
}

std::string FormatStatusText(const Json& status) {
  std::ostringstream out;
  const double now = Number(status, "now");
  out << "rngmux " << Text(status, "version") << ", pid " << Text(status, "pid") << ", up "
      << FormatDuration(Number(status, "uptime_seconds"));
  const std::string config = Text(status, "config_file");
  out << ", "
      << (config.empty() || config == "?" ? "configured by its command line" : "config " + config)
      << "\n";
  const Json& reload = status.contains("reload") ? status["reload"] : Json::object();
  out << "Last reload: ";
  if (Number(reload, "last_time") <= 0) {
    out << "never";
  } else {
    const bool ok = reload.contains("last_ok") && reload["last_ok"].is_boolean() &&
                    reload["last_ok"].get<bool>();
    out << UtcTime(Number(reload, "last_time")) << ", " << (ok ? "ok" : "FAILED");
    const std::string message = Text(reload, "last_message");
    if (!message.empty()) out << ": " << message;
  }
  out << " (" << Text(reload, "succeeded") << " ok, " << Text(reload, "failed") << " failed)\n\n";

  out << "Sources (" << Text(status, "source_mode") << "; serving " << Text(status, "serving")
      << ", " << Text(status, "source_switches") << " switches)\n";
  TextTable sources({"Source", "State", "Health", "Bytes", "Rate B/s", "Failures", "Last change"},
                    {false, false, false, true, true, true, false});
  for (const Json& source : Array(status, "sources")) {
    const bool healthy = source.contains("healthy") && source["healthy"].is_boolean() &&
                         source["healthy"].get<bool>();
    const auto failures =
        static_cast<std::uint64_t>(Number(source, "blocks_failed") + Number(source, "read_errors"));
    sources.Row({Text(source, "name"), Text(source, "state"), healthy ? "ok" : "unhealthy",
                 Text(source, "bytes_accepted"), Text(source, "rate_bytes_per_second"),
                 std::to_string(failures), Ago(Number(source, "last_change"), now)});
  }
  out << sources.Render();
  for (const Json& source : Array(status, "sources")) {
    const std::string error = Text(source, "last_error");
    if (!error.empty() && error != "?") {
      out << "  " << Text(source, "name") << ": last error: " << error << "\n";
    }
  }

  const Json& pool = status.contains("pool") ? status["pool"] : Json::object();
  const double capacity = Number(pool, "capacity");
  char percent[16];
  std::snprintf(percent, sizeof percent, "%.0f%%",
                capacity > 0 ? 100.0 * Number(pool, "available") / capacity : 0.0);
  out << "\nPool: " << Text(pool, "available") << " of " << Text(pool, "capacity")
      << " bytes ready (" << percent << "), " << Text(pool, "bytes_in") << " bytes in, "
      << Text(pool, "bytes_out") << " bytes out"
      << (pool.contains("locked") && pool["locked"] == false ? ", not locked in memory" : "")
      << "\n\n";

  out << "Endpoints\n";
  TextTable endpoints({"Endpoint", "Address", "Clients", "Served bytes", "Denied", "Refused"},
                      {false, false, true, true, true, true});
  for (const Json& endpoint : Array(status, "endpoints")) {
    endpoints.Row({Text(endpoint, "id"), Text(endpoint, "address"), Text(endpoint, "clients"),
                   Text(endpoint, "served_bytes"), Text(endpoint, "denied"),
                   Text(endpoint, "refused")});
  }
  out << endpoints.Render();

  const Json& clients = Array(status, "clients");
  out << "\nBusiest clients (" << clients.size() << " of " << Text(status, "client_groups")
      << " connected identities)\n";
  if (clients.empty()) {
    out << "  none connected\n";
  } else {
    TextTable table({"Identity", "Endpoint", "Conns", "Served bytes"}, {false, false, true, true});
    for (const Json& client : clients) {
      table.Row({Text(client, "identity"), Text(client, "endpoint"), Text(client, "connections"),
                 Text(client, "served_bytes")});
    }
    out << table.Render();
  }
  return out.str();
}

}  // namespace rngmux
