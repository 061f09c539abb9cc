#include "endpoint/qemu_chardev.h"

#include <gtest/gtest.h>

#include <string>

namespace rngmux {
namespace {

EndpointSpec ParseOk(const std::string& text, const std::string& extra = "") {
  Result<EndpointSpec> result = ParseQemuChardev(text, extra);
  EXPECT_TRUE(result.ok()) << text << ": " << result.status().message();
  return result.ok() ? std::move(result).value() : EndpointSpec{};
}

std::string ParseError(const std::string& text, const std::string& extra = "") {
  Result<EndpointSpec> result = ParseQemuChardev(text, extra);
  EXPECT_FALSE(result.ok()) << text << " parsed as " << (result.ok() ? result->Describe() : "");
  return result.ok() ? "" : result.status().message();
}

constexpr char kDeviceArgs[] =
    " -object rng-egd,id=rng0,chardev=rng0chr -device virtio-rng-pci,rng=rng0";

TEST(QemuChardevTest, TcpClientMeansRngmuxListens) {
  const EndpointSpec spec = ParseOk("socket,id=c0,host=127.0.0.1,port=1024");
  EXPECT_EQ(spec.role, EndpointRole::kListen);
  EXPECT_EQ(spec.transport, TransportKind::kTcp);
  EXPECT_EQ(spec.host, "127.0.0.1");
  EXPECT_EQ(spec.port, 1024);
  EXPECT_EQ(spec.session.lead_bytes, EndpointSpec::kDefaultQemuLeadBytes);
  EXPECT_FALSE(spec.session.raw);
}

TEST(QemuChardevTest, ClientWithReconnect) {
  const EndpointSpec spec = ParseOk("socket,id=c0,host=127.0.0.1,port=1024,reconnect=5");
  EXPECT_EQ(spec.role, EndpointRole::kListen);
  EXPECT_EQ(spec.port, 1024);
}

TEST(QemuChardevTest, NewerQemuReconnectMs) {
  const EndpointSpec spec = ParseOk("socket,id=c0,path=/run/r.sock,reconnect-ms=1000");
  EXPECT_EQ(spec.role, EndpointRole::kListen);
  EXPECT_EQ(ParseError("socket,id=c0,host=h,port=1,reconnect-ms=soon"),
            "qemu-chardev \"socket,id=c0,host=h,port=1,reconnect-ms=soon\": reconnect-ms: "
            "expected milliseconds");
  EXPECT_EQ(ParseError("socket,id=c0,host=h,port=1,server=on,reconnect-ms=1000"),
            "qemu-chardev \"socket,id=c0,host=h,port=1,server=on,reconnect-ms=1000\": QEMU "
            "refuses reconnect on a server socket");
}

TEST(QemuChardevTest, TcpServerMeansRngmuxConnects) {
  const EndpointSpec spec = ParseOk("socket,id=c0,host=10.0.0.5,port=4444,server=on,wait=off");
  EXPECT_EQ(spec.role, EndpointRole::kConnect);
  EXPECT_EQ(spec.host, "10.0.0.5");
  EXPECT_EQ(spec.port, 4444);
  EXPECT_EQ(spec.session.lead_bytes, EndpointSpec::kDefaultQemuLeadBytes);
}

TEST(QemuChardevTest, LegacyServerFlags) {
  const EndpointSpec spec = ParseOk("socket,id=c0,host=127.0.0.1,port=4444,server,nowait");
  EXPECT_EQ(spec.role, EndpointRole::kConnect);
  EXPECT_EQ(ParseOk("socket,id=c0,path=/p.sock,server,wait").role, EndpointRole::kConnect);
  EXPECT_EQ(ParseOk("socket,id=c0,path=/p.sock,noserver").role, EndpointRole::kListen);
}

TEST(QemuChardevTest, BooleanSpellings) {
  for (const char* on : {"on", "yes", "true"}) {
    EXPECT_EQ(ParseOk(std::string("socket,path=/p,server=") + on).role, EndpointRole::kConnect)
        << on;
  }
  for (const char* off : {"off", "no", "false"}) {
    EXPECT_EQ(ParseOk(std::string("socket,path=/p,server=") + off).role, EndpointRole::kListen)
        << off;
  }
}

TEST(QemuChardevTest, LeadingChardevFlagIsStripped) {
  const EndpointSpec spec = ParseOk("-chardev socket,id=c0,host=127.0.0.1,port=1024");
  EXPECT_EQ(spec.role, EndpointRole::kListen);
  EXPECT_EQ(spec.port, 1024);
}

TEST(QemuChardevTest, UnixPaths) {
  const EndpointSpec client = ParseOk("socket,id=c0,path=/run/egd.sock");
  EXPECT_EQ(client.role, EndpointRole::kListen);
  EXPECT_EQ(client.transport, TransportKind::kUnix);
  EXPECT_EQ(client.path, "/run/egd.sock");
  const EndpointSpec server = ParseOk("socket,id=c0,path=/run/egd.sock,server=on,wait=off");
  EXPECT_EQ(server.role, EndpointRole::kConnect);
  EXPECT_EQ(server.path, "/run/egd.sock");
}

TEST(QemuChardevTest, Ipv6HostIsBareInQemu) {
  const EndpointSpec spec = ParseOk("socket,id=c0,host=::1,port=1024,ipv6=on");
  EXPECT_EQ(spec.host, "::1");
  EXPECT_EQ(spec.Address(), "tcp:[::1]:1024");
  EXPECT_EQ(ParseOk("socket,id=c0,host=[::1],port=1024").host, "::1");
}

TEST(QemuChardevTest, OtherAcceptedKeys) {
  const EndpointSpec spec =
      ParseOk("socket,id=c0,host=localhost,port=1024,nodelay=on,ipv4=on,wait=on");
  EXPECT_EQ(spec.host, "localhost");
}

TEST(QemuChardevTest, ExtraOptionsUseEndpointGrammar) {
  EXPECT_EQ(ParseOk("socket,id=c0,host=127.0.0.1,port=1", "lead=256").session.lead_bytes, 256u);
  EXPECT_EQ(ParseOk("socket,id=c0,path=/p", "mode=0660").unix_mode, 0660u);
  const std::string error = ParseError("socket,id=c0,path=/p,server=on", "mode=0660");
  EXPECT_NE(error.find("qemu-chardev \"socket,id=c0,path=/p,server=on\": "), std::string::npos)
      << error;
  EXPECT_NE(error.find("mode applies only to unix listen endpoints"), std::string::npos) << error;
}

TEST(QemuChardevTest, DocumentedErrors) {
  EXPECT_EQ(ParseError("socket,id=c0"),
            "qemu-chardev \"socket,id=c0\": needs host= and port=, or path=");
  EXPECT_EQ(ParseError("socket,host=h,port=1,path=/x"),
            "qemu-chardev \"socket,host=h,port=1,path=/x\": give host/port or path, not both");
  EXPECT_EQ(ParseError("socket,id=c0,host=h,port=1,tls-creds=t0"),
            "qemu-chardev \"socket,id=c0,host=h,port=1,tls-creds=t0\": tls-creds=t0 names no "
            "-object tls-creds-x509,id=t0 (give it too, as on QEMU's command line: rngmux reads "
            "its dir=)");
  EXPECT_EQ(ParseError("file,path=/x"),
            "qemu-chardev \"file,path=/x\": chardev backend \"file\" cannot carry EGD (expected "
            "socket or udp)");
  EXPECT_EQ(ParseError("socket,host=h,port=1,telnet=on"),
            "qemu-chardev \"socket,host=h,port=1,telnet=on\": unknown key \"telnet\"");
  EXPECT_EQ(ParseError("socket,host=h,port=1,server=maybe"),
            "qemu-chardev \"socket,host=h,port=1,server=maybe\": server: expected on or off");
  EXPECT_EQ(ParseError("socket,host=h,port=1,server=on,reconnect=1"),
            "qemu-chardev \"socket,host=h,port=1,server=on,reconnect=1\": QEMU refuses reconnect "
            "on a server socket");
}

TEST(QemuChardevTest, RefusesNulBytes) {
  const std::string text("socket,host=::1\0junk,port=1", 27);
  EXPECT_EQ(ParseError(text), "qemu-chardev \"" + text + "\": contains a NUL byte");
}

TEST(QemuChardevTest, OtherErrors) {
  EXPECT_EQ(ParseError("socket,host=h"),
            "qemu-chardev \"socket,host=h\": needs host= and port=, or path=");
  EXPECT_EQ(ParseError("socket,host=h,port=1,host=g"),
            "qemu-chardev \"socket,host=h,port=1,host=g\": key \"host\" given twice");
  EXPECT_EQ(ParseError("socket,host=h,port=1,reconnect=soon"),
            "qemu-chardev \"socket,host=h,port=1,reconnect=soon\": reconnect: expected seconds");
  EXPECT_EQ(ParseError("socket,host=h,port=1,telnet"),
            "qemu-chardev \"socket,host=h,port=1,telnet\": unknown key \"telnet\"");
  EXPECT_EQ(ParseError("id=c0,host=h,port=1"),
            "qemu-chardev \"id=c0,host=h,port=1\": expected a chardev like "
            "socket,id=c0,host=H,port=P");
  EXPECT_EQ(ParseError(""),
            "qemu-chardev \"\": expected a chardev like socket,id=c0,host=H,port=P");
  EXPECT_EQ(ParseError("socket,id=c0,host=h,port=0,server=on"),
            "qemu-chardev \"socket,id=c0,host=h,port=0,server=on\": connect \"tcp:h:0,qemu\": port "
            "must be 1-65535 (0 = any free port, listen only)");
}

TEST(QemuArgumentsForTest, RngmuxListensOnTcp) {
  EXPECT_EQ(
      QemuArgumentsFor(ParseEndpointSpec(EndpointRole::kListen, "tcp:127.0.0.1:1024").value()),
      std::string("-chardev socket,id=rng0chr,host=127.0.0.1,port=1024,reconnect=1") + kDeviceArgs);
}

TEST(QemuArgumentsForTest, RngmuxListensOnIpv6) {
  EXPECT_EQ(QemuArgumentsFor(ParseEndpointSpec(EndpointRole::kListen, "tcp:[::1]:1024").value()),
            std::string("-chardev socket,id=rng0chr,host=::1,port=1024,reconnect=1") + kDeviceArgs);
}

TEST(QemuArgumentsForTest, WildcardListenIsReachedThroughLoopback) {
  EXPECT_EQ(
      QemuArgumentsFor(ParseEndpointSpec(EndpointRole::kListen, "tcp:0.0.0.0:9").value()),
      std::string("-chardev socket,id=rng0chr,host=127.0.0.1,port=9,reconnect=1") + kDeviceArgs);
  EXPECT_EQ(QemuArgumentsFor(ParseEndpointSpec(EndpointRole::kListen, "tcp:[::]:9").value()),
            std::string("-chardev socket,id=rng0chr,host=::1,port=9,reconnect=1") + kDeviceArgs);
}

TEST(QemuArgumentsForTest, RngmuxListensOnUnix) {
  EXPECT_EQ(QemuArgumentsFor(
                ParseEndpointSpec(EndpointRole::kListen, "unix:/run/egd.sock,mode=0660").value()),
            std::string("-chardev socket,id=rng0chr,path=/run/egd.sock,reconnect=1") + kDeviceArgs);
}

TEST(QemuArgumentsForTest, RngmuxConnectsOverTcp) {
  EXPECT_EQ(
      QemuArgumentsFor(ParseEndpointSpec(EndpointRole::kConnect, "tcp:10.0.0.5:4444,qemu").value()),
      std::string("-chardev socket,id=rng0chr,host=10.0.0.5,port=4444,server=on,wait=off") +
          kDeviceArgs);
}

TEST(QemuArgumentsForTest, RngmuxConnectsOverUnix) {
  EXPECT_EQ(
      QemuArgumentsFor(ParseEndpointSpec(EndpointRole::kConnect, "unix:/p.sock").value()),
      std::string("-chardev socket,id=rng0chr,path=/p.sock,server=on,wait=off") + kDeviceArgs);
}

TEST(QemuChardevTest, UdpWithoutLocalAddressMeansRngmuxListens) {
  const EndpointSpec spec = ParseOk("udp,id=c0,host=127.0.0.1,port=4555");
  EXPECT_EQ(spec.role, EndpointRole::kListen);
  EXPECT_EQ(spec.transport, TransportKind::kUdp);
  EXPECT_EQ(spec.host, "127.0.0.1");
  EXPECT_EQ(spec.port, 4555);
  // A listener never pushes: QEMU's requests are answered, nothing more.
  EXPECT_EQ(spec.session.lead_bytes, 0u);
  EXPECT_EQ(spec.access.allow.ToString(), "127.0.0.0/8+::1");
  EXPECT_EQ(ParseOk("-chardev udp,id=c0,host=::1,port=9,ipv6=on").Address(), "udp:[::1]:9");
}

TEST(QemuChardevTest, UdpWithLocalAddressMeansRngmuxConnects) {
  const EndpointSpec spec =
      ParseOk("udp,id=c0,host=127.0.0.1,port=4555,localaddr=127.0.0.1,localport=4556");
  EXPECT_EQ(spec.role, EndpointRole::kConnect);
  EXPECT_EQ(spec.transport, TransportKind::kUdp);
  EXPECT_EQ(spec.host, "127.0.0.1");
  EXPECT_EQ(spec.port, 4556);
  EXPECT_EQ(spec.udp.local_host, "127.0.0.1");
  EXPECT_EQ(spec.udp.local_port, 4555);
  EXPECT_EQ(spec.session.lead_bytes, EndpointSpec::kDefaultQemuLeadBytes);
  EXPECT_EQ(spec.Describe(), "udp:127.0.0.1:4556,lead=4096,local=127.0.0.1:4555");
  const EndpointSpec v6 = ParseOk("udp,id=c0,host=::1,port=7,localaddr=[::1],localport=8");
  EXPECT_EQ(v6.Describe(), "udp:[::1]:8,lead=4096,local=[::1]:7");
}

TEST(QemuChardevTest, UdpExtraOptions) {
  EXPECT_EQ(ParseOk("udp,id=c0,host=0.0.0.0,port=9", "allow=10.0.0.0/8").access.allow.ToString(),
            "10.0.0.0/8");
  EXPECT_EQ(ParseOk("udp,host=h,port=9,localaddr=h,localport=8", "lead=64").session.lead_bytes,
            64u);
}

TEST(QemuChardevTest, UdpErrors) {
  EXPECT_EQ(ParseError("udp,id=c0,port=1"),
            "qemu-chardev \"udp,id=c0,port=1\": needs host= and port=");
  EXPECT_EQ(ParseError("udp,id=c0,host=h,port=1,localport=5"),
            "qemu-chardev \"udp,id=c0,host=h,port=1,localport=5\": give localaddr= and "
            "localport= together (rngmux needs QEMU's exact address to send to it)");
  EXPECT_EQ(ParseError("udp,id=c0,host=h,port=1,localaddr=h"),
            "qemu-chardev \"udp,id=c0,host=h,port=1,localaddr=h\": give localaddr= and "
            "localport= together (rngmux needs QEMU's exact address to send to it)");
  EXPECT_EQ(ParseError("udp,id=c0,host=h,port=1,server=on"),
            "qemu-chardev \"udp,id=c0,host=h,port=1,server=on\": unknown key \"server\" for a udp "
            "chardev");
  EXPECT_EQ(ParseError("udp,id=c0,host=h,port=1,reconnect=1"),
            "qemu-chardev \"udp,id=c0,host=h,port=1,reconnect=1\": unknown key \"reconnect\" for "
            "a udp chardev");
  EXPECT_EQ(ParseError("socket,id=c0,host=h,port=1,localport=5"),
            "qemu-chardev \"socket,id=c0,host=h,port=1,localport=5\": unknown key \"localport\" "
            "for a socket chardev");
  EXPECT_EQ(ParseError("udp,id=c0,host=h,port=1,localaddr=h,localport=0"),
            "qemu-chardev \"udp,id=c0,host=h,port=1,localaddr=h,localport=0\": connect "
            "\"udp:h:0,local=h:1,qemu\": port must be 1-65535 (0 = any free port, listen only)");
}

TEST(QemuArgumentsForTest, RngmuxListensOnUdp) {
  EXPECT_EQ(
      QemuArgumentsFor(ParseEndpointSpec(EndpointRole::kListen, "udp:127.0.0.1:4555").value()),
      std::string("-chardev udp,id=rng0chr,host=127.0.0.1,port=4555") + kDeviceArgs);
  EXPECT_EQ(QemuArgumentsFor(ParseEndpointSpec(EndpointRole::kListen, "udp:[::]:4555").value()),
            std::string("-chardev udp,id=rng0chr,host=::1,port=4555") + kDeviceArgs);
}

TEST(QemuArgumentsForTest, RngmuxSendsOverUdp) {
  EXPECT_EQ(QemuArgumentsFor(ParseEndpointSpec(EndpointRole::kConnect,
                                               "udp:127.0.0.1:4556,local=127.0.0.1:4555,qemu")
                                 .value()),
            std::string("-chardev udp,id=rng0chr,host=127.0.0.1,port=4555,localaddr=127.0.0.1,"
                        "localport=4556") +
                kDeviceArgs);
}

// What rngmux prints for QEMU must parse back to the endpoint it was made from.
TEST(QemuArgumentsForTest, RoundTripsThroughParseQemuChardev) {
  for (const auto& [role, text] :
       {std::pair{EndpointRole::kListen, "tcp:127.0.0.1:1024"},
        std::pair{EndpointRole::kListen, "tcp:[::1]:1024"},
        std::pair{EndpointRole::kListen, "unix:/run/egd.sock"},
        std::pair{EndpointRole::kConnect, "tcp:10.0.0.5:4444"},
        std::pair{EndpointRole::kConnect, "unix:/p.sock"},
        std::pair{EndpointRole::kListen, "udp:127.0.0.1:4555"},
        std::pair{EndpointRole::kListen, "udp:[::1]:4555"},
        std::pair{EndpointRole::kConnect, "udp:127.0.0.1:4556,local=127.0.0.1:4555"}}) {
    const EndpointSpec endpoint = ParseEndpointSpec(role, text).value();
    const std::string args = QemuArgumentsFor(endpoint);
    const std::string chardev = args.substr(0, args.find(" -object"));
    const EndpointSpec back = ParseOk(chardev);
    EXPECT_EQ(back.role, endpoint.role) << text;
    EXPECT_EQ(back.Address(), endpoint.Address()) << text;
    EXPECT_EQ(back.LocalAddress(), endpoint.LocalAddress()) << text;
  }
}

}  // namespace
}  // namespace rngmux

