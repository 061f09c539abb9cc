#include "endpoint/endpoint_spec.h"

#include <gtest/gtest.h>

#include <chrono>
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

TEST(EndpointSpecTest, OnlyTcpAndUdpListenersOnPortZeroBindAnyPort) {
  EXPECT_TRUE(ParseOk(kListen, "tcp:127.0.0.1:0").BindsAnyPort());
  EXPECT_TRUE(ParseOk(kListen, "udp:127.0.0.1:0").BindsAnyPort());
  EXPECT_FALSE(ParseOk(kListen, "tcp:127.0.0.1:7776").BindsAnyPort());
  EXPECT_FALSE(ParseOk(kListen, "unix:/run/rngmux/egd.sock").BindsAnyPort());
  EXPECT_FALSE(ParseOk(kConnect, "tcp:127.0.0.1:7776").BindsAnyPort());
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
  EXPECT_EQ(
      ParseError(kConnect, "sctp:h:1"),
      "connect \"sctp:h:1\": unknown transport \"sctp\" (expected tcp, unix, udp or vhost-user)");
  EXPECT_EQ(ParseError(kListen, "unix:"), "listen \"unix:\": empty path");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,foo"),
            "listen \"tcp:h:1,foo\": unknown option \"foo\" (expected raw, qemu, lead=BYTES, "
            "mode=OCTAL, allow=LIST, allow-user=LIST, allow-group=LIST, weight=N, "
            "share=identity|connection, max-conns=N, rate=BYTES, burst=BYTES, name=NAME, tls, "
            "tls-dir=DIR, tls-*=..., allow-subject=LIST)");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,lead=0"),
            "listen \"tcp:h:1,lead=0\": lead must be 1-1048576 bytes");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,raw,qemu"),
            "listen \"tcp:h:1,raw,qemu\": raw and qemu/lead cannot be combined");
  EXPECT_EQ(ParseError(kConnect, "unix:/x,mode=0660"),
            "connect \"unix:/x,mode=0660\": mode applies only to unix listen endpoints");
  EXPECT_EQ(ParseError(kListen, "unix:/x,mode=999"),
            "listen \"unix:/x,mode=999\": mode must be an octal permission like 0660");
}

TEST(EndpointSpecTest, NameNamesTheSystemdSocketToAdopt) {
  EXPECT_EQ(ParseOk(kListen, "tcp:127.0.0.1:1024,name=egd-tcp").name, "egd-tcp");
  EXPECT_EQ(ParseOk(kListen, "unix:/run/x.sock,name=egd.unix").Describe(),
            "unix:/run/x.sock,name=egd.unix");
  EXPECT_EQ(ParseOk(kListen, "udp:127.0.0.1:1024,name=u").name, "u");
  EXPECT_EQ(ParseOk(kListen, "vhost-user:/run/vm.sock,name=vm1").name, "vm1");
  EXPECT_EQ(ParseOk(kListen, "tcp:127.0.0.1:1024").name, "");
  EXPECT_EQ(ParseError(kConnect, "tcp:h:1,name=egd"),
            "connect \"tcp:h:1,name=egd\": name applies only to listen endpoints");
  const std::string bad =
      "name must be 1-255 printable characters without spaces or \":\" (a systemd "
      "FileDescriptorName=)";
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,name=a:b"), "listen \"tcp:h:1,name=a:b\": " + bad);
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,name="), "listen \"tcp:h:1,name=\": " + bad);
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,name=" + std::string(256, 'a')),
            "listen \"tcp:h:1,name=" + std::string(256, 'a') + "\": " + bad);
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,name=a,name=b"),
            "listen \"tcp:h:1,name=a,name=b\": option \"name\" given twice");
}

