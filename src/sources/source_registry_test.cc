#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "sources/drivers.h"
#include "sources/source.h"

namespace rngmux {
namespace {

SourceFactoryContext AllowTest() {
  SourceFactoryContext context;
  context.allow_test_source = true;
  return context;
}

std::string ErrorOf(const std::string& spec, const SourceFactoryContext& context = {}) {
  Result<std::unique_ptr<Source>> source = CreateSource(spec, context);
  return source.ok() ? "OK" : source.status().message();
}

std::string ParseErrorOf(const std::string& spec) {
  Result<SourceSpec> parsed = ParseSourceSpec(spec);
  return parsed.ok() ? "OK" : parsed.status().message();
}

std::vector<std::uint8_t> ReadExactly(Source& source, std::size_t size) {
  Interrupt stop;
  std::vector<std::uint8_t> bytes(size);
  std::size_t filled = 0;
  while (filled < size) {
    Result<std::size_t> got = source.Read(std::span(bytes).subspan(filled), stop);
    EXPECT_TRUE(got.ok()) << got.status().message();
    if (!got.ok() || *got == 0) break;
    filled += *got;
  }
  bytes.resize(filled);
  return bytes;
}

std::string Hex(const std::vector<std::uint8_t>& bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (const std::uint8_t b : bytes) {
    hex += kDigits[b >> 4];
    hex += kDigits[b & 15];
  }
  return hex;
}

TEST(ParseSourceSpecTest, SplitsKindArgumentAndOptions) {
  Result<SourceSpec> spec = ParseSourceSpec("file:/dev/ttyUSB0,entropy=6,block=64");
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  EXPECT_EQ(spec->kind, "file");
  EXPECT_EQ(spec->argument, "/dev/ttyUSB0");
  EXPECT_EQ(spec->text, "file:/dev/ttyUSB0,entropy=6,block=64");
  ASSERT_EQ(spec->options.size(), 2u);
  EXPECT_EQ(spec->options.at("entropy"), "6");
  EXPECT_EQ(spec->options.at("block"), "64");
}

TEST(ParseSourceSpecTest, KindAlone) {
  Result<SourceSpec> spec = ParseSourceSpec("getrandom");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->kind, "getrandom");
  EXPECT_EQ(spec->argument, "");
  EXPECT_TRUE(spec->options.empty());
}

TEST(ParseSourceSpecTest, ArgumentKeepsLaterColons) {
  Result<SourceSpec> spec = ParseSourceSpec("test:a:b=c");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->argument, "a:b=c");
}

TEST(ParseSourceSpecTest, ErrorsNameTheSpec) {
  EXPECT_EQ(ParseErrorOf(""), "source \"\": empty source spec");
  EXPECT_EQ(ParseErrorOf("file:/x,entropy"),
            "source \"file:/x,entropy\": option \"entropy\" needs a value (entropy=...)");
  EXPECT_EQ(ParseErrorOf("file:/x,entropy="),
            "source \"file:/x,entropy=\": option \"entropy\" needs a value (entropy=...)");
  EXPECT_EQ(ParseErrorOf(":x"), "source \":x\": missing source kind before \":\"");
  EXPECT_EQ(ParseErrorOf("getrandom,,block=64"),
            "source \"getrandom,,block=64\": empty option between commas");
  EXPECT_EQ(ParseErrorOf("getrandom,"), "source \"getrandom,\": empty option between commas");
  EXPECT_EQ(ParseErrorOf("getrandom,=4"), "source \"getrandom,=4\": option \"=4\" has no name");
  EXPECT_EQ(ParseErrorOf("getrandom,block=64,block=32"),
            "source \"getrandom,block=64,block=32\": option \"block\" given twice");
  const std::string nul("file:/x\0y,block=64", 18);
  EXPECT_EQ(ParseErrorOf(nul), "source \"" + nul + "\": contains a NUL byte");
}

