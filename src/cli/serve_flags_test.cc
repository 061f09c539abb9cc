#include "cli/serve_flags.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace rngmux {
namespace {

// A configuration file in a directory of its own, removed at the end of the test.
class ConfigFileOnDisk {
 public:
  explicit ConfigFileOnDisk(const std::string& text) {
    char pattern[] = "/tmp/rngmux-serve-flags-XXXXXX";
    dir_ = mkdtemp(pattern);
    path_ = dir_ + "/rngmux.toml";
    Write(text);
  }
  ~ConfigFileOnDisk() {
    std::remove(path_.c_str());
    rmdir(dir_.c_str());
  }
  void Write(const std::string& text) { std::ofstream(path_, std::ios::trunc) << text; }
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
};

// Parses `serve`'s flags as the command line would give them, and notes which were
// given, as the daemon does before it frees its parser.
Result<ServeConfig> Load(CLI::App& app, ServeFlags& flags, std::vector<std::string> args) {
  AddServeFlags(app, flags);
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments last first
  app.parse(args);
  NoteGivenFlags(flags);
  return LoadServeConfig(flags);
}

TEST(ServeFlagsTest, FlagsGivenOverrideTheFileOthersLeaveIt) {
  ConfigFileOnDisk file(
      "pool-size = 8192\nlog-level = \"debug\"\nmax-clients = 10\ncontrol = \"\"\n"
      "[[listen]]\naddress = \"tcp:127.0.0.1:1024\"\n"
      "[[connect]]\naddress = \"tcp:127.0.0.1:2048\"\n");
  auto app = std::make_unique<CLI::App>("test");
  ServeFlags flags;
  Result<ServeConfig> config =
      Load(*app, flags,
           {"--config", file.path(), "--log-level", "warning", "--listen", "tcp:127.0.0.1:3000"});
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->pool_bytes, 8192u);  // not given: the file's, not the flag's default
  EXPECT_EQ(config->max_clients, 10u);
  EXPECT_EQ(config->log_level, "warning");
  EXPECT_EQ(config->control_path, "");
  EXPECT_EQ(config->config_file, file.path());
  ASSERT_EQ(config->endpoints.size(), 2u);
  EXPECT_EQ(config->endpoints[0].id, "listen tcp:127.0.0.1:3000");
  EXPECT_EQ(config->endpoints[1].id, "connect tcp:127.0.0.1:2048");

  // Read again (a reload): the file's new values, the same flags over them. The
  // daemon frees its parser before it serves: the reload reads what was noted.
  app.reset();
  file.Write("pool-size = 16384\nlog-level = \"error\"\n[[listen]]\naddress = \"tcp:[::1]:1\"\n");
  Result<ServeConfig> again = LoadServeConfig(flags);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->pool_bytes, 16384u);
  EXPECT_EQ(again->log_level, "warning");
  EXPECT_EQ(again->control_path, kDefaultControlPath);
  ASSERT_EQ(again->endpoints.size(), 1u);
  EXPECT_EQ(again->endpoints[0].id, "listen tcp:127.0.0.1:3000");

  file.Write("pool-size = 16384\nwieght = 1\n");
  Result<ServeConfig> bad = LoadServeConfig(flags);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), file.path() + ":2: unknown key \"wieght\"");
}

TEST(ServeFlagsTest, FlagsCountAsGivenBeforeAndAfterTheyAreNoted) {
  ConfigFileOnDisk file("max-clients = 10\n");
  auto app = std::make_unique<CLI::App>("test");
  ServeFlags flags;
  AddServeFlags(*app, flags);
  std::vector<std::string> args = {"--config", file.path(), "--max-clients", "20"};
  std::reverse(args.begin(), args.end());
  app->parse(args);
  // The parser alive and not yet asked: it answers.
  Result<ServeConfig> before = LoadServeConfig(flags);
  ASSERT_TRUE(before.ok()) << before.status().message();
  EXPECT_EQ(before->max_clients, 20u);
  NoteGivenFlags(flags);
  EXPECT_TRUE(flags.options.empty());
  app.reset();
  // The parser gone: the record answers.
  Result<ServeConfig> after = LoadServeConfig(flags);
  ASSERT_TRUE(after.ok()) << after.status().message();
  EXPECT_EQ(after->max_clients, 20u);
}

TEST(ServeFlagsTest, WithoutAFile) {
  CLI::App app("test");
  ServeFlags flags;
  Result<ServeConfig> config = Load(
      app, flags, {"--control", "none", "--metrics", "tcp:127.0.0.1:9797", "--pool-size", "1"});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(), "--pool-size 1: must be 4096 to 1073741824 bytes");
  CLI::App other_app("test");
  ServeFlags other;
  config = Load(other_app, other, {"--control", "none", "--metrics", "tcp:127.0.0.1:9797"});
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->control_path, "");
  EXPECT_EQ(config->metrics_address, "tcp:127.0.0.1:9797");
  EXPECT_EQ(config->config_file, "");
}

}  // namespace
}  // namespace rngmux