namespace rngmux {
namespace {

TEST(QemuChardevVhostUserTest, BothDirections) {
  auto listen = ParseQemuChardev(
      "-chardev socket,id=c0,path=/run/vm1.sock -device vhost-user-rng-pci,chardev=c0");
  ASSERT_TRUE(listen.ok()) << listen.status().message();
  EXPECT_EQ(listen->role, EndpointRole::kListen);
  EXPECT_EQ(listen->Describe(), "vhost-user:/run/vm1.sock");
  auto connect = ParseQemuChardev(
      "socket,id=c0,path=/run/q.sock,server=on,wait=on -device vhost-user-rng-pci,chardev=c0");
  ASSERT_TRUE(connect.ok()) << connect.status().message();
  EXPECT_EQ(connect->role, EndpointRole::kConnect);
  EXPECT_EQ(connect->Describe(), "vhost-user:/run/q.sock");
}

TEST(QemuChardevVhostUserTest, Errors) {
  EXPECT_EQ(
      ParseQemuChardev("socket,id=c0,host=h,port=1 -device vhost-user-rng-pci").status().message(),
      "qemu-chardev \"socket,id=c0,host=h,port=1 -device vhost-user-rng-pci\": vhost-user "
      "needs a unix socket chardev (socket,path=...)");
  const std::string reconnect =
      ParseQemuChardev("socket,id=c0,path=/p,reconnect=1 -device vhost-user-rng-pci")
          .status()
          .message();
  EXPECT_NE(reconnect.find("reconnect= aborts QEMU 7.2 with vhost-user-rng"), std::string::npos)
      << reconnect;
  EXPECT_EQ(ParseQemuChardev("socket,id=c0,path=/p -device virtio-rng-pci").status().message(),
            "qemu-chardev \"socket,id=c0,path=/p -device virtio-rng-pci\": device "
            "\"virtio-rng-pci\" is not vhost-user-rng-pci (an rng-egd guest needs only the "
            "-chardev)");
}

TEST(QemuChardevVhostUserTest, ArgumentsIncludeSharedMemory) {
  auto listen = ParseEndpointSpec(EndpointRole::kListen, "vhost-user:/run/vm1.sock");
  ASSERT_TRUE(listen.ok());
  EXPECT_EQ(QemuArgumentsFor(*listen),
            "-m 1024 -object memory-backend-memfd,id=mem,size=1024M,share=on -numa "
            "node,memdev=mem -chardev socket,id=rng0chr,path=/run/vm1.sock -device "
            "vhost-user-rng-pci,chardev=rng0chr");
  auto connect = ParseEndpointSpec(EndpointRole::kConnect, "vhost-user:/q.sock");
  ASSERT_TRUE(connect.ok());
  EXPECT_EQ(QemuArgumentsFor(*connect),
            "-m 1024 -object memory-backend-memfd,id=mem,size=1024M,share=on -numa "
            "node,memdev=mem -chardev socket,id=rng0chr,path=/q.sock,server=on,wait=on -device "
            "vhost-user-rng-pci,chardev=rng0chr");
}

}  // namespace
}  // namespace rngmux

