#include "tls/tls_options.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace rngmux {
namespace {

// Parses "key=value,key,..." the way an endpoint spec hands options over: `has_value`
// from the "=", `repeated` when the key came before.
Result<TlsOptions> ParseAll(std::string_view text) {
  TlsOptions options;
  std::vector<std::string> seen;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    if (item.empty()) continue;
    const std::size_t equals = item.find('=');
    const std::string key(item.substr(0, equals));
    const std::string_view value =
        equals == std::string_view::npos ? std::string_view() : item.substr(equals + 1);
    const bool repeated = std::find(seen.begin(), seen.end(), key) != seen.end();
    seen.push_back(key);
    Status status = ParseTlsOption(options, key, value, equals != std::string_view::npos, repeated);
    if (!status.ok()) return status;
  }
  return options;
}

std::string ParseError(std::string_view key, std::string_view value, bool has_value = true,
                       bool repeated = false) {
  TlsOptions options;
  Status status = ParseTlsOption(options, key, value, has_value, repeated);
  return status.ok() ? "OK" : status.message();
}

TEST(TlsOptionKeyTest, RecognisesTlsKeysOnly) {
  EXPECT_TRUE(IsTlsOptionKey("tls"));
  EXPECT_TRUE(IsTlsOptionKey("tls-dir"));
  EXPECT_TRUE(IsTlsOptionKey("tls-anything"));
  EXPECT_TRUE(IsTlsOptionKey("allow-subject"));
  EXPECT_FALSE(IsTlsOptionKey("tlsdir"));
  EXPECT_FALSE(IsTlsOptionKey("qemu"));
  EXPECT_FALSE(IsTlsOptionKey("allow"));
  EXPECT_FALSE(IsTlsOptionKey(""));
}

TEST(ParseTlsOptionTest, DefaultsAreOffWithTenSecondTimeout) {
  const TlsOptions options;
  EXPECT_FALSE(options.enabled);
  EXPECT_FALSE(options.verify.has_value());
  EXPECT_FALSE(options.min_tls13);
  EXPECT_EQ(options.handshake_timeout, std::chrono::seconds(10));
  EXPECT_EQ(options.ToOptionText(), "");
}

TEST(ParseTlsOptionTest, PlainTlsEnables) {
  auto options = ParseAll("tls");
  ASSERT_TRUE(options.ok()) << options.status().message();
  EXPECT_TRUE(options->enabled);
  EXPECT_EQ(*options, [] {
    TlsOptions expected;
    expected.enabled = true;
    return expected;
  }());
}

TEST(ParseTlsOptionTest, EveryOptionSetsItsField) {
  auto options = ParseAll(
      "tls-dir=/etc/pki/qemu,tls-cert=/c.pem,tls-key=/k.pem,tls-ca=/ca.pem,tls-crl=/crl.pem,"
      "tls-verify=off,tls-min=1.3,tls-name=entropy.example,tls-timeout=30,"
      "allow-subject=vm1+10.0.0.7+host.example");
  ASSERT_TRUE(options.ok()) << options.status().message();
  EXPECT_TRUE(options->enabled);
  EXPECT_EQ(options->dir, "/etc/pki/qemu");
  EXPECT_EQ(options->cert, "/c.pem");
  EXPECT_EQ(options->key, "/k.pem");
  EXPECT_EQ(options->ca, "/ca.pem");
  EXPECT_EQ(options->crl, "/crl.pem");
  EXPECT_EQ(options->verify, std::optional<bool>(false));
  EXPECT_TRUE(options->min_tls13);
  EXPECT_EQ(options->server_name, "entropy.example");
  EXPECT_EQ(options->handshake_timeout, std::chrono::seconds(30));
  EXPECT_EQ(options->allow_subjects, (std::vector<std::string>{"vm1", "10.0.0.7", "host.example"}));
}

TEST(ParseTlsOptionTest, AnyTlsOptionImpliesTls) {
  for (const char* text : {"tls-dir=/d", "tls-verify=on", "tls-min=1.2", "tls-timeout=5",
                           "allow-subject=vm1", "tls-name=h"}) {
    auto options = ParseAll(text);
    ASSERT_TRUE(options.ok()) << text << ": " << options.status().message();
    EXPECT_TRUE(options->enabled) << text;
  }
}