TEST(SourceKindsTest, RowsAreFoundByName) {
  std::vector<std::string> names;
  for (const SourceKind& kind : SourceKinds()) {
    names.push_back(kind.name);
    EXPECT_FALSE(kind.description.empty()) << kind.name;
    EXPECT_TRUE(kind.create) << kind.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"auto", "getrandom", "rdseed", "file", "qwqng", "egd",
                                             "test"}));
}

TEST(CreateSourceTest, UnknownKindListsTheKnownOnes) {
  EXPECT_EQ(ErrorOf("foo"),
            "source \"foo\": unknown kind \"foo\" (known: auto, getrandom, rdseed, file:PATH, "
            "qwqng, egd:ENDPOINT, test:SEED)");
  EXPECT_EQ(ErrorOf("hwrng:/dev/hwrng"),
            "source \"hwrng:/dev/hwrng\": unknown kind \"hwrng\" (known: auto, getrandom, rdseed, "
            "file:PATH, qwqng, egd:ENDPOINT, test:SEED)");
}

TEST(CreateSourceTest, UnknownOptionsNameOptionAndSpec) {
  EXPECT_EQ(ErrorOf("getrandom,foo=1"),
            "source \"getrandom,foo=1\": unknown option \"foo\" (known: entropy, block, threads)");
  EXPECT_EQ(ErrorOf("file:/dev/hwrng,rate=5"),
            "source \"file:/dev/hwrng,rate=5\": unknown option \"rate\" (known: entropy, block)");
  EXPECT_EQ(
      ErrorOf("test:1,speed=5", AllowTest()),
      "source \"test:1,speed=5\": unknown option \"speed\" (known: entropy, block, rate, threads)");
}

TEST(CreateSourceTest, ThreadsOnlyOnFastSourcesAndInRange) {
  for (const char* spec : {"getrandom,threads=0", "getrandom,threads=65", "getrandom,threads=x"}) {
    EXPECT_EQ(ErrorOf(spec), std::string("source \"") + spec +
                                 "\": threads must be a number from 1 to 64, got \"" +
                                 std::string(spec).substr(std::string(spec).find('=') + 1) + "\"");
  }
  EXPECT_EQ(ErrorOf("file:/dev/hwrng,threads=2"),
            "source \"file:/dev/hwrng,threads=2\": unknown option \"threads\" (known: entropy, "
            "block)");
  EXPECT_EQ(ErrorOf("test:1,rate=5,threads=2", AllowTest()),
            "source \"test:1,rate=5,threads=2\": rate= paces one stream; give it without threads=");
  auto made = CreateSource("getrandom,threads=3", SourceFactoryContext{});
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ((*made)->reader_threads(), 3u);
  ASSERT_NE((*made)->NewReader(1), nullptr);
  auto single = CreateSource("getrandom", SourceFactoryContext{});
  ASSERT_TRUE(single.ok());
  EXPECT_EQ((*single)->reader_threads(), 1u);
}

TEST(CreateSourceTest, EntropyMustBeInRange) {
  const std::string expected_tail = "entropy must be bits per byte in (0, 8], got ";
  EXPECT_EQ(ErrorOf("getrandom,entropy=9"),
            "source \"getrandom,entropy=9\": " + expected_tail + "\"9\"");
  EXPECT_EQ(ErrorOf("getrandom,entropy=0"),
            "source \"getrandom,entropy=0\": " + expected_tail + "\"0\"");
  EXPECT_EQ(ErrorOf("getrandom,entropy=-1"),
            "source \"getrandom,entropy=-1\": " + expected_tail + "\"-1\"");
  EXPECT_EQ(ErrorOf("getrandom,entropy=six"),
            "source \"getrandom,entropy=six\": " + expected_tail + "\"six\"");
  EXPECT_EQ(ErrorOf("getrandom,entropy=nan"),
            "source \"getrandom,entropy=nan\": " + expected_tail + "\"nan\"");
  EXPECT_EQ(ErrorOf("getrandom,entropy=8"), "OK");
  EXPECT_EQ(ErrorOf("getrandom,entropy=0.5"), "OK");
}

TEST(CreateSourceTest, EntropyOverridesTheClaim) {
  Result<std::unique_ptr<Source>> source = CreateSource("getrandom,entropy=6.5", {});
  ASSERT_TRUE(source.ok());
  EXPECT_EQ((*source)->claimed_entropy_bits_per_byte(), 6.5);
}