TEST(EndpointSpecTest, MalformedAddresses) {
  EXPECT_EQ(ParseError(kListen, "localhost:80"),
            "listen \"localhost:80\": unknown transport \"localhost\" (expected tcp, unix, "
            "udp or vhost-user)");
  EXPECT_EQ(ParseError(kListen, "127.0.0.1"),
            "listen \"127.0.0.1\": expected tcp:HOST:PORT, udp:HOST:PORT or unix:PATH");
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

TEST(EndpointSpecTest, RefusesNulBytes) {
  // inet_pton stops at the NUL: "[::1\0junk]" must not become ::1.
  for (const std::string& text : {std::string("tcp:[::1\0junk]:80", 17),
                                  std::string("tcp:h:1,raw\0", 12), std::string("unix:/a\0b", 9)}) {
    const std::string error = ParseError(kListen, text);
    EXPECT_EQ(error, "listen \"" + text + "\": contains a NUL byte");
  }
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
            "mode=OCTAL, allow=LIST, allow-user=LIST, allow-group=LIST, weight=N, "
            "share=identity|connection, max-conns=N, rate=BYTES, burst=BYTES, name=NAME, tls, "
            "tls-dir=DIR, tls-*=..., allow-subject=LIST)");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,"),
            "listen \"tcp:h:1,\": unknown option \"\" (expected raw, qemu, lead=BYTES, "
            "mode=OCTAL, allow=LIST, allow-user=LIST, allow-group=LIST, weight=N, "
            "share=identity|connection, max-conns=N, rate=BYTES, burst=BYTES, name=NAME, tls, "
            "tls-dir=DIR, tls-*=..., allow-subject=LIST)");
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

TEST(EndpointSpecTest, UdpListenDefaults) {
  const EndpointSpec spec = ParseOk(kListen, "udp:127.0.0.1:1024");
  EXPECT_EQ(spec.transport, TransportKind::kUdp);
  EXPECT_EQ(spec.host, "127.0.0.1");
  EXPECT_EQ(spec.port, 1024);
  EXPECT_EQ(spec.session.lead_bytes, 0u);
  EXPECT_EQ(spec.access.allow.ToString(), "127.0.0.0/8+::1");
  EXPECT_EQ(spec.udp.rate_bytes_per_second, 2u << 20);
  EXPECT_EQ(spec.udp.burst_bytes, 64u << 10);
  EXPECT_EQ(spec.udp.idle, std::chrono::seconds(60));
  EXPECT_EQ(spec.udp.max_peers, 1024u);
  EXPECT_EQ(spec.Address(), "udp:127.0.0.1:1024");
  EXPECT_EQ(spec.Describe(), "udp:127.0.0.1:1024,allow=127.0.0.0/8+::1");
  EXPECT_EQ(spec.LocalAddress(), "");
  EXPECT_TRUE(IsLoopbackEndpoint(spec));
  EXPECT_EQ(ParseOk(kListen, "udp:[::1]:0").Address(), "udp:[::1]:0");
  EXPECT_FALSE(IsLoopbackEndpoint(ParseOk(kListen, "udp:0.0.0.0:1")));
}

TEST(EndpointSpecTest, UdpListenOptions) {
  const EndpointSpec spec =
      ParseOk(kListen,
              "udp:[::]:9,allow=10.0.0.0/8+192.168.1.5+fd00::/8,rate=20000,burst=8192,idle=5,"
              "peers=16");
  EXPECT_EQ(spec.host, "::");
  EXPECT_EQ(spec.access.allow.ToString(), "10.0.0.0/8+192.168.1.5+fd00::/8");
  EXPECT_EQ(spec.udp.rate_bytes_per_second, 20000u);
  EXPECT_EQ(spec.udp.burst_bytes, 8192u);
  EXPECT_EQ(spec.udp.idle, std::chrono::seconds(5));
  EXPECT_EQ(spec.udp.max_peers, 16u);
  EXPECT_EQ(spec.Describe(),
            "udp:[::]:9,allow=10.0.0.0/8+192.168.1.5+fd00::/8,rate=20000,burst=8192,idle=5,"
            "peers=16");
}

TEST(EndpointSpecTest, UdpConnectWithLocalAndPrimer) {
  const EndpointSpec spec = ParseOk(kConnect, "udp:127.0.0.1:4555,local=127.0.0.1:1024,qemu");
  EXPECT_EQ(spec.role, kConnect);
  EXPECT_EQ(spec.udp.local_host, "127.0.0.1");
  EXPECT_EQ(spec.udp.local_port, 1024);
  EXPECT_EQ(spec.session.lead_bytes, 4096u);
  EXPECT_EQ(spec.LocalAddress(), "127.0.0.1:1024");
  EXPECT_EQ(spec.Describe(), "udp:127.0.0.1:4555,lead=4096,local=127.0.0.1:1024");
  const EndpointSpec v6 = ParseOk(kConnect, "udp:[::1]:4555,local=[::1]:0,lead=64");
  EXPECT_EQ(v6.udp.local_host, "::1");
  EXPECT_EQ(v6.udp.local_port, 0);
  EXPECT_EQ(v6.LocalAddress(), "[::1]:0");
  EXPECT_EQ(ParseOk(kConnect, "udp:h:1,local=myhost:7").udp.local_host, "myhost");
  EXPECT_EQ(ParseOk(kConnect, "udp:h:1").LocalAddress(), "");
  EXPECT_EQ(ParseOk(kConnect, "udp:h:1,lead=65536").session.lead_bytes, 65536u);
}