TEST(ParseTlsOptionTest, VerifyTakesBooleanWords) {
  const std::pair<const char*, bool> cases[] = {{"on", true},   {"yes", true}, {"true", true},
                                                {"off", false}, {"no", false}, {"false", false}};
  for (const auto& [word, expected] : cases) {
    TlsOptions options;
    Status status = ParseTlsOption(options, "tls-verify", word, true, false);
    ASSERT_TRUE(status.ok()) << word << ": " << status.message();
    EXPECT_EQ(options.verify, std::optional<bool>(expected)) << word;
  }
  for (const char* word : {"", "1", "0", "ON", "maybe", "on "}) {
    EXPECT_EQ(ParseError("tls-verify", word), "tls-verify must be on or off") << word;
  }
}

TEST(ParseTlsOptionTest, MinVersionIsOneTwoOrOneThree) {
  TlsOptions options;
  ASSERT_TRUE(ParseTlsOption(options, "tls-min", "1.3", true, false).ok());
  EXPECT_TRUE(options.min_tls13);
  ASSERT_TRUE(ParseTlsOption(options, "tls-min", "1.2", true, false).ok());
  EXPECT_FALSE(options.min_tls13);
  for (const char* word : {"", "1.1", "1.0", "1.4", "13", "TLSv1.3", "1.3 "}) {
    EXPECT_EQ(ParseError("tls-min", word), "tls-min must be 1.2 or 1.3") << word;
  }
}

TEST(ParseTlsOptionTest, TimeoutIsOneToThreeHundredSeconds) {
  for (const auto& [text, seconds] :
       {std::pair<const char*, int>{"1", 1}, {"10", 10}, {"300", 300}}) {
    TlsOptions options;
    Status status = ParseTlsOption(options, "tls-timeout", text, true, false);
    ASSERT_TRUE(status.ok()) << text << ": " << status.message();
    EXPECT_EQ(options.handshake_timeout, std::chrono::seconds(seconds)) << text;
  }
  for (const char* text : {"0", "301", "-1", "+5", "", "1.5", "10s", "99999999999999999999"}) {
    EXPECT_EQ(ParseError("tls-timeout", text), "tls-timeout must be 1-300 seconds") << text;
  }
}

TEST(ParseTlsOptionTest, RepeatedKeysAreRefused) {
  for (const char* key : {"tls", "tls-dir", "tls-ca", "tls-verify", "allow-subject"}) {
    EXPECT_EQ(ParseError(key, "x", true, true), std::string("option \"") + key + "\" given twice")
        << key;
  }
  auto twice = ParseAll("tls-ca=/a.pem,tls-ca=/b.pem");
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.status().message(), "option \"tls-ca\" given twice");
}

TEST(ParseTlsOptionTest, AllowSubjectRefusesEmptyNames) {
  EXPECT_EQ(ParseError("allow-subject", ""), "allow-subject: empty list");
  for (const char* list : {"+", "vm1+", "+vm1", "vm1++vm2"}) {
    EXPECT_EQ(ParseError("allow-subject", list), "allow-subject: empty name in list") << list;
  }
  EXPECT_EQ(ParseError("allow-subject", "", false), "allow-subject needs a value");
}

TEST(ParseTlsOptionTest, ValueErrors) {
  EXPECT_EQ(ParseError("tls", "on"), "tls takes no value (use tls-dir=DIR, tls-cert=FILE...)");
  EXPECT_EQ(ParseError("tls", "", true), "tls takes no value (use tls-dir=DIR, tls-cert=FILE...)");
  for (const char* key : {"tls-dir", "tls-cert", "tls-key", "tls-ca", "tls-crl", "tls-verify",
                          "tls-min", "tls-name", "tls-timeout"}) {
    EXPECT_EQ(ParseError(key, "", false), std::string(key) + " needs a value") << key;
  }
  for (const char* key : {"tls-dir", "tls-cert", "tls-key", "tls-ca", "tls-crl"}) {
    EXPECT_EQ(ParseError(key, ""), std::string(key) + ": empty path") << key;
  }
  for (const std::string& name :
       std::vector<std::string>{"", "a b", "a,b", "a/b", "a\\b", std::string(254, 'a')}) {
    EXPECT_EQ(ParseError("tls-name", name), "tls-name must be a host name or IP address") << name;
  }
  EXPECT_EQ(ParseError("tls-name", std::string(253, 'a')), "OK");
  EXPECT_EQ(ParseError("tls-bogus", "1"),
            "unknown option \"tls-bogus\" (TLS options: tls, tls-dir=DIR, tls-cert=FILE, "
            "tls-key=FILE, tls-ca=FILE, tls-crl=FILE, tls-verify=on|off, tls-min=1.2|1.3, "
            "tls-name=NAME, tls-timeout=SECONDS, allow-subject=LIST)");
}