TEST(CreateSourceTest, BlockMustBeInRange) {
  EXPECT_EQ(ErrorOf("getrandom,block=8"),
            "source \"getrandom,block=8\": block must be a byte count from 16 to 65536, got "
            "\"8\"");
  EXPECT_EQ(ErrorOf("getrandom,block=65537"),
            "source \"getrandom,block=65537\": block must be a byte count from 16 to 65536, got "
            "\"65537\"");
  EXPECT_EQ(ErrorOf("getrandom,block=1k"),
            "source \"getrandom,block=1k\": block must be a byte count from 16 to 65536, got "
            "\"1k\"");
  Result<std::unique_ptr<Source>> source = CreateSource("getrandom,block=16", {});
  ASSERT_TRUE(source.ok());
  EXPECT_EQ((*source)->preferred_block_size(), 16u);
}

TEST(CreateSourceTest, ArgumentsWhereNeededAndOnlyThere) {
  EXPECT_EQ(ErrorOf("getrandom:x"), "source \"getrandom:x\": getrandom takes no argument");
  EXPECT_EQ(ErrorOf("rdseed:x"), "source \"rdseed:x\": rdseed takes no argument");
  EXPECT_EQ(ErrorOf("auto:x"), "source \"auto:x\": auto takes no argument");
  EXPECT_EQ(ErrorOf("file"), "source \"file\": file needs an argument (file:PATH)");
  EXPECT_EQ(ErrorOf("file:"), "source \"file:\": file needs an argument (file:PATH)");
  EXPECT_EQ(ErrorOf("test", AllowTest()), "source \"test\": test needs an argument (test:SEED)");
}

TEST(CreateSourceTest, EgdSpecsAreCheckedWhenMade) {
  EXPECT_EQ(ErrorOf("egd"), "source \"egd\": egd needs an argument (egd:ENDPOINT)");
  EXPECT_EQ(ErrorOf("egd:foo:1"),
            "source \"egd:foo:1\": egd upstream \"foo:1\": expected tcp:HOST:PORT or unix:PATH");
  EXPECT_EQ(ErrorOf("egd:tcp:host"),
            "source \"egd:tcp:host\": egd upstream \"tcp:host\": expected tcp:HOST:PORT");
  EXPECT_EQ(ErrorOf("egd:tcp::7000"),
            "source \"egd:tcp::7000\": egd upstream \"tcp::7000\": missing host (tcp:HOST:PORT)");
  EXPECT_EQ(ErrorOf("egd:tcp:host:0"),
            "source \"egd:tcp:host:0\": egd upstream \"tcp:host:0\": port must be 1-65535");
  EXPECT_EQ(ErrorOf("egd:tcp:::1:7000"),
            "source \"egd:tcp:::1:7000\": egd upstream \"tcp:::1:7000\": an IPv6 address needs "
            "brackets (tcp:[::1]:PORT)");
  EXPECT_EQ(ErrorOf("egd:unix:"),
            "source \"egd:unix:\": egd upstream \"unix:\": unix: needs a socket path (unix:PATH)");
  EXPECT_EQ(ErrorOf("egd:tcp:h:1,requests=0"),
            "source \"egd:tcp:h:1,requests=0\": requests must be 1-64, got \"0\"");
  EXPECT_EQ(ErrorOf("egd:tcp:h:1,requests=65"),
            "source \"egd:tcp:h:1,requests=65\": requests must be 1-64, got \"65\"");
  EXPECT_EQ(ErrorOf("egd:tcp:h:1,timeout=0"),
            "source \"egd:tcp:h:1,timeout=0\": timeout must be 1-300 seconds, got \"0\"");
  EXPECT_EQ(ErrorOf("egd:unix:/run/egd.sock,tls"),
            "source \"egd:unix:/run/egd.sock,tls\": TLS options need a tcp: upstream");
  EXPECT_EQ(ErrorOf("egd:tcp:h:1,tls=maybe"),
            "source \"egd:tcp:h:1,tls=maybe\": tls takes no value, or on|off, got \"maybe\"");
  EXPECT_EQ(ErrorOf("egd:unix:/run/egd.sock,tls=off"), "OK");
  EXPECT_EQ(ErrorOf("egd:tcp:h:1,tls,tls"),
            "source \"egd:tcp:h:1,tls,tls\": option \"tls\" given twice");
  EXPECT_EQ(ErrorOf("egd:tcp:h:1,tls-verify=maybe"),
            "source \"egd:tcp:h:1,tls-verify=maybe\": tls-verify must be on or off");
  EXPECT_EQ(ErrorOf("egd:tcp:h:1,tls-dir=/nonexistent"),
            "source \"egd:tcp:h:1,tls-dir=/nonexistent\": tls-ca /nonexistent/ca-cert.pem: No "
            "such file or directory");
  EXPECT_EQ(ErrorOf("egd:tcp:h:1,allow-subject=relay1"),
            "source \"egd:tcp:h:1,allow-subject=relay1\": unknown option \"allow-subject\" (known: "
            "entropy, block, requests, timeout, tls, tls-ca, tls-cert, tls-crl, tls-dir, tls-key, "
            "tls-min, tls-name, tls-timeout, tls-verify)");
  EXPECT_EQ(ErrorOf("getrandom,tls"),
            "source \"getrandom,tls\": unknown option \"tls\" (known: entropy, block, threads)");
  // Valid specs make a source without connecting.
  EXPECT_EQ(ErrorOf("egd:tcp:[::1]:7000,requests=64,timeout=300"), "OK");
  EXPECT_EQ(ErrorOf("egd:unix:/run/rngmux/egd.sock,fips=on"), "OK");
  EXPECT_EQ(ErrorOf("egd:tcp:127.0.0.1:7000,tls,tls-verify=off"), "OK");
  Result<SourceSpec> validated = ValidateSourceSpec("egd:tcp:h:1,tls,tls-name=upstream");
  EXPECT_TRUE(validated.ok()) << validated.status().message();
}