TEST(EndpointSpecTest, UdpRefusesToAnswerEveryone) {
  EXPECT_EQ(ParseError(kListen, "udp:0.0.0.0:1,allow=0.0.0.0/0"),
            "listen \"udp:0.0.0.0:1,allow=0.0.0.0/0\": allow: \"0.0.0.0/0\" is too wide: "
            "prefixes shorter than /8 would answer much of the internet (name your networks, "
            "like 10.0.0.0/8)");
  EXPECT_EQ(ParseError(kListen, "udp:[::]:1,allow=::/0"),
            "listen \"udp:[::]:1,allow=::/0\": allow: \"::/0\" is too wide: prefixes shorter "
            "than /8 would answer much of the internet (name your networks, like 10.0.0.0/8)");
  EXPECT_EQ(ParseError(kListen, "udp:[::]:1,allow=any"),
            "listen \"udp:[::]:1,allow=any\": allow: \"any\" would answer every sender (an "
            "amplifier for spoofed traffic); name your networks, like 10.0.0.0/8");
  EXPECT_EQ(ParseError(kListen, "udp:0.0.0.0:1,allow=0.0.0.0"),
            "listen \"udp:0.0.0.0:1,allow=0.0.0.0\": allow: \"0.0.0.0\" is the unspecified "
            "address, not \"anyone\"; name your networks, like 10.0.0.0/8");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,allow="), "listen \"udp:h:1,allow=\": allow: empty entry");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,allow=10.0.0.1/8"),
            "listen \"udp:h:1,allow=10.0.0.1/8\": allow: \"10.0.0.1/8\" has host bits set (did "
            "you mean 10.0.0.0/8?)");
}

TEST(EndpointSpecTest, UdpDocumentedErrors) {
  EXPECT_EQ(ParseError(kConnect, "udp:h:1,allow=10.0.0.0/8"),
            "connect \"udp:h:1,allow=10.0.0.0/8\": allow applies only to listen endpoints (a "
            "udp connect endpoint answers its one peer)");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,local=127.0.0.1:9"),
            "listen \"udp:h:1,local=127.0.0.1:9\": local applies only to udp connect endpoints");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,qemu"),
            "listen \"udp:h:1,qemu\": qemu/lead would push unsolicited bytes to any sender; it is "
            "for udp connect endpoints (a fixed peer) only");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,lead=64"),
            "listen \"udp:h:1,lead=64\": qemu/lead would push unsolicited bytes to any sender; it "
            "is for udp connect endpoints (a fixed peer) only");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,raw"),
            "listen \"udp:h:1,raw\": raw is not supported on udp");
  EXPECT_EQ(ParseError(kConnect, "udp:h:1,raw"),
            "connect \"udp:h:1,raw\": raw is not supported on udp");
  EXPECT_EQ(ParseError(kConnect, "udp:h:1,lead=8192,burst=4096"),
            "connect \"udp:h:1,lead=8192,burst=4096\": lead must not exceed burst on udp (the "
            "primer is charged to the peer's rate limit)");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,rate=0"),
            "listen \"udp:h:1,rate=0\": rate must be 1-1073741824 bytes per second");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,rate=1073741825"),
            "listen \"udp:h:1,rate=1073741825\": rate must be 1-1073741824 bytes per second");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,burst=100"),
            "listen \"udp:h:1,burst=100\": burst must be 4096-1073741824 bytes");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,idle=0"),
            "listen \"udp:h:1,idle=0\": idle must be 1-86400 seconds");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,idle=1m"),
            "listen \"udp:h:1,idle=1m\": idle must be 1-86400 seconds");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,peers=0"),
            "listen \"udp:h:1,peers=0\": peers must be 1-65536");
  EXPECT_EQ(ParseError(kConnect, "udp:h:1,peers=9"),
            "connect \"udp:h:1,peers=9\": peers applies only to udp listen endpoints");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,rate=1,rate=2"),
            "listen \"udp:h:1,rate=1,rate=2\": option \"rate\" given twice");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,foo"),
            "listen \"udp:h:1,foo\": unknown option \"foo\" (expected qemu, lead=BYTES, "
            "allow=LIST, local=ADDR:PORT, rate=BYTES, burst=BYTES, idle=SECONDS, peers=N, "
            "name=NAME)");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,mode=0600"),
            "listen \"udp:h:1,mode=0600\": mode applies only to unix listen endpoints");
}

