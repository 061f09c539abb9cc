#include "transport/endpoint_spec.h"

#include <gtest/gtest.h>

#include <string>

namespace rngmux {
namespace {

EndpointSpec ParseOk(EndpointRole role, const std::string& text) {
  Result<EndpointSpec> result = ParseEndpointSpec(role, text);
  EXPECT_TRUE(result.ok()) << text << ": " << result.status().message();
  return result.ok() ? std::move(result).value() : EndpointSpec{};
}

std::string ParseError(EndpointRole role, const std::string& text) {
  Result<EndpointSpec> result = ParseEndpointSpec(role, text);
  EXPECT_FALSE(result.ok()) << text << " parsed as " << (result.ok() ? result->Describe() : "");
  return result.ok() ? "" : result.status().message();
}

constexpr EndpointRole kListen = EndpointRole::kListen;
constexpr EndpointRole kConnect = EndpointRole::kConnect;

TEST(EndpointSpecTest, TcpIpv4) {
  const EndpointSpec spec = ParseOk(kListen, "tcp:127.0.0.1:1024");
  EXPECT_EQ(spec.role, kListen);
  EXPECT_EQ(spec.transport, TransportKind::kTcp);
  EXPECT_EQ(spec.host, "127.0.0.1");
  EXPECT_EQ(spec.port, 1024);
  EXPECT_FALSE(spec.session.raw);
  EXPECT_EQ(spec.session.lead_bytes, 0u);
  EXPECT_FALSE(spec.unix_mode.has_value());
  EXPECT_EQ(spec.text, "tcp:127.0.0.1:1024");
  EXPECT_EQ(spec.Address(), "tcp:127.0.0.1:1024");
  EXPECT_EQ(spec.Describe(), "tcp:127.0.0.1:1024");
}

TEST(EndpointSpecTest, TcpHostNameAndMaxPort) {
  const EndpointSpec spec = ParseOk(kConnect, "tcp:rng-host.example:65535");
  EXPECT_EQ(spec.role, kConnect);
  EXPECT_EQ(spec.host, "rng-host.example");
  EXPECT_EQ(spec.port, 65535);
}

TEST(EndpointSpecTest, TcpIpv6InBrackets) {
  const EndpointSpec spec = ParseOk(kListen, "tcp:[::1]:1024");
  EXPECT_EQ(spec.host, "::1");
  EXPECT_EQ(spec.port, 1024);
  EXPECT_EQ(spec.Address(), "tcp:[::1]:1024");
}

TEST(EndpointSpecTest, PortZeroOnlyForListen) {
  EXPECT_EQ(ParseOk(kListen, "tcp:127.0.0.1:0").port, 0);
  EXPECT_EQ(ParseError(kConnect, "tcp:h:0"),
            "connect \"tcp:h:0\": port must be 1-65535 (0 = any free port, listen only)");
}

TEST(EndpointSpecTest, Unix) {
  const EndpointSpec spec = ParseOk(kListen, "unix:/run/rngmux.sock");
  EXPECT_EQ(spec.transport, TransportKind::kUnix);
  EXPECT_EQ(spec.path, "/run/rngmux.sock");
  EXPECT_EQ(spec.Address(), "unix:/run/rngmux.sock");
  EXPECT_EQ(spec.Describe(), "unix:/run/rngmux.sock");
}

TEST(EndpointSpecTest, UnixModeIsOctal) {
  EXPECT_EQ(ParseOk(kListen, "unix:/x,mode=0660").unix_mode, 0660u);
  EXPECT_EQ(ParseOk(kListen, "unix:/x,mode=660").unix_mode, 0660u);
  EXPECT_EQ(ParseOk(kListen, "unix:/x,mode=0777").unix_mode, 0777u);
  EXPECT_EQ(ParseOk(kListen, "unix:/x,mode=0").unix_mode, 0u);
  EXPECT_EQ(ParseOk(kListen, "unix:/x,mode=0600").Describe(), "unix:/x,mode=0600");
}

TEST(EndpointSpecTest, QemuSetsDefaultLead) {
  const EndpointSpec spec = ParseOk(kListen, "tcp:127.0.0.1:1024,qemu");
  EXPECT_EQ(spec.session.lead_bytes, EndpointSpec::kDefaultQemuLeadBytes);
  EXPECT_EQ(spec.Describe(), "tcp:127.0.0.1:1024,lead=4096");
  EXPECT_EQ(spec.Address(), "tcp:127.0.0.1:1024");
}

TEST(EndpointSpecTest, LeadSetsLeadWhateverTheOrderWithQemu) {
  EXPECT_EQ(ParseOk(kListen, "tcp:h:1,lead=256").session.lead_bytes, 256u);
  EXPECT_EQ(ParseOk(kListen, "tcp:h:1,qemu,lead=256").session.lead_bytes, 256u);
  EXPECT_EQ(ParseOk(kListen, "tcp:h:1,lead=256,qemu").session.lead_bytes, 256u);
  EXPECT_EQ(ParseOk(kListen, "tcp:h:1,lead=1048576").session.lead_bytes, 1048576u);
}

TEST(EndpointSpecTest, Raw) {
  const EndpointSpec spec = ParseOk(kConnect, "unix:/x,raw");
  EXPECT_TRUE(spec.session.raw);
  EXPECT_EQ(spec.session.lead_bytes, 0u);
  EXPECT_EQ(spec.Describe(), "unix:/x,raw");
}

TEST(EndpointSpecTest, DescribeListsEveryOption) {
  EXPECT_EQ(ParseOk(kListen, "unix:/x,mode=660,lead=100").Describe(), "unix:/x,lead=100,mode=0660");
  EXPECT_EQ(ParseOk(kListen, "tcp:[::1]:9,qemu").Describe(), "tcp:[::1]:9,lead=4096");
}

TEST(EndpointSpecTest, DocumentedErrors) {
  EXPECT_EQ(ParseError(kListen, "tcp:127.0.0.1"),
            "listen \"tcp:127.0.0.1\": expected tcp:HOST:PORT");
  EXPECT_EQ(
      ParseError(kListen, "tcp:127.0.0.1:99999"),
      "listen \"tcp:127.0.0.1:99999\": port must be 1-65535 (0 = any free port, listen only)");
  EXPECT_EQ(ParseError(kListen, "tcp:[::1:80"),
            "listen \"tcp:[::1:80\": missing \"]\" in IPv6 address");
  EXPECT_EQ(ParseError(kConnect, "udp:h:1"),
            "connect \"udp:h:1\": unknown transport \"udp\" (expected tcp or unix)");
  EXPECT_EQ(ParseError(kListen, "unix:"), "listen \"unix:\": empty path");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,foo"),
            "listen \"tcp:h:1,foo\": unknown option \"foo\" (expected raw, qemu, lead=BYTES, "
            "mode=OCTAL)");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,lead=0"),
            "listen \"tcp:h:1,lead=0\": lead must be 1-1048576 bytes");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,raw,qemu"),
            "listen \"tcp:h:1,raw,qemu\": raw and qemu/lead cannot be combined");
  EXPECT_EQ(ParseError(kConnect, "unix:/x,mode=0660"),
            "connect \"unix:/x,mode=0660\": mode applies only to unix listen endpoints");
  EXPECT_EQ(ParseError(kListen, "unix:/x,mode=999"),
            "listen \"unix:/x,mode=999\": mode must be an octal permission like 0660");
}