TEST(CreateSourceTest, EgdClaimsSixBitsUnlessTold) {
  Result<std::unique_ptr<Source>> source = CreateSource("egd:tcp:127.0.0.1:7000", {});
  ASSERT_TRUE(source.ok()) << source.status().message();
  EXPECT_EQ((*source)->name(), "egd:tcp:127.0.0.1:7000");
  EXPECT_EQ((*source)->claimed_entropy_bits_per_byte(), 6.0);
  source = CreateSource("egd:tcp:127.0.0.1:7000,entropy=8", {});
  ASSERT_TRUE(source.ok());
  EXPECT_EQ((*source)->claimed_entropy_bits_per_byte(), 8.0);
}

TEST(GetrandomSourceTest, ReadsAndClaimsFullEntropy) {
  Result<std::unique_ptr<Source>> source = CreateSource("getrandom", {});
  ASSERT_TRUE(source.ok()) << source.status().message();
  EXPECT_EQ((*source)->name(), "getrandom");
  EXPECT_EQ((*source)->claimed_entropy_bits_per_byte(), 8.0);
  EXPECT_EQ((*source)->preferred_block_size(), 4096u);
  const std::vector<std::uint8_t> bytes = ReadExactly(**source, 4096);
  EXPECT_EQ(bytes.size(), 4096u);
  EXPECT_NE(bytes, std::vector<std::uint8_t>(4096, 0));
}

TEST(RdseedSourceTest, WorksOrSaysWhyNot) {
  Result<std::unique_ptr<Source>> source = CreateSource("rdseed,block=64", {});
  if (!CpuHasRdseed()) {
    ASSERT_FALSE(source.ok());
    EXPECT_EQ(source.status().message(), "rdseed: this CPU has no RDSEED instruction");
    return;
  }
  ASSERT_TRUE(source.ok()) << source.status().message();
  EXPECT_EQ((*source)->name(), "rdseed,block=64");
  EXPECT_EQ((*source)->claimed_entropy_bits_per_byte(), 8.0);
  EXPECT_EQ((*source)->preferred_block_size(), 64u);
  // Odd sizes exercise the partial last word.
  const std::vector<std::uint8_t> bytes = ReadExactly(**source, 1001);
  EXPECT_EQ(bytes.size(), 1001u);
  EXPECT_NE(bytes, std::vector<std::uint8_t>(1001, 0));
}

