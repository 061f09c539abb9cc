#include "config/serve_settings.h"

#include <gtest/gtest.h>

#include "config/config_file.h"

namespace rngmux {
namespace {

std::string BuildError(const ServeSettings& settings) {
  Result<ServeConfig> config = BuildServeConfig(settings);
  return config.ok() ? "OK" : config.status().message();
}

TEST(ServeSettingsTest, DefaultsAreServeConfigs) {
  Result<ServeConfig> config = BuildServeConfig(ServeSettings{});
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->sources, std::vector<std::string>{"auto"});
  EXPECT_EQ(config->control_path, kDefaultControlPath);
  EXPECT_EQ(config->metrics_address, "");
  ASSERT_EQ(config->endpoints.size(), 1u);
  EXPECT_EQ(config->endpoints[0].text, kDefaultEndpoint);
  EXPECT_TRUE(config->print_qemu_arguments);
}

TEST(ServeSettingsTest, ErrorsNameTheFlagOrTheFileLine) {
  ServeSettings settings;
  settings.pool_bytes = 1;
  EXPECT_EQ(BuildError(settings), "--pool-size 1: must be 4096 to 1073741824 bytes");
  Result<ServeSettings> file = ParseConfig("\npool-size = 1\n", "rngmux.toml");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(BuildError(*file), "rngmux.toml:2: pool-size 1: must be 4096 to 1073741824 bytes");
  file = ParseConfig("log-level = \"loud\"\n", "rngmux.toml");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(BuildError(*file),
            "rngmux.toml:1: log-level \"loud\": expected debug, info, warning or error");
  file = ParseConfig("mix-min-sources = 1\n", "rngmux.toml");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(BuildError(*file), "rngmux.toml:1: mix-min-sources needs --source-mode mix");
  file = ParseConfig("source-mode = \"failover\"\nmix-min-sources = 1\n", "rngmux.toml");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(BuildError(*file), "rngmux.toml:2: mix-min-sources needs source-mode = \"mix\"");
  file = ParseConfig("health-alpha = 50\n", "rngmux.toml");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(BuildError(*file), "rngmux.toml:1: health-alpha: must be 20 to 40 (alpha = 2^-N)");
  file = ParseConfig("write-threads = 65\n", "rngmux.toml");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(BuildError(*file), "rngmux.toml:1: write-threads 65: must be 0 to 64");
  settings = ServeSettings{};
  settings.write_threads = 65;
  EXPECT_EQ(BuildError(settings), "--write-threads 65: must be 0 to 64");
  settings.write_threads = 64;
  EXPECT_EQ(BuildError(settings), "OK");
}

TEST(ServeSettingsTest, ControlAndMetrics) {
  ServeSettings settings;
  settings.control = "none";
  settings.metrics = "tcp:0.0.0.0:9797";
  Result<ServeConfig> config = BuildServeConfig(settings);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->control_path, "");
  EXPECT_EQ(config->metrics_address, "tcp:0.0.0.0:9797");
  EXPECT_EQ(ServeConfigWarnings(*config),
            std::vector<std::string>{"metrics tcp:0.0.0.0:9797 is not a loopback address: anyone "
                                     "who can reach it reads the metrics"});
  settings.control = std::string(108, 'x');
  EXPECT_EQ(BuildError(settings),
            "--control \"" + settings.control + "\": path is longer than 107 bytes");
  settings.control = "";
  settings.metrics = "unix:/tmp/m.sock";
  EXPECT_EQ(BuildError(settings), "--metrics \"unix:/tmp/m.sock\": expected tcp:HOST:PORT");
  settings.metrics = "tcp:127.0.0.1:9797,qemu";
  EXPECT_EQ(BuildError(settings), "--metrics \"tcp:127.0.0.1:9797,qemu\": expected tcp:HOST:PORT");
  settings.metrics = "tcp:127.0.0.1:99999";
  EXPECT_EQ(BuildError(settings),
            "--metrics \"tcp:127.0.0.1:99999\": port must be 1-65535 (0 = any free port, listen "
            "only)");
}

