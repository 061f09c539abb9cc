#include "common/log.h"

#include <gtest/gtest.h>

namespace rngmux {
namespace {

std::chrono::system_clock::time_point At(std::int64_t millis) {
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(millis));
}

TEST(LogTest, PlainLinesCarryTheirOwnUtcTimestamp) {
  EXPECT_EQ(FormatLogLine(LogLevel::kWarning, "pool low", false, At(1700000000123)),
            "2023-11-14T22:13:20.123Z rngmux warning: pool low\n");
}

TEST(LogTest, JournalLinesCarryThePriorityAndNoTimestamp) {
  EXPECT_EQ(FormatLogLine(LogLevel::kDebug, "a", true, At(1)), "<7>rngmux debug: a\n");
  EXPECT_EQ(FormatLogLine(LogLevel::kInfo, "b", true, At(1)), "<6>rngmux info: b\n");
  EXPECT_EQ(FormatLogLine(LogLevel::kWarning, "c", true, At(1)), "<4>rngmux warning: c\n");
  EXPECT_EQ(FormatLogLine(LogLevel::kError, "d", true, At(1)), "<3>rngmux error: d\n");
}

TEST(LogTest, JournalStreamMustNameStderrsDeviceAndInode) {
  EXPECT_TRUE(JournalStreamMatches("8:12345", 8, 12345));
  EXPECT_FALSE(JournalStreamMatches("8:12345", 8, 12346));
  EXPECT_FALSE(JournalStreamMatches("9:12345", 8, 12345));
  EXPECT_FALSE(JournalStreamMatches("", 0, 0));
  EXPECT_FALSE(JournalStreamMatches("8", 8, 0));
  EXPECT_FALSE(JournalStreamMatches(":12345", 0, 12345));
  EXPECT_FALSE(JournalStreamMatches("8:12345x", 8, 12345));
  EXPECT_FALSE(JournalStreamMatches("-8:12345", 8, 12345));
  EXPECT_FALSE(JournalStreamMatches("8:99999999999999999999999", 8, 0));
}

}  // namespace
}  // namespace rngmux
