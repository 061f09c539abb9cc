#include "admin/metrics_server.h"

#include <gtest/gtest.h>

namespace rngmux {
namespace {

TEST(MetricsAddressTest, ParsesNumericAddresses) {
  auto v4 = ParseMetricsAddress("tcp:127.0.0.1:9797");
  ASSERT_TRUE(v4.ok()) << v4.status().message();
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 9797);
  auto v6 = ParseMetricsAddress("tcp:[::1]:0");
  ASSERT_TRUE(v6.ok()) << v6.status().message();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 0);
}

TEST(MetricsAddressTest, ErrorsNameTheInput) {
  const std::pair<const char*, const char*> cases[] = {
      {"127.0.0.1:9797", "metrics address \"127.0.0.1:9797\": expected tcp:HOST:PORT"},
      {"tcp:9797", "metrics address \"tcp:9797\": expected tcp:HOST:PORT"},
      {"tcp:localhost:9797",
       "metrics address \"tcp:localhost:9797\": HOST must be a numeric IP address"},
      {"tcp:::1:9797", "metrics address \"tcp:::1:9797\": HOST must be a numeric IP address"},
      {"tcp:[127.0.0.1]:9797",
       "metrics address \"tcp:[127.0.0.1]:9797\": HOST must be a numeric IP address"},
      {"tcp:127.0.0.1:65536", "metrics address \"tcp:127.0.0.1:65536\": PORT must be 0 to 65535"},
      {"tcp:127.0.0.1:", "metrics address \"tcp:127.0.0.1:\": PORT must be 0 to 65535"},
      {"tcp:127.0.0.1:9x", "metrics address \"tcp:127.0.0.1:9x\": PORT must be 0 to 65535"},
  };
  for (const auto& [text, error] : cases) {
    auto parsed = ParseMetricsAddress(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().message(), error);
  }
}

}  // namespace
}  // namespace rngmux
