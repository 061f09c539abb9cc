#include "cli/process_cpu.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <climits>
#include <string>

namespace rngmux {
namespace {

TEST(ProcessCpuTest, ParsesTheTimesAfterTheLastParenthesis) {
  const auto t = ParseProcStat(
      "4242 (socat (x) y) S 17 4242 4242 0 -1 4194560 120 0 0 0 31 7 5 3 20 0 1 0 1 2 3\n");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->ppid, 17);
  EXPECT_EQ(t->utime, 31u);
  EXPECT_EQ(t->stime, 7u);
  EXPECT_EQ(t->cutime, 5u);
  EXPECT_EQ(t->cstime, 3u);
}

TEST(ProcessCpuTest, RefusesWhatIsNotAStatLine) {
  for (const char* bad :
       {"", "4242 S 1 2 3", "4242 (x) S 1 2 3", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 1x 2 3 4 5"}) {
    EXPECT_FALSE(ParseProcStat(bad).has_value()) << bad;
  }
}

TEST(ProcessCpuTest, ReadsItsOwnProcessAndRefusesAMissingOne) {
  volatile unsigned spin = 0;
  for (unsigned i = 0; i < 50'000'000; ++i) spin = spin + i;
  auto self = ProcessTreeCpuSeconds(getpid());
  ASSERT_TRUE(self.ok()) << self.status().message();
  EXPECT_GT(*self, 0.0);
  auto missing = ProcessTreeCpuSeconds(INT_MAX);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(),
            "/proc/" + std::to_string(INT_MAX) + "/stat: No such file or directory");
}

}  // namespace
}  // namespace rngmux
