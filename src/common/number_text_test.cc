#include "common/number_text.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <limits>

namespace rngmux {
namespace {

TEST(NumberTextTest, WholeTextIntegersWithinRange) {
  EXPECT_EQ(ParseNumber<unsigned long>("1024", 1, 65535), 1024ul);
  EXPECT_EQ(ParseNumber<unsigned long>("007", 1, 65535), 7ul);
  EXPECT_EQ(ParseNumber<unsigned long>("65536", 1, 65535), std::nullopt);
  EXPECT_EQ(ParseNumber<unsigned long>("0", 1, 65535), std::nullopt);
  for (const char* bad : {"", " 1", "1 ", "+1", "-1", "1k", "0x10", "1.0"}) {
    EXPECT_EQ(ParseNumber<unsigned long>(bad, 0, 100), std::nullopt) << bad;
  }
  EXPECT_EQ(ParseNumber<std::uint64_t>("99999999999999999999999", 0,
                                       std::numeric_limits<std::uint64_t>::max()),
            std::nullopt);
  EXPECT_EQ(ParseNumber<int>("-3", -5, 5), -3);
}

TEST(NumberTextTest, OctalForFileModes) {
  EXPECT_EQ(ParseNumber<unsigned>("0660", 0, 07777, 8), 0660u);
  EXPECT_EQ(ParseNumber<unsigned>("0668", 0, 07777, 8), std::nullopt);
  EXPECT_EQ(ParseNumber<unsigned>("17777", 0, 07777, 8), std::nullopt);
}

TEST(NumberTextTest, FiniteDoublesWithinRange) {
  EXPECT_EQ(ParseNumber<double>("4.5", 0.0, 8.0), 4.5);
  EXPECT_EQ(ParseNumber<double>("8", 0.0, 8.0), 8.0);
  EXPECT_EQ(ParseNumber<double>("8.01", 0.0, 8.0), std::nullopt);
  for (const char* bad : {"", "inf", "nan", "1e999", "+1", "1,5", "4.5x"}) {
    EXPECT_EQ(ParseNumber<double>(bad, -1e300, 1e300), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace rngmux
