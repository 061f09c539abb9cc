#include "admin/control_request.h"

#include <gtest/gtest.h>

#include <string>

namespace rngmux {
namespace {

using Result = ControlRequestParser::Result;

Result Feed(ControlRequestParser& parser, const std::string& bytes) {
  return parser.Feed(std::span<const char>(bytes.data(), bytes.size()));
}

TEST(ControlRequestParserTest, ReadsEachCommand) {
  for (auto [text, command] : {std::pair{"status\n", ControlCommand::kStatus},
                               std::pair{"stats\r\n", ControlCommand::kStats},
                               std::pair{"reload\n", ControlCommand::kReload}}) {
    ControlRequestParser parser;
    EXPECT_EQ(Feed(parser, text), Result::kComplete) << text;
    EXPECT_EQ(parser.command(), command) << text;
  }
}

TEST(ControlRequestParserTest, WaitsForTheEndOfTheLineAcrossReads) {
  ControlRequestParser parser;
  EXPECT_EQ(Feed(parser, "sta"), Result::kNeedMore);
  EXPECT_EQ(Feed(parser, "tus"), Result::kNeedMore);
  EXPECT_EQ(Feed(parser, "\nextra ignored"), Result::kComplete);
  EXPECT_EQ(parser.command(), ControlCommand::kStatus);
  EXPECT_EQ(Feed(parser, "reload\n"), Result::kComplete);
  EXPECT_EQ(parser.command(), ControlCommand::kStatus);
}

TEST(ControlRequestParserTest, BadRequestsSayWhy) {
  struct Case {
    std::string input;
    std::string error;
  };
  const Case cases[] = {
      {"frobnicate\n", "unknown request \"frobnicate\" (expected status, stats or reload)"},
      {"\n", "unknown request \"\" (expected status, stats or reload)"},
      {"STATUS\n", "unknown request \"STATUS\" (expected status, stats or reload)"},
      {"status \n", "unknown request \"status \" (expected status, stats or reload)"},
      {std::string("sta\0tus\n", 8), "request has a byte that is not printable ASCII (0x00)"},
      {"stat\rus\n", "request has a byte that is not printable ASCII (0x0d)"},
      {"\xff\n", "request has a byte that is not printable ASCII (0xff)"},
      {std::string(65, 's'), "request line longer than 64 bytes"},
  };
  for (const Case& c : cases) {
    ControlRequestParser parser;
    EXPECT_EQ(Feed(parser, c.input), Result::kBad) << c.input;
    EXPECT_EQ(parser.error(), c.error);
    EXPECT_EQ(Feed(parser, "status\n"), Result::kBad) << "a bad request stays bad";
  }
}

TEST(ControlRequestParserTest, SixtyFourBytesWithoutTheEndAreStillWaiting) {
  ControlRequestParser parser;
  EXPECT_EQ(Feed(parser, std::string(64, 'x')), Result::kNeedMore);
  EXPECT_EQ(Feed(parser, "x"), Result::kBad);
}

}  // namespace
}  // namespace rngmux