namespace rngmux {
namespace {

// What the equivalent --listen/--connect endpoint describes itself as.
std::string Described(EndpointRole role, const std::string& spec) {
  Result<EndpointSpec> endpoint = ParseEndpointSpec(role, spec);
  return endpoint.ok() ? endpoint->Describe() : "error: " + endpoint.status().message();
}

constexpr char kClientCreds[] = " -object tls-creds-x509,id=t0,dir=/etc/pki/qemu,endpoint=client";
constexpr char kServerCreds[] =
    " -object tls-creds-x509,id=t0,dir=/etc/pki/qemu,endpoint=server,verify-peer=on";

// QEMU as TLS client: rngmux listens with the same directory (its server-*.pem).
TEST(QemuChardevTlsTest, QemuClientMeansRngmuxListensWithTlsDir) {
  const EndpointSpec spec = ParseOk(
      std::string("socket,id=c0,host=127.0.0.1,port=4444,reconnect=1,tls-creds=t0") + kClientCreds);
  EXPECT_EQ(spec.role, EndpointRole::kListen);
  EXPECT_EQ(spec.port, 4444);
  EXPECT_EQ(spec.Describe(),
            Described(EndpointRole::kListen, "tcp:127.0.0.1:4444,qemu,tls-dir=/etc/pki/qemu"));
}

// QEMU as TLS server: rngmux connects (its client-*.pem); tls-authz is QEMU's business.
TEST(QemuChardevTlsTest, QemuServerMeansRngmuxConnectsWithTlsDir) {
  const std::string chardev =
      "-chardev socket,id=c0,host=127.0.0.1,port=4444,server=on,wait=off,tls-creds=t0,"
      "tls-authz=authz0";
  const EndpointSpec spec = ParseOk(chardev + kServerCreds +
                                    " -object authz-simple,id=authz0,identity=O=acme,,CN=rngmux");
  EXPECT_EQ(spec.role, EndpointRole::kConnect);
  EXPECT_EQ(spec.Describe(),
            Described(EndpointRole::kConnect, "tcp:127.0.0.1:4444,qemu,tls-dir=/etc/pki/qemu"));
}

TEST(QemuChardevTlsTest, ObjectsMayComeFirstAndInAnyNumber) {
  const EndpointSpec spec = ParseOk(
      "-object tls-creds-x509,id=other,dir=/x,endpoint=server -object "
      "tls-creds-x509,id=t0,dir=/pki,endpoint=client,priority=NORMAL,sanity-check=off "
      "-chardev socket,id=c0,host=127.0.0.1,port=4444,tls-creds=t0");
  EXPECT_EQ(spec.role, EndpointRole::kListen);
  EXPECT_EQ(spec.Describe(),
            Described(EndpointRole::kListen, "tcp:127.0.0.1:4444,qemu,tls-dir=/pki"));
}

TEST(QemuChardevTlsTest, LinesMayBeBrokenAsInAShellScript) {
  const EndpointSpec spec = ParseOk(
      "-object tls-creds-x509,id=t0,dir=/pki,endpoint=client\n  "
      "-chardev\tsocket,id=c0,host=127.0.0.1,"
      "port=4444,tls-creds=t0\n");
  EXPECT_EQ(spec.Describe(),
            Described(EndpointRole::kListen, "tcp:127.0.0.1:4444,qemu,tls-dir=/pki"));
}

TEST(QemuChardevTlsTest, ExtraOptionsStillApply) {
  const EndpointSpec spec =
      ParseOk(std::string("socket,id=c0,host=127.0.0.1,port=4444,tls-creds=t0") + kClientCreds,
              "allow-subject=qemu-vm1");
  EXPECT_EQ(spec.Describe(),
            Described(EndpointRole::kListen,
                      "tcp:127.0.0.1:4444,qemu,tls-dir=/etc/pki/qemu,allow-subject=qemu-vm1"));
}

TEST(QemuArgumentsForTest, TlsEndpointsGiveQemuTheCredentialsObject) {
  auto listen =
      ParseEndpointSpec(EndpointRole::kListen, "tcp:127.0.0.1:4444,qemu,tls-dir=/etc/pki/qemu");
  ASSERT_TRUE(listen.ok()) << listen.status().message();
  EXPECT_EQ(QemuArgumentsFor(*listen),
            std::string("-object tls-creds-x509,id=rng0tls,dir=/etc/pki/qemu,endpoint=client "
                        "-chardev socket,id=rng0chr,host=127.0.0.1,port=4444,reconnect=1,"
                        "tls-creds=rng0tls") +
                kDeviceArgs);
  auto connect =
      ParseEndpointSpec(EndpointRole::kConnect, "tcp:127.0.0.1:4444,qemu,tls-dir=/etc/pki/qemu");
  ASSERT_TRUE(connect.ok()) << connect.status().message();
  EXPECT_EQ(QemuArgumentsFor(*connect),
            std::string("-object tls-creds-x509,id=rng0tls,dir=/etc/pki/qemu,endpoint=server "
                        "-chardev socket,id=rng0chr,host=127.0.0.1,port=4444,server=on,wait=off,"
                        "tls-creds=rng0tls") +
                kDeviceArgs);
  // what rngmux prints leads back to the same endpoint
  const std::string printed = QemuArgumentsFor(*listen);
  const Result<EndpointSpec> back =
      ParseQemuChardev(printed.substr(0, printed.find(" -object rng-egd")));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->Describe(), listen->Describe());
}

TEST(QemuChardevTlsTest, Errors) {
  const auto error = [](const std::string& text) {
    return ParseQemuChardev(text).status().message();
  };
  const std::string unix_chardev = "socket,id=c0,path=/p.sock,tls-creds=t0";
  EXPECT_EQ(error(unix_chardev + kClientCreds),
            "qemu-chardev \"" + unix_chardev + kClientCreds +
                "\": 'tls_creds' option is incompatible with 'unix' address type (QEMU refuses "
                "it too)");
  const std::string server_chardev = "socket,id=c0,host=h,port=1,server=on,tls-creds=t0";
  EXPECT_EQ(error(server_chardev + kClientCreds),
            "qemu-chardev \"" + server_chardev + kClientCreds +
                "\": tls-creds=t0 has endpoint=client but the chardev listens (server=on): QEMU "
                "expects endpoint=server");
  const std::string client_chardev = "socket,id=c0,host=h,port=1,tls-creds=t0";
  EXPECT_EQ(error(client_chardev + kServerCreds),
            "qemu-chardev \"" + client_chardev + kServerCreds +
                "\": tls-creds=t0 has endpoint=server but the chardev connects: QEMU expects "
                "endpoint=client");
  EXPECT_EQ(error("socket,id=c0,host=h,port=1,tls-authz=a0"),
            "qemu-chardev \"socket,id=c0,host=h,port=1,tls-authz=a0\": tls-authz needs "
            "tls-creds (QEMU refuses it too)");
  EXPECT_EQ(error("socket,host=h,port=1,tls-creds=t0 -object tls-creds-x509,id=t0"),
            "qemu-chardev \"socket,host=h,port=1,tls-creds=t0 -object tls-creds-x509,id=t0\": "
            "-object tls-creds-x509,id=t0 needs dir=");
  EXPECT_EQ(error("socket,host=h,port=1 -object tls-creds-psk,id=t0,dir=/d"),
            "qemu-chardev \"socket,host=h,port=1 -object tls-creds-psk,id=t0,dir=/d\": object "
            "\"tls-creds-psk\" is not supported: rngmux takes x509 credentials (tls-creds-x509)");
  EXPECT_EQ(error("socket,host=h,port=1 -object rng-egd,id=r0,chardev=c0"),
            "qemu-chardev \"socket,host=h,port=1 -object rng-egd,id=r0,chardev=c0\": object "
            "\"rng-egd\" is not part of the chardev (give its tls-creds-x509 and authz objects)");
  EXPECT_EQ(error("socket,host=h,port=1 -object tls-creds-x509,id=t0,dir=/d,endpoint=both"),
            "qemu-chardev \"socket,host=h,port=1 -object "
            "tls-creds-x509,id=t0,dir=/d,endpoint=both\": tls-creds-x509 endpoint: expected "
            "client or server");
  EXPECT_EQ(error("socket,host=h,port=1 -object tls-creds-x509,id=t0,dir=/d,colour=red"),
            "qemu-chardev \"socket,host=h,port=1 -object "
            "tls-creds-x509,id=t0,dir=/d,colour=red\": unknown key \"colour\" for a "
            "tls-creds-x509 object");
  EXPECT_EQ(error("socket,host=h,port=1 -object tls-creds-x509,id=t0,dir=/d -object "
                  "tls-creds-x509,id=t0,dir=/e"),
            "qemu-chardev \"socket,host=h,port=1 -object tls-creds-x509,id=t0,dir=/d -object "
            "tls-creds-x509,id=t0,dir=/e\": two objects with id \"t0\"");
  EXPECT_EQ(error("socket,host=h,port=1 -chardev socket,host=g,port=2"),
            "qemu-chardev \"socket,host=h,port=1 -chardev socket,host=g,port=2\": give one "
            "-chardev");
  EXPECT_EQ(error("-object tls-creds-x509,id=t0,dir=/d"),
            "qemu-chardev \"-object tls-creds-x509,id=t0,dir=/d\": expected a chardev like "
            "socket,id=c0,host=H,port=P");
  EXPECT_EQ(error("udp,host=h,port=1,tls-creds=t0"),
            "qemu-chardev \"udp,host=h,port=1,tls-creds=t0\": unknown key \"tls-creds\" for a "
            "udp chardev");
  const std::string vhost =
      "socket,id=c0,path=/p,tls-creds=t0 -device vhost-user-rng-pci" + std::string(kClientCreds);
  EXPECT_NE(error(vhost).find("'tls_creds' option is incompatible with 'unix' address type"),
            std::string::npos)
      << error(vhost);
}

}  // namespace
}  // namespace rngmux