TEST(ServeSettingsTest, FlagsOverrideTheFile) {
  Result<ServeSettings> file = ParseConfig(
      "pool-size = 8192\nlog-level = \"debug\"\nallow-test-source = true\n"
      "[[source]]\nspec = \"test:1\"\n"
      "[[listen]]\naddress = \"tcp:127.0.0.1:1024\"\n"
      "[[connect]]\naddress = \"tcp:127.0.0.1:2048\"\n",
      "rngmux.toml");
  ASSERT_TRUE(file.ok()) << file.status().message();
  ServeSettings flags;
  flags.pool_bytes = 1;  // not given: the file's value stays
  flags.log_level = "warning";
  flags.listen = {"tcp:127.0.0.1:3000", "tcp:127.0.0.1:3001"};
  flags.given = {{"log-level", "--log-level"}, {"listen", "--listen"}};
  Result<ServeConfig> config = BuildServeConfig(OverlaySettings(*file, flags));
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->pool_bytes, 8192u);
  EXPECT_EQ(config->log_level, "warning");
  EXPECT_TRUE(config->allow_test_source);
  EXPECT_EQ(config->sources, std::vector<std::string>{"test:1"});
  EXPECT_EQ(config->config_file, "rngmux.toml");
  // --listen replaced the file's listen list; its connect list stays.
  ASSERT_EQ(config->endpoints.size(), 3u);
  EXPECT_EQ(config->endpoints[0].id, "listen tcp:127.0.0.1:3000");
  EXPECT_EQ(config->endpoints[1].id, "listen tcp:127.0.0.1:3001");
  EXPECT_EQ(config->endpoints[2].id, "connect tcp:127.0.0.1:2048");
  // An error in a flag that overrides the file names the flag.
  flags.given["pool-size"] = "--pool-size";
  EXPECT_EQ(BuildError(OverlaySettings(*file, flags)),
            "--pool-size 1: must be 4096 to 1073741824 bytes");
}

TEST(ServeSettingsTest, TestSourceNeedsItsFlag) {
  ServeSettings settings;
  settings.sources = {"getrandom", "test:1"};
  EXPECT_EQ(BuildError(settings),
            "source \"test:1\": test sources produce predictable bytes; pass "
            "--allow-test-source to use one");
  settings.allow_test_source = true;
  EXPECT_EQ(BuildError(settings), "OK");
}

TEST(ServeSettingsTest, DuplicateEndpointAcrossKinds) {
  ServeSettings settings;
  settings.listen = {"tcp:127.0.0.1:1025,qemu"};
  settings.qemu_chardev = {"socket,id=c0,host=127.0.0.1,port=1025"};
  EXPECT_EQ(BuildError(settings), "endpoint \"listen tcp:127.0.0.1:1025\" is given twice");
}

}  // namespace
}  // namespace rngmux

namespace rngmux {
namespace {

TEST(ServeSettingsTest, SandboxSettings) {
  Result<ServeConfig> defaults = BuildServeConfig(ServeSettings{});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->seccomp, SeccompMode::kOn);
  EXPECT_EQ(defaults->user, "");

  ServeSettings settings;
  settings.seccomp = "maybe";
  EXPECT_EQ(BuildError(settings), "--seccomp \"maybe\": expected on, off or log");
  settings.seccomp = "log";
  settings.group = "nogroup";
  EXPECT_EQ(BuildError(settings), "--group needs --user");
  settings.user = "nobody";
  Result<ServeConfig> config = BuildServeConfig(settings);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->seccomp, SeccompMode::kLog);
  EXPECT_EQ(config->user, "nobody");
  EXPECT_EQ(config->group, "nogroup");

  Result<ServeSettings> file =
      ParseConfig("user = \"nobody\"\ngroup = \"nogroup\"\nseccomp = \"off\"\n", "rngmux.toml");
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->user, "nobody");
  EXPECT_EQ(file->group, "nogroup");
  EXPECT_EQ(file->seccomp, "off");
  Result<ServeSettings> bad = ParseConfig("\nseccomp = \"strict\"\n", "rngmux.toml");
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(BuildError(*bad), "rngmux.toml:2: seccomp \"strict\": expected on, off or log");
  Result<ServeSettings> lonely = ParseConfig("group = \"nogroup\"\n", "rngmux.toml");
  ASSERT_TRUE(lonely.ok());
  EXPECT_EQ(BuildError(*lonely), "rngmux.toml:1: group needs user");
}

}  // namespace
}  // namespace rngmux
