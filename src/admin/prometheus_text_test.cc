#include "admin/prometheus_text.h"

#include <gtest/gtest.h>

#include <set>

namespace rngmux {
namespace {

TEST(PrometheusTextTest, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeLabelValue("file:/dev/hwrng"), "file:/dev/hwrng");
  EXPECT_EQ(EscapeHelp("a\\b\"c\nd"), "a\\\\b\"c\\nd");
}

TEST(PrometheusTextTest, WritesFamiliesAndSamples) {
  PrometheusWriter out;
  out.Family("x_total", "counter", "Things\ncounted");
  out.Sample("x_total", {{"source", "file:/tmp/\"q\""}, {"state", "serving"}}, std::uint64_t{7});
  out.Sample("x_total", {}, 0.5);
  out.Sample("x_total", {}, 1e21);
  EXPECT_EQ(out.text(),
            "# HELP x_total Things\\ncounted\n"
            "# TYPE x_total counter\n"
            "x_total{source=\"file:/tmp/\\\"q\\\"\",state=\"serving\"} 7\n"
            "x_total 0.5\n"
            "x_total 1e+21\n");
}

DaemonStatus Sample() {
  DaemonStatus status;
  status.started = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  status.uptime_seconds = 12;
  SourceSnapshot source;
  source.name = "file:/dev/\"odd\"\nname";
  source.state = "standby";
  source.healthy = true;
  source.bytes_accepted = 4096;
  source.blocks_failed = 3;
  status.sources.push_back(source);
  status.pool.capacity = 8192;
  status.pool.bytes_in = 4096;
  EndpointSnapshot endpoint;
  endpoint.id = "listen tcp:127.0.0.1:0";
  endpoint.clients = 2;
  endpoint.served_bytes = 1000;
  status.endpoints.push_back(endpoint);
  status.clients.push_back({"uid:1000", "listen tcp:127.0.0.1:0", 2, 1000});
  ServerCounters counters;
  counters.served_bytes = 1000;
  counters.clients = 2;
  status.counters = CounterValues(counters);
  status.reload.failed = 1;
  status.reload.last_ok = false;
  return status;
}

bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

TEST(PrometheusTextTest, RendersEverySeriesWithEscapedLabels) {
  const std::string text = RenderMetrics(Sample());
  const std::string source = "{source=\"file:/dev/\\\"odd\\\"\\nname\"";
  EXPECT_TRUE(Has(text, "rngmux_source_bytes_accepted_total" + source + "} 4096")) << text;
  EXPECT_TRUE(Has(text, "rngmux_source_health_failures_total" + source + "} 3"));
  EXPECT_TRUE(Has(text, "rngmux_source_state" + source + ",state=\"standby\"} 1"));
  EXPECT_TRUE(Has(text, "rngmux_source_state" + source + ",state=\"serving\"} 0"));
  EXPECT_TRUE(Has(text, "rngmux_source_serving" + source + "} 0"));
  EXPECT_TRUE(Has(text, "rngmux_source_healthy" + source + "} 1"));
  EXPECT_TRUE(Has(text, "rngmux_health_failures_total 3"));
  EXPECT_TRUE(Has(text, "rngmux_pool_capacity_bytes 8192"));
  EXPECT_TRUE(Has(text, "rngmux_pool_in_bytes_total 4096"));
  EXPECT_TRUE(Has(text, "rngmux_endpoint_clients{endpoint=\"listen tcp:127.0.0.1:0\"} 2"));
  EXPECT_TRUE(
      Has(text, "rngmux_endpoint_served_bytes_total{endpoint=\"listen tcp:127.0.0.1:0\"} 1000"));
  EXPECT_TRUE(Has(text,
                  "rngmux_client_served_bytes{identity=\"uid:1000\",endpoint=\"listen "
                  "tcp:127.0.0.1:0\"} 1000"));
  EXPECT_TRUE(Has(text, "rngmux_served_bytes_total 1000"));
  EXPECT_TRUE(Has(text, "# TYPE rngmux_clients gauge"));
  EXPECT_TRUE(Has(text, "rngmux_clients 2"));
  EXPECT_TRUE(Has(text, "rngmux_connections_total 0")) << "no _total_total";
  EXPECT_TRUE(Has(text, "rngmux_reloads_failed_total 1"));
  EXPECT_TRUE(Has(text, "rngmux_last_reload_success 0"));
  EXPECT_TRUE(Has(text, "rngmux_start_time_seconds 1700000000"));
  // Every family is announced once, before its samples.
  std::size_t pos = 0;
  std::set<std::string> families;
  while ((pos = text.find("# TYPE ", pos)) != std::string::npos) {
    pos += 7;
    const std::string name = text.substr(pos, text.find(' ', pos) - pos);
    EXPECT_TRUE(families.insert(name).second) << name << " announced twice";
  }
  EXPECT_GT(families.size(), 30u);
}

}  // namespace
}  // namespace rngmux