TEST(TestSourceTest, IsRefusedUnlessAllowed) {
  EXPECT_EQ(ErrorOf("test:1"),
            "source \"test:1\": test sources produce predictable bytes; pass --allow-test-source "
            "to use one");
}

TEST(TestSourceTest, NameSaysItIsATestSource) {
  Result<std::unique_ptr<Source>> source = CreateSource("test:1", AllowTest());
  ASSERT_TRUE(source.ok()) << source.status().message();
  EXPECT_EQ((*source)->name(), "test:1[TEST-ONLY]");
}

TEST(TestSourceTest, IsTheAes256CtrKeystreamOfTheSeedsSha256) {
  // Known answers from: openssl enc -aes-256-ctr -K $(printf 1 | sha256sum) -iv 0...
  Result<std::unique_ptr<Source>> one = CreateSource("test:1", AllowTest());
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(Hex(ReadExactly(**one, 32)),
            "0eeece4b56edaf659ef5941a4b1e6cbd616122d6f58ad800bab4a36d6f7a5cf4");
  Result<std::unique_ptr<Source>> hello = CreateSource("test:hello", AllowTest());
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(Hex(ReadExactly(**hello, 16)), "4d379e3ff54f33d1b55f45e2dcfd1736");
}

TEST(TestSourceTest, SameSeedSameStreamWhateverTheReadSizes) {
  Result<std::unique_ptr<Source>> a = CreateSource("test:seed", AllowTest());
  Result<std::unique_ptr<Source>> b = CreateSource("test:seed,block=64", AllowTest());
  Result<std::unique_ptr<Source>> c = CreateSource("test:other", AllowTest());
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  std::vector<std::uint8_t> from_a = ReadExactly(**a, 10000);
  std::vector<std::uint8_t> from_b;
  for (std::size_t size : {1, 7, 4096, 5896}) {
    const std::vector<std::uint8_t> piece = ReadExactly(**b, size);
    from_b.insert(from_b.end(), piece.begin(), piece.end());
  }
  EXPECT_EQ(from_a, from_b);
  EXPECT_NE(from_a, ReadExactly(**c, 10000));
}

TEST(TestSourceTest, RateMustBePositive) {
  const std::string tail = "rate must be a positive number of bytes per second, got ";
  EXPECT_EQ(ErrorOf("test:1,rate=0", AllowTest()), "source \"test:1,rate=0\": " + tail + "\"0\"");
  EXPECT_EQ(ErrorOf("test:1,rate=fast", AllowTest()),
            "source \"test:1,rate=fast\": " + tail + "\"fast\"");
}

TEST(TestSourceTest, RateLimitPacesTheLongRunRate) {
  // 200 kB/s, 40 kB: 0.2 s in all. The bound on the other side only guards
  // against a hang; the pacing itself is what the lower bound checks.
  Result<std::unique_ptr<Source>> source = CreateSource("test:1,rate=200000", AllowTest());
  ASSERT_TRUE(source.ok()) << source.status().message();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ReadExactly(**source, 40000).size(), 40000u);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // The first piece (1/20 s worth) goes out at once, so 40 kB take >= 0.15 s.
  EXPECT_GE(elapsed, std::chrono::milliseconds(150));
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

TEST(TestSourceTest, RateLimitedReadStopsWhenInterrupted) {
  Result<std::unique_ptr<Source>> source = CreateSource("test:1,rate=1", AllowTest());
  ASSERT_TRUE(source.ok());
  Interrupt stop;
  std::uint8_t byte[4];
  // The second byte is due one second after the first read began; a read that
  // waited for it instead of noticing the stop returns no sooner than that.
  const auto start = std::chrono::steady_clock::now();
  Result<std::size_t> first = (*source)->Read(byte, stop);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, 1u);  // one byte per second: one byte at a time
  stop.Trigger();
  Result<std::size_t> second = (*source)->Read(byte, stop);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

class AutoSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/rngmux_auto_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    probe_.rng_current_path = dir_ + "/rng_current";
    probe_.hwrng_path = dir_ + "/hwrng";
    probe_.cpu_has_rdseed = [] { return false; };
    probe_.sysfs_root = dir_ + "/sys";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

  std::string dir_;
  AutoProbe probe_;
};

TEST_F(AutoSourceTest, PrefersAnActiveHwrng) {
  Write(probe_.rng_current_path, "virtio_rng.0\n");
  Write(probe_.hwrng_path, "");
  probe_.cpu_has_rdseed = [] { return true; };
  const AutoChoice choice = ResolveAutoSource(probe_);
  EXPECT_EQ(choice.spec, "file:" + probe_.hwrng_path);
  EXPECT_FALSE(choice.fallback);
  EXPECT_EQ(choice.reason, "file:" + probe_.hwrng_path + " (rng_current: virtio_rng.0)");
}

TEST_F(AutoSourceTest, SkipsHwrngWithoutAnActiveDriver) {
  Write(probe_.rng_current_path, "none\n");
  Write(probe_.hwrng_path, "");
  probe_.cpu_has_rdseed = [] { return true; };
  const AutoChoice choice = ResolveAutoSource(probe_);
  EXPECT_EQ(choice.spec, "rdseed");
  EXPECT_FALSE(choice.fallback);
  EXPECT_EQ(choice.reason, "rdseed (no active hardware RNG driver (rng_current: none))");
}

TEST_F(AutoSourceTest, SkipsAnHwrngThatDoesNotOpen) {
  Write(probe_.rng_current_path, "tpm-rng\n");
  const AutoChoice choice = ResolveAutoSource(probe_);
  EXPECT_EQ(choice.spec, "getrandom");
  EXPECT_TRUE(choice.fallback);
  EXPECT_EQ(choice.reason, "getrandom (" + probe_.hwrng_path +
                               ": open: No such file or directory; the CPU has no RDSEED; the "
                               "kernel CSPRNG is a fallback, not a hardware source)");
}

TEST_F(AutoSourceTest, FallsBackToGetrandomWithoutAnyHardware) {
  const AutoChoice choice = ResolveAutoSource(probe_);
  EXPECT_EQ(choice.spec, "getrandom");
  EXPECT_TRUE(choice.fallback);
  EXPECT_NE(choice.reason.find("rng_current missing"), std::string::npos) << choice.reason;
}

TEST_F(AutoSourceTest, PrefersAQngOverEverythingElse) {
  Write(probe_.rng_current_path, "virtio_rng.0\n");
  Write(probe_.hwrng_path, "");
  probe_.cpu_has_rdseed = [] { return true; };
  probe_.probe_qwqng = [](const std::string&) {
    return QwqngPresence{true, true, "qwqng (QNG QWR4M004 at /sys/bus/usb/devices/1-1)"};
  };
  const AutoChoice choice = ResolveAutoSource(probe_);
  EXPECT_EQ(choice.spec, "qwqng");
  EXPECT_FALSE(choice.fallback);
  EXPECT_EQ(choice.reason, "qwqng (QNG QWR4M004 at /sys/bus/usb/devices/1-1)");
}

TEST_F(AutoSourceTest, SkipsAQngItCannotUse) {
  probe_.cpu_has_rdseed = [] { return true; };
  probe_.probe_qwqng = [](const std::string&) {
    return QwqngPresence{false, true, "QNG QWR4M004 is present but not usable"};
  };
  EXPECT_EQ(ResolveAutoSource(probe_).spec, "rdseed");
}

TEST(CreateSourceTest, AutoValidatesItsOptionsBeforeProbing) {
  EXPECT_EQ(ErrorOf("auto,rate=1"),
            "source \"auto,rate=1\": unknown option \"rate\" (known: entropy, block)");
}

}  // namespace
}  // namespace rngmux