TEST(ResolveTlsFilesTest, ServerReadsServerFilesFromDir) {
  TlsOptions options;
  options.enabled = true;
  options.dir = "/etc/pki/qemu";
  const TlsFiles files = ResolveTlsFiles(options, /*server=*/true);
  EXPECT_EQ(files.cert, "/etc/pki/qemu/server-cert.pem");
  EXPECT_EQ(files.key, "/etc/pki/qemu/server-key.pem");
  EXPECT_EQ(files.ca, "/etc/pki/qemu/ca-cert.pem");
  EXPECT_EQ(files.crl, "/etc/pki/qemu/ca-crl.pem");
  EXPECT_FALSE(files.cert_optional);
  EXPECT_TRUE(files.crl_optional);
  EXPECT_TRUE(files.verify);  // a CA from the dir: client certificates required
}

TEST(ResolveTlsFilesTest, ClientReadsOptionalClientFilesFromDir) {
  TlsOptions options;
  options.enabled = true;
  options.dir = "/etc/pki/qemu";
  const TlsFiles files = ResolveTlsFiles(options, /*server=*/false);
  EXPECT_EQ(files.cert, "/etc/pki/qemu/client-cert.pem");
  EXPECT_EQ(files.key, "/etc/pki/qemu/client-key.pem");
  EXPECT_EQ(files.ca, "/etc/pki/qemu/ca-cert.pem");
  EXPECT_EQ(files.crl, "/etc/pki/qemu/ca-crl.pem");
  EXPECT_TRUE(files.cert_optional);
  EXPECT_TRUE(files.crl_optional);
  EXPECT_TRUE(files.verify);
}

TEST(ResolveTlsFilesTest, ExplicitFilesOverrideDir) {
  TlsOptions options;
  options.enabled = true;
  options.dir = "/d";
  options.cert = "/c.pem";
  options.key = "/k.pem";
  options.ca = "/ca.pem";
  options.crl = "/crl.pem";
  for (const bool server : {true, false}) {
    const TlsFiles files = ResolveTlsFiles(options, server);
    EXPECT_EQ(files.cert, "/c.pem");
    EXPECT_EQ(files.key, "/k.pem");
    EXPECT_EQ(files.ca, "/ca.pem");
    EXPECT_EQ(files.crl, "/crl.pem");
    EXPECT_FALSE(files.cert_optional) << server;  // named files must exist
    EXPECT_FALSE(files.crl_optional) << server;
  }
  // One file overridden, the rest still from the dir.
  TlsOptions partly;
  partly.enabled = true;
  partly.dir = "/d";
  partly.ca = "/other-ca.pem";
  const TlsFiles files = ResolveTlsFiles(partly, true);
  EXPECT_EQ(files.cert, "/d/server-cert.pem");
  EXPECT_EQ(files.key, "/d/server-key.pem");
  EXPECT_EQ(files.ca, "/other-ca.pem");
  EXPECT_EQ(files.crl, "/d/ca-crl.pem");
}

TEST(ResolveTlsFilesTest, NoDirMeansOnlyNamedFiles) {
  TlsOptions options;
  options.enabled = true;
  options.cert = "/c.pem";
  options.key = "/k.pem";
  const TlsFiles server = ResolveTlsFiles(options, true);
  EXPECT_EQ(server.cert, "/c.pem");
  EXPECT_EQ(server.ca, "");
  EXPECT_EQ(server.crl, "");
  EXPECT_FALSE(server.crl_optional);
  TlsOptions bare;
  bare.enabled = true;
  const TlsFiles client = ResolveTlsFiles(bare, false);
  EXPECT_EQ(client.cert, "");
  EXPECT_EQ(client.key, "");
  EXPECT_EQ(client.ca, "");
}

TEST(ResolveTlsFilesTest, EffectiveVerifyDefaults) {
  TlsOptions no_ca;
  no_ca.enabled = true;
  no_ca.cert = "/c.pem";
  no_ca.key = "/k.pem";
  EXPECT_FALSE(ResolveTlsFiles(no_ca, true).verify);  // server without CA: no client certs
  EXPECT_TRUE(ResolveTlsFiles(no_ca, false).verify);  // a client always checks the server

  TlsOptions with_ca = no_ca;
  with_ca.ca = "/ca.pem";
  EXPECT_TRUE(ResolveTlsFiles(with_ca, true).verify);
  EXPECT_TRUE(ResolveTlsFiles(with_ca, false).verify);

  TlsOptions off = with_ca;
  off.verify = false;
  EXPECT_FALSE(ResolveTlsFiles(off, true).verify);
  EXPECT_FALSE(ResolveTlsFiles(off, false).verify);

  TlsOptions on = no_ca;
  on.verify = true;
  EXPECT_TRUE(ResolveTlsFiles(on, true).verify);
}