TEST(EndpointSpecTest, MalformedAddresses) {
  EXPECT_EQ(ParseError(kListen, "localhost:80"),
            "listen \"localhost:80\": unknown transport \"localhost\" (expected tcp or unix)");
  EXPECT_EQ(ParseError(kListen, "127.0.0.1"),
            "listen \"127.0.0.1\": expected tcp:HOST:PORT or unix:PATH");
  EXPECT_EQ(ParseError(kListen, "tcp::80"), "listen \"tcp::80\": expected tcp:HOST:PORT");
  EXPECT_EQ(ParseError(kListen, "tcp:h:"), "listen \"tcp:h:\": expected tcp:HOST:PORT");
  EXPECT_EQ(ParseError(kListen, "tcp:[::1]"), "listen \"tcp:[::1]\": expected tcp:HOST:PORT");
  EXPECT_EQ(ParseError(kListen, "tcp:[::1]80"), "listen \"tcp:[::1]80\": expected tcp:HOST:PORT");
  EXPECT_EQ(ParseError(kListen, "tcp:h:http"),
            "listen \"tcp:h:http\": port must be 1-65535 (0 = any free port, listen only)");
  EXPECT_EQ(ParseError(kListen, "tcp:h:-1"),
            "listen \"tcp:h:-1\": port must be 1-65535 (0 = any free port, listen only)");
  EXPECT_EQ(ParseError(kListen, "tcp:h:65536"),
            "listen \"tcp:h:65536\": port must be 1-65535 (0 = any free port, listen only)");
  EXPECT_EQ(ParseError(kListen, "tcp:::1:80"),
            "listen \"tcp:::1:80\": IPv6 addresses need brackets, like tcp:[::1]:PORT");
  EXPECT_EQ(ParseError(kListen, "tcp:[fe80::zz]:80"),
            "listen \"tcp:[fe80::zz]:80\": \"fe80::zz\" is not an IPv6 address");
  EXPECT_EQ(ParseError(kListen, "tcp:300.1.1.1:80"),
            "listen \"tcp:300.1.1.1:80\": \"300.1.1.1\" is not an IPv4 address");
  EXPECT_EQ(ParseError(kListen, "tcp:a b:80"), "listen \"tcp:a b:80\": invalid host name \"a b\"");
  EXPECT_EQ(ParseError(kListen, "unix:" + std::string(108, 'p')),
            "listen \"unix:" + std::string(108, 'p') + "\": path is longer than 107 bytes");
  EXPECT_TRUE(ParseEndpointSpec(kListen, "unix:" + std::string(107, 'p')).ok());
}

