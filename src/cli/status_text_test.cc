#include "cli/status_text.h"

#include <gtest/gtest.h>

namespace rngmux {
namespace {

TEST(StatusTextTest, TablesAlignTextLeftAndNumbersRight) {
  TextTable table({"Name", "Bytes"}, {false, true});
  table.Row({"a", "1"});
  table.Row({"longer", "12345678"});
  EXPECT_EQ(table.Render(),
            "Name       Bytes\n"
            "a              1\n"
            "longer  12345678\n");
}

TEST(StatusTextTest, Durations) {
  EXPECT_EQ(FormatDuration(0), "00:00:00");
  EXPECT_EQ(FormatDuration(3725.9), "01:02:05");
  EXPECT_EQ(FormatDuration(3 * 86400 + 61), "3d 00:01:01");
}

TEST(StatusTextTest, AFailedReloadShowsItsMessage) {
  const auto status = nlohmann::ordered_json::parse(R"({
    "version": "0.1.0", "pid": 7, "uptime_seconds": 61, "now": 1700000100, "config_file": "",
    "reload": {"succeeded": 0, "failed": 1, "last_ok": false, "last_time": 1700000000,
               "last_message": "rngmux.toml:3: pool-size: expected an integer"},
    "sources": [{"name": "test:1", "state": "serving", "healthy": true, "bytes_accepted": 4096,
                 "rate_bytes_per_second": 2048.4, "blocks_failed": 1, "read_errors": 2,
                 "last_change": 1700000090, "last_error": ""}],
    "pool": {"available": 1024, "capacity": 4096, "bytes_in": 4096, "bytes_out": 3072},
    "endpoints": [], "clients": [], "client_groups": 0})");
  const std::string text = FormatStatusText(status);
  EXPECT_NE(text.find("rngmux 0.1.0, pid 7, up 00:01:01, configured by its command line\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Last reload: 2023-11-14 22:13:20 UTC, FAILED: rngmux.toml:3: pool-size: "
                      "expected an integer (0 ok, 1 failed)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("test:1  serving  ok       4096      2048         3  00:00:10 ago\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Pool: 1024 of 4096 bytes ready (25%), 4096 bytes in, 3072 bytes out\n"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace rngmux