TlsOptions Parsed(std::string_view text) {
  auto options = ParseAll(text);
  EXPECT_TRUE(options.ok()) << text << ": " << options.status().message();
  return options.ok() ? *options : TlsOptions{};
}

std::string CheckError(std::string_view text, bool server) {
  Status status = CheckTlsOptions(Parsed(text), server);
  return status.ok() ? "OK" : status.message();
}

TEST(CheckTlsOptionsTest, GoodCombinations) {
  EXPECT_TRUE(CheckTlsOptions(TlsOptions{}, true).ok());  // TLS off
  EXPECT_EQ(CheckError("tls-dir=/d", true), "OK");
  EXPECT_EQ(CheckError("tls-dir=/d", false), "OK");
  EXPECT_EQ(CheckError("tls-dir=/d,allow-subject=vm1", true), "OK");
  EXPECT_EQ(CheckError("tls-cert=/c,tls-key=/k", true), "OK");  // no client certificates
  EXPECT_EQ(CheckError("tls-ca=/ca", false), "OK");
  EXPECT_EQ(CheckError("tls-verify=off", false), "OK");
  EXPECT_EQ(CheckError("tls-dir=/d,tls-name=entropy.example", false), "OK");
}

TEST(CheckTlsOptionsTest, Errors) {
  EXPECT_EQ(CheckError("tls", true),
            "TLS on a listen endpoint needs a certificate and key: tls-dir=DIR or "
            "tls-cert=FILE and tls-key=FILE");
  EXPECT_EQ(CheckError("tls-cert=/c", true),
            "TLS on a listen endpoint needs a certificate and key: tls-dir=DIR or "
            "tls-cert=FILE and tls-key=FILE");
  EXPECT_EQ(CheckError("tls-cert=/c,tls-ca=/ca", false), "tls-cert and tls-key go together");
  EXPECT_EQ(CheckError("tls-key=/k,tls-ca=/ca", false), "tls-cert and tls-key go together");
  EXPECT_EQ(CheckError("tls", false),
            "tls-verify=on needs a CA: tls-ca=FILE or tls-dir=DIR (or tls-verify=off, which "
            "trusts any server)");
  EXPECT_EQ(CheckError("tls-cert=/c,tls-key=/k,tls-verify=on", true),
            "tls-verify=on needs a CA: tls-ca=FILE or tls-dir=DIR");
  EXPECT_EQ(CheckError("tls-cert=/c,tls-key=/k,allow-subject=vm1", true),
            "allow-subject needs verified client certificates (a CA, and not tls-verify=off)");
  EXPECT_EQ(CheckError("tls-dir=/d,tls-verify=off,allow-subject=vm1", true),
            "allow-subject needs verified client certificates (a CA, and not tls-verify=off)");
  EXPECT_EQ(CheckError("tls-dir=/d,allow-subject=vm1", false),
            "allow-subject applies only to listen endpoints");
  EXPECT_EQ(CheckError("tls-dir=/d,tls-name=h", true),
            "tls-name applies only to the connecting side");
}

TEST(TlsOptionTextTest, RoundTripsThroughParse) {
  for (const char* text : {
           ",tls",
           ",tls-dir=/etc/pki/qemu",
           ",tls-dir=/etc/pki/qemu,tls-min=1.3",
           ",tls-cert=/c.pem,tls-key=/k.pem,tls-ca=/ca.pem,tls-crl=/crl.pem",
           ",tls-ca=/ca.pem,tls-verify=on",
           ",tls-verify=off",
           ",tls-dir=/d,tls-name=entropy.example,tls-timeout=1",
           ",tls-dir=/d,tls-timeout=300,allow-subject=vm1+10.0.0.7",
           ",tls-dir=/d,tls-cert=/c.pem,tls-key=/k.pem,tls-ca=/ca.pem,tls-crl=/crl.pem,"
           "tls-verify=off,tls-min=1.3,tls-name=h,tls-timeout=30,allow-subject=a+b+c",
       }) {
    const TlsOptions options = Parsed(text);
    EXPECT_EQ(options.ToOptionText(), text);
    EXPECT_EQ(Parsed(options.ToOptionText()), options) << text;
  }
}

TEST(TlsOptionTextTest, DefaultsAreNotWritten) {
  const TlsOptions options = Parsed("tls-dir=/d,tls-min=1.2,tls-timeout=10");
  EXPECT_EQ(options.ToOptionText(), ",tls-dir=/d");
  EXPECT_EQ(Parsed(options.ToOptionText()), options);
}

}  // namespace
}  // namespace rngmux