TEST(EndpointSpecTest, UdpOptionsOnOtherTransports) {
  EXPECT_EQ(ParseError(kListen, "unix:/x,idle=10"),
            "listen \"unix:/x,idle=10\": idle applies only to udp endpoints");
  EXPECT_EQ(ParseError(kConnect, "tcp:h:1,local=1.2.3.4:5"),
            "connect \"tcp:h:1,local=1.2.3.4:5\": local applies only to udp connect endpoints");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,peers=3"),
            "listen \"tcp:h:1,peers=3\": peers applies only to udp listen endpoints");
}

TEST(EndpointSpecTest, AccessAndShareErrors) {
  EXPECT_EQ(ParseError(kConnect, "tcp:h:1,allow=10.0.0.0/8"),
            "connect \"tcp:h:1,allow=10.0.0.0/8\": allow applies only to listen endpoints");
  EXPECT_EQ(ParseError(kListen, "unix:/x,allow=10.0.0.0/8"),
            "listen \"unix:/x,allow=10.0.0.0/8\": allow applies only to tcp and udp endpoints (a "
            "unix socket has no peer address: use allow-user=/allow-group=)");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,allow-user=root"),
            "listen \"udp:h:1,allow-user=root\": allow-user applies only to unix and tcp "
            "endpoints");
  EXPECT_EQ(ParseError(kConnect, "unix:/x,allow-group=root"),
            "connect \"unix:/x,allow-group=root\": allow-group applies only to listen endpoints");
  EXPECT_EQ(ParseError(kListen, "unix:/x,allow-user=nosuchuser-rngmux"),
            "listen \"unix:/x,allow-user=nosuchuser-rngmux\": allow-user: no user "
            "\"nosuchuser-rngmux\"");
  EXPECT_EQ(ParseError(kListen, "unix:/x,allow-group=nosuchgroup-rngmux"),
            "listen \"unix:/x,allow-group=nosuchgroup-rngmux\": allow-group: no group "
            "\"nosuchgroup-rngmux\"");
  EXPECT_EQ(ParseError(kListen, "unix:/x,allow-user=root+"),
            "listen \"unix:/x,allow-user=root+\": allow-user: empty name in list");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,weight=0"),
            "listen \"tcp:h:1,weight=0\": weight must be 1-1000");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,weight=1001"),
            "listen \"tcp:h:1,weight=1001\": weight must be 1-1000");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,share=tenant"),
            "listen \"tcp:h:1,share=tenant\": share must be identity or connection");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,max-conns=0"),
            "listen \"tcp:h:1,max-conns=0\": max-conns must be 1-65536");
  EXPECT_EQ(ParseError(kConnect, "tcp:h:1,max-conns=2"),
            "connect \"tcp:h:1,max-conns=2\": max-conns applies only to listen endpoints");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,share=connection"),
            "listen \"udp:h:1,share=connection\": share applies only to tcp and unix endpoints");
  EXPECT_EQ(ParseError(kListen, "udp:h:1,weight=2"),
            "listen \"udp:h:1,weight=2\": weight applies only to tcp and unix endpoints");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,burst=65536"),
            "listen \"tcp:h:1,burst=65536\": burst needs rate");
  EXPECT_EQ(ParseError(kListen, "tcp:h:1,weight=2,weight=3"),
            "listen \"tcp:h:1,weight=2,weight=3\": option \"weight\" given twice");
}

