#include "admin/http_request.h"

#include <gtest/gtest.h>

#include <string>

namespace rngmux {
namespace {

using Result = HttpRequestParser::Result;

Result Feed(HttpRequestParser& parser, const std::string& bytes) {
  return parser.Feed(std::span<const char>(bytes.data(), bytes.size()));
}

TEST(HttpRequestParserTest, ReadsAPrometheusScrape) {
  HttpRequestParser parser;
  EXPECT_EQ(
      Feed(parser,
           "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9797\r\nUser-Agent: Prometheus/2.42.0\r\n"
           "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\nX-Prometheus-Scrape-Timeout-"
           "Seconds: 10\r\n\r\n"),
      Result::kComplete);
  EXPECT_EQ(parser.method(), "GET");
  EXPECT_EQ(parser.path(), "/metrics");
}

TEST(HttpRequestParserTest, ByteByByteWithBareNewlinesAndAQuery) {
  HttpRequestParser parser;
  const std::string request = "\r\nHEAD /metrics?name[]=x HTTP/1.0\nHost: a\n\n";
  for (std::size_t i = 0; i + 1 < request.size(); ++i) {
    ASSERT_EQ(Feed(parser, request.substr(i, 1)), Result::kNeedMore) << i;
  }
  EXPECT_EQ(Feed(parser, "\n"), Result::kComplete);
  EXPECT_EQ(parser.method(), "HEAD");
  EXPECT_EQ(parser.path(), "/metrics");
}

TEST(HttpRequestParserTest, BadRequestsSayWhy) {
  struct Case {
    std::string input;
    std::string error;
  };
  const Case cases[] = {
      {"GET /metrics\r\n", "malformed request line"},
      {"GET  /metrics HTTP/1.1\r\n", "malformed request line"},
      {"GET metrics HTTP/1.1\r\n", "malformed request line"},
      {"G(T /metrics HTTP/1.1\r\n", "malformed request line"},
      {"GET /metrics HTTP/1.1 x\r\n", "malformed request line"},
      {"GET /metrics FTP/1.1\r\n", "malformed request line"},
      {"GET /metrics HTTP/2.0\r\n", "unsupported HTTP version \"HTTP/2.0\""},
      {"GET /metrics HTTP/1.1\r\nno colon\r\n", "malformed header line"},
      {"GET /metrics HTTP/1.1\r\n: empty name\r\n", "malformed header line"},
      {"GET /metrics HTTP/1.1\r\nBad Name: x\r\n", "malformed header line"},
      {std::string("GET /\0 HTTP/1.1\r\n", 17), "request has a byte that is not allowed (0x00)"},
      {"\x16\x03\x01", "request has a byte that is not allowed (0x16)"},
      {"GET /metrics HTTP/1.1\r\nX: " + std::string(9000, 'a'),
       "request head longer than 8192 bytes"},
  };
  for (const Case& c : cases) {
    HttpRequestParser parser;
    EXPECT_EQ(Feed(parser, c.input), Result::kBad) << c.input.substr(0, 40);
    EXPECT_EQ(parser.error(), c.error) << c.input.substr(0, 40);
  }
}

TEST(HttpRequestParserTest, AHeadOfExactlyTheLimitIsAccepted) {
  const std::string start = "GET /metrics HTTP/1.1\r\nX: ";
  const std::string end = "\r\n\r\n";
  HttpRequestParser parser;
  EXPECT_EQ(
      Feed(parser,
           start + std::string(HttpRequestParser::kMaxHeadBytes - start.size() - end.size(), 'a') +
               end),
      Result::kComplete);
}

}  // namespace
}  // namespace rngmux
