#include "server/daemon_status.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace rngmux {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

TEST(RateTrackerTest, RateIsTheIncreaseOverTheLastInterval) {
  RateTracker rate;
  const steady_clock::time_point t0{};
  rate.Sample(t0, 1000);
  EXPECT_EQ(rate.rate(), 0) << "one sample is no interval";
  rate.Sample(t0 + milliseconds(2000), 5000);
  EXPECT_DOUBLE_EQ(rate.rate(), 2000);
  rate.Sample(t0 + milliseconds(2500), 5000);
  EXPECT_DOUBLE_EQ(rate.rate(), 0);
  rate.Sample(t0 + milliseconds(3000), 10);  // a replaced source starts again
  EXPECT_DOUBLE_EQ(rate.rate(), 0);
  rate.Sample(t0 + milliseconds(4000), 110);
  EXPECT_DOUBLE_EQ(rate.rate(), 100);
}

TEST(DaemonStatusTest, JsonHasEveryPartAndCounter) {
  DaemonStatus status;
  status.started = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  SourceSnapshot source;
  source.name = "test:1";
  source.state = "serving";
  status.sources.push_back(source);
  status.endpoints.push_back({"listen unix:/x", "unix:/x", 1, 42, 0, 0});
  status.reload.failed = 1;
  status.reload.last_ok = false;
  status.reload.last_message = "rngmux.toml:3: bad";
  ServerCounters counters;
  counters.served_bytes = 42;
  status.counters = CounterValues(counters);
  const nlohmann::ordered_json json = StatusToJson(status);
  EXPECT_EQ(json["started"], 1700000000.0);
  EXPECT_EQ(json["sources"][0]["name"], "test:1");
  EXPECT_EQ(json["sources"][0]["last_change"], 0.0);
  EXPECT_EQ(json["endpoints"][0]["served_bytes"], 42);
  EXPECT_EQ(json["reload"]["last_ok"], false);
  EXPECT_EQ(json["reload"]["last_message"], "rngmux.toml:3: bad");
  EXPECT_EQ(json["counters"]["served_bytes"], 42);
  EXPECT_EQ(json["counters"].size(), CounterValues(counters).size());
  for (const char* key : {"pool", "clients", "client_groups", "uptime_seconds", "serving"}) {
    EXPECT_TRUE(json.contains(key)) << key;
  }
}

}  // namespace
}  // namespace rngmux
