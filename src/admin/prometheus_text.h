#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/daemon_status.h"

namespace rngmux {

// The Prometheus text exposition format, version 0.0.4: what GET /metrics answers.
inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// A label value with '\', '"' and newline escaped as the format asks.
std::string EscapeLabelValue(std::string_view value);
// A HELP text with '\' and newline escaped.
std::string EscapeHelp(std::string_view help);

// Writes metric families: each a HELP and a TYPE line, then its samples.
class PrometheusWriter {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // `type` is "counter" or "gauge".
  void Family(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, const Labels& labels, std::uint64_t value);
  void Sample(std::string_view name, const Labels& labels, double value);
  const std::string& text() const { return text_; }

 private:
  void Start(std::string_view name, const Labels& labels);

  std::string text_;
};

// Every series of the daemon, from one snapshot (docs/metrics.md lists them). Per-client
// series cover the identities in status.clients only: the busiest, at most
// DaemonStatus::kMaxListedClients, so which identities appear changes over time.
std::string RenderMetrics(const DaemonStatus& status);

}  // namespace rngmux
