#include "endpoint/address_filter.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>

namespace rngmux {
namespace {

IpAddress Ip(const std::string& text) {
  sockaddr_storage storage{};
  if (text.find(':') != std::string::npos) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    EXPECT_EQ(inet_pton(AF_INET6, text.c_str(), &in6->sin6_addr), 1) << text;
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&storage);
    in->sin_family = AF_INET;
    EXPECT_EQ(inet_pton(AF_INET, text.c_str(), &in->sin_addr), 1) << text;
  }
  IpAddress out;
  EXPECT_TRUE(IpAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), &out));
  return out;
}

AddressFilter ParseOk(const std::string& list) {
  Result<AddressFilter> result = AddressFilter::Parse(list);
  EXPECT_TRUE(result.ok()) << list << ": " << result.status().message();
  return result.ok() ? std::move(result).value() : AddressFilter{};
}

std::string ParseError(const std::string& list) {
  Result<AddressFilter> result = AddressFilter::Parse(list);
  EXPECT_FALSE(result.ok()) << list << " parsed as " << (result.ok() ? result->ToString() : "");
  return result.ok() ? "" : result.status().message();
}

TEST(AddressFilterTest, LoopbackByDefault) {
  const AddressFilter filter = AddressFilter::Loopback();
  EXPECT_EQ(filter.ToString(), "127.0.0.0/8+::1");
  EXPECT_TRUE(filter.LoopbackOnly());
  for (const char* yes : {"127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(filter.Allows(Ip(yes))) << yes;
  }
  for (const char* no : {"128.0.0.1", "10.0.0.1", "::2", "::ffff:10.0.0.1", "0.0.0.0", "::"}) {
    EXPECT_FALSE(filter.Allows(Ip(no))) << no;
  }
}

TEST(AddressFilterTest, ListOfNetworksAndAddresses) {
  const AddressFilter filter = ParseOk("10.0.0.0/8+192.168.1.5+fd00::/8+[2001:db8::7]");
  EXPECT_EQ(filter.ToString(), "10.0.0.0/8+192.168.1.5+fd00::/8+2001:db8::7");
  EXPECT_FALSE(filter.LoopbackOnly());
  for (const char* yes :
       {"10.0.0.1", "10.255.0.9", "192.168.1.5", "::ffff:10.1.2.3", "fd12::1", "2001:db8::7"}) {
    EXPECT_TRUE(filter.Allows(Ip(yes))) << yes;
  }
  for (const char* no : {"11.0.0.1", "192.168.1.6", "127.0.0.1", "::1", "fe00::1", "2001:db8::8"}) {
    EXPECT_FALSE(filter.Allows(Ip(no))) << no;
  }
}

TEST(AddressFilterTest, MappedPrefixIsTheIpv4Prefix) {
  const AddressFilter filter = ParseOk("::ffff:10.0.0.0/104");
  EXPECT_EQ(filter.ToString(), "10.0.0.0/8");
  EXPECT_TRUE(filter.Allows(Ip("10.9.9.9")));
  EXPECT_EQ(ParseError("::ffff:0.0.0.0/96"),
            "\"::ffff:0.0.0.0/96\" is too wide: prefixes shorter than /8 would answer much of "
            "the internet (name your networks, like 10.0.0.0/8)");
}

TEST(AddressFilterTest, LoopbackOnlyMeansEveryEntry) {
  EXPECT_TRUE(ParseOk("127.0.0.1").LoopbackOnly());
  EXPECT_TRUE(ParseOk("127.0.0.0/8+::1").LoopbackOnly());
  EXPECT_FALSE(ParseOk("127.0.0.1+10.0.0.1").LoopbackOnly());
  EXPECT_FALSE(ParseOk("::2").LoopbackOnly());
}

TEST(AddressFilterTest, EveryoneCannotBeSpelled) {
  EXPECT_EQ(ParseError("0.0.0.0/0"),
            "\"0.0.0.0/0\" is too wide: prefixes shorter than /8 would answer much of the "
            "internet (name your networks, like 10.0.0.0/8)");
  EXPECT_EQ(ParseError("::/0"),
            "\"::/0\" is too wide: prefixes shorter than /8 would answer much of the internet "
            "(name your networks, like 10.0.0.0/8)");
  EXPECT_EQ(ParseError("10.0.0.0/8+128.0.0.0/1"),
            "\"128.0.0.0/1\" is too wide: prefixes shorter than /8 would answer much of the "
            "internet (name your networks, like 10.0.0.0/8)");
  EXPECT_EQ(ParseError("2000::/3"),
            "\"2000::/3\" is too wide: prefixes shorter than /8 would answer much of the internet "
            "(name your networks, like 10.0.0.0/8)");
  for (const char* word : {"*", "any", "all", "everyone"}) {
    EXPECT_EQ(ParseError(word), "\"" + std::string(word) +
                                    "\" would answer every sender (an amplifier for spoofed "
                                    "traffic); name your networks, like 10.0.0.0/8");
  }
  EXPECT_EQ(ParseError("0.0.0.0"),
            "\"0.0.0.0\" is the unspecified address, not \"anyone\"; name your networks, like "
            "10.0.0.0/8");
  EXPECT_EQ(ParseError("::"),
            "\"::\" is the unspecified address, not \"anyone\"; name your networks, like "
            "10.0.0.0/8");
}

TEST(AddressFilterTest, MalformedEntries) {
  EXPECT_EQ(ParseError("10.1.2.3/8"),
            "\"10.1.2.3/8\" has host bits set (did you mean 10.0.0.0/8?)");
  EXPECT_EQ(ParseError("fd00::1/8"), "\"fd00::1/8\" has host bits set (did you mean fd00::/8?)");
  EXPECT_EQ(ParseError("10.0.0.0/33"), "\"10.0.0.0/33\" has a bad prefix length (IPv4: 8-32)");
  EXPECT_EQ(ParseError("10.0.0.0/"), "\"10.0.0.0/\" has a bad prefix length (IPv4: 8-32)");
  EXPECT_EQ(ParseError("10.0.0.0/x"), "\"10.0.0.0/x\" has a bad prefix length (IPv4: 8-32)");
  EXPECT_EQ(ParseError("fd00::/200"), "\"fd00::/200\" has a bad prefix length (IPv6: 8-128)");
  EXPECT_EQ(ParseError("foo"),
            "\"foo\" is not an IP address or prefix (like 10.0.0.0/8 or fd00::/8)");
  EXPECT_EQ(ParseError("300.1.1.1"),
            "\"300.1.1.1\" is not an IP address or prefix (like 10.0.0.0/8 or fd00::/8)");
  EXPECT_EQ(ParseError(""), "empty entry");
  EXPECT_EQ(ParseError("10.0.0.1++10.0.0.2"), "empty entry");
  EXPECT_EQ(ParseError("10.0.0.1+"), "empty entry");
  std::string many = "10.0.0.1";
  for (int i = 2; i <= 65; ++i) many += "+10.0.0." + std::to_string(i);
  EXPECT_EQ(ParseError(many), "more than 64 entries");
}

}  // namespace
}  // namespace rngmux