TEST(EndpointSpecTest, MalformedOptions) {
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,lead=1048577"),
            "listen \"tcp:h:1,lead=1048577\": lead must be 1-1048576 bytes");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,lead=4k"),
            "listen \"tcp:h:1,lead=4k\": lead must be 1-1048576 bytes");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,lead=1,lead=2"),
            "listen \"tcp:h:1,lead=1,lead=2\": option \"lead\" given twice");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,lead=64,raw"),
            "listen \"tcp:h:1,lead=64,raw\": raw and qemu/lead cannot be combined");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,raw=1"),
            "listen \"tcp:h:1,raw=1\": unknown option \"raw=1\" (expected raw, qemu, lead=BYTES, "
            "mode=OCTAL)");
  EXPECT_EQ(
      ParseError(kListen, "tcp:h:1,"),
      "listen \"tcp:h:1,\": unknown option \"\" (expected raw, qemu, lead=BYTES, mode=OCTAL)");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,mode=0660"),
            "listen \"tcp:h:1,mode=0660\": mode applies only to unix listen endpoints");
  EXPECT_EQ(ParseError(kListen, "unix:/x,mode=01777"),
            "listen \"unix:/x,mode=01777\": mode must be an octal permission like 0660");
  EXPECT_EQ(ParseError(kListen, "unix:/x,mode=0680"),
            "listen \"unix:/x,mode=0680\": mode must be an octal permission like 0660");
  EXPECT_EQ(ParseError(kListen, "unix:/x,mode="),
            "listen \"unix:/x,mode=\": mode must be an octal permission like 0660");
}

TEST(EndpointSpecTest, LoopbackEndpoints) {
  for (const char* text : {"tcp:127.0.0.1:1", "tcp:127.255.3.4:1", "tcp:[::1]:1", "tcp:localhost:1",
                           "tcp:LocalHost:1", "tcp:[::ffff:127.0.0.1]:1", "unix:/run/x.sock"}) {
    EXPECT_TRUE(IsLoopbackEndpoint(ParseOk(kListen, text))) << text;
  }
}

TEST(EndpointSpecTest, NonLoopbackEndpoints) {
  for (const char* text : {"tcp:0.0.0.0:1", "tcp:[::]:1", "tcp:128.0.0.1:1", "tcp:10.0.0.1:1",
                           "tcp:[::2]:1", "tcp:[::ffff:10.0.0.1]:1", "tcp:localhost.evil.com:1",
                           "tcp:myhost:1", "tcp:126.255.255.255:1"}) {
    EXPECT_FALSE(IsLoopbackEndpoint(ParseOk(kListen, text))) << text;
  }
}

}  // namespace
}  // namespace rngmux