TEST(EndpointSpecTest, AccessAndShareOptions) {
  const EndpointSpec tcp =
      ParseOk(kListen,
              "tcp:0.0.0.0:1024,qemu,allow=10.0.0.0/8+127.0.0.0/8,allow-user=0+root,"
              "allow-group=0,weight=3,max-conns=2,rate=10000");
  EXPECT_EQ(tcp.access.allow.ToString(), "10.0.0.0/8+127.0.0.0/8");
  EXPECT_EQ(tcp.access.users.users, (std::vector<uid_t>{0, 0}));
  EXPECT_EQ(tcp.access.users.groups, (std::vector<gid_t>{0}));
  EXPECT_EQ(tcp.share.weight, 3u);
  EXPECT_EQ(tcp.share.max_connections, 2u);
  EXPECT_EQ(tcp.share.rate_bytes_per_second, std::optional<std::uint64_t>(10000));
  EXPECT_EQ(tcp.share.burst_bytes, 65536u) << "default burst: the larger of rate and 64 KiB";
  EXPECT_FALSE(tcp.share.per_connection);
  EXPECT_EQ(tcp.Describe(),
            "tcp:0.0.0.0:1024,lead=4096,allow=10.0.0.0/8+127.0.0.0/8,allow-user=0+0,"
            "allow-group=0,weight=3,max-conns=2,rate=10000,burst=65536");

  const EndpointSpec unix_spec = ParseOk(kListen, "unix:/run/x.sock,share=connection");
  EXPECT_TRUE(unix_spec.share.per_connection);
  EXPECT_EQ(unix_spec.share.max_connections, ShareOptions::kDefaultMaxConnections);
  EXPECT_FALSE(unix_spec.share.rate_bytes_per_second);
  EXPECT_TRUE(unix_spec.access.users.empty());

  // The default stays loopback-only, for TCP listeners as for UDP ones.
  EXPECT_TRUE(ParseOk(kListen, "tcp:0.0.0.0:1").access.allow.LoopbackOnly());
  EXPECT_EQ(ParseOk(kListen, "udp:h:1,rate=4096,burst=8192").udp.burst_bytes, 8192u);
}

TEST(EndpointSpecTest, UdpMalformedAddresses) {
  EXPECT_EQ(ParseError(kListen, "udp:127.0.0.1"),
            "listen \"udp:127.0.0.1\": expected udp:HOST:PORT");
  EXPECT_EQ(ParseError(kListen, "udp:::1:80"),
            "listen \"udp:::1:80\": IPv6 addresses need brackets, like udp:[::1]:PORT");
  EXPECT_EQ(ParseError(kConnect, "udp:h:0"),
            "connect \"udp:h:0\": port must be 1-65535 (0 = any free port, listen only)");
  for (const char* local : {"h", "1.2.3.4", "::1:5", "[::1]5", "[::1:5", "300.1.1.1:5", ":5",
                            "1.2.3.4:65536", "1.2.3.4:x", "a b:5", "[zz]:5"}) {
    const std::string text = std::string("udp:h:1,local=") + local;
    EXPECT_EQ(
        ParseError(kConnect, text),
        "connect \"" + text + "\": local must be ADDR:PORT, like 127.0.0.1:4555 or [::1]:4555");
  }
}

}  // namespace
}  // namespace rngmux

namespace rngmux {
namespace {

TEST(EndpointSpecVhostUserTest, ParsesAndDescribes) {
  auto spec = ParseEndpointSpec(EndpointRole::kListen, "vhost-user:/run/vm1.sock,mode=0660");
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  EXPECT_EQ(spec->transport, TransportKind::kVhostUser);
  EXPECT_EQ(spec->path, "/run/vm1.sock");
  EXPECT_EQ(spec->Address(), "vhost-user:/run/vm1.sock");
  EXPECT_EQ(spec->Describe(), "vhost-user:/run/vm1.sock,mode=0660");
  EXPECT_TRUE(IsLoopbackEndpoint(*spec));
  EXPECT_TRUE(IsUnixSocketEndpoint(*spec));
  auto connect = ParseEndpointSpec(EndpointRole::kConnect, "vhost-user:/q.sock");
  ASSERT_TRUE(connect.ok());
  EXPECT_EQ(connect->role, EndpointRole::kConnect);
}

TEST(EndpointSpecVhostUserTest, Errors) {
  EXPECT_EQ(ParseEndpointSpec(EndpointRole::kListen, "vhost-user:/x,qemu").status().message(),
            "listen \"vhost-user:/x,qemu\": qemu does not apply to vhost-user (the guest's "
            "driver asks through the ring)");
  EXPECT_EQ(ParseEndpointSpec(EndpointRole::kListen, "vhost-user:/x,raw").status().message(),
            "listen \"vhost-user:/x,raw\": raw does not apply to vhost-user (the guest's driver "
            "asks through the ring)");
  EXPECT_EQ(ParseEndpointSpec(EndpointRole::kConnect, "vhost-user:/x,mode=0660").status().message(),
            "connect \"vhost-user:/x,mode=0660\": mode applies only to unix listen endpoints");
  EXPECT_EQ(ParseEndpointSpec(EndpointRole::kListen, "vhost-user:").status().message(),
            "listen \"vhost-user:\": empty path");
}

}  // namespace
}  // namespace rngmux
