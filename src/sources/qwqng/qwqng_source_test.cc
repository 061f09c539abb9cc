// The QNG driver against scripted workers: small shell scripts that write frames
// to fd 3 as rngmux-qwqng-worker would, or misbehave as a broken one might.

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "sources/drivers.h"
#include "sources/source.h"

namespace rngmux {
namespace {

using std::chrono::milliseconds;

class QwqngSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/rngmux_qwqng_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A worker that runs `script` (sh) each time it is started.
  std::string Worker(const std::string& script) {
    const std::string path = dir_ + "/worker.sh";
    std::ofstream(path) << "#!/bin/sh\n" << script << "\n";
    chmod(path.c_str(), 0755);
    return path;
  }

  std::unique_ptr<Source> Make(const std::string& worker, const std::string& extra = "") {
    Result<SourceSpec> spec = ParseSourceSpec("qwqng,worker=" + worker + extra);
    EXPECT_TRUE(spec.ok()) << spec.status().message();
    Result<std::unique_ptr<Source>> source = CreateQwqngDriver(*spec);
    EXPECT_TRUE(source.ok()) << source.status().message();
    return source.ok() ? std::move(source).value() : nullptr;
  }

  static std::map<std::string, std::string> Stats(const Source& source) {
    std::map<std::string, std::string> stats;
    for (const auto& [key, value] : source.ExtraStats()) stats[key] = value;
    return stats;
  }

  static std::string ReadText(Source& source, std::size_t size, const Interrupt& stop) {
    std::string bytes(size, '\0');
    Result<std::size_t> got =
        source.Read(std::span(reinterpret_cast<std::uint8_t*>(bytes.data()), size), stop);
    if (!got.ok()) return "error: " + got.status().message();
    bytes.resize(*got);
    return bytes;
  }

  std::string dir_;
};

TEST_F(QwqngSourceTest, DeliversDataFramesInPieces) {
  auto source =
      Make(Worker("printf 'QH\\010\\000QWR4M004QL\\010\\000Iopened.' >&3\n"
                  "printf 'QD\\006\\000abcdefQD\\002\\000gh' >&3\n"
                  "exec sleep 30"));
  ASSERT_NE(source, nullptr);
  Interrupt stop;
  EXPECT_EQ(ReadText(*source, 4, stop), "abcd");
  EXPECT_EQ(ReadText(*source, 4, stop), "ef");
  EXPECT_EQ(ReadText(*source, 4, stop), "gh");
  const auto stats = Stats(*source);
  EXPECT_EQ(stats.at("qng_device"), "QWR4M004");
  EXPECT_EQ(stats.at("worker_restarts"), "0");
  EXPECT_NE(stats.at("worker_pid"), "0");
  EXPECT_EQ(stats.count("qng_runtime_info"), 0u);
}

TEST_F(QwqngSourceTest, RuntimeInfoShowsInStats) {
  auto source =
      Make(Worker("printf 'QH\\010\\000QWR4M004' >&3\n"
                  "printf 'QS\\104\\000' >&3; head -c 68 /dev/zero >&3\n"
                  "printf 'QD\\001\\000x' >&3\n"
                  "exec sleep 30"));
  ASSERT_NE(source, nullptr);
  Interrupt stop;
  EXPECT_EQ(ReadText(*source, 4, stop), "x");
  EXPECT_EQ(Stats(*source).at("qng_runtime_info"), "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0");
}

TEST_F(QwqngSourceTest, WorkerExitIsAReadErrorAndTheNextReadRestartsIt) {
  auto source = Make(Worker("printf 'QF\\007\\000unplug!' >&3; exit 4"));
  ASSERT_NE(source, nullptr);
  Interrupt stop;
  const std::string first = ReadText(*source, 4, stop);
  EXPECT_NE(first.find("exited with status 4: unplug!"), std::string::npos) << first;
  EXPECT_EQ(first.rfind("error: qwqng,worker=", 0), 0u) << first;
  EXPECT_EQ(Stats(*source).at("worker_pid"), "0");
  EXPECT_NE(ReadText(*source, 4, stop).find("exited with status 4"), std::string::npos);
  EXPECT_EQ(Stats(*source).at("worker_restarts"), "1");
}

TEST_F(QwqngSourceTest, BytesOfACutFrameAreNeverDelivered) {
  auto source = Make(Worker("printf 'QD\\010\\000abcd' >&3; exit 0"));
  ASSERT_NE(source, nullptr);
  Interrupt stop;
  EXPECT_EQ(ReadText(*source, 8, stop).rfind("error: ", 0), 0u);
}

TEST_F(QwqngSourceTest, ASilentWorkerIsKilled) {
  auto source = Make(Worker("exec sleep 30"), ",timeout=0.3");
  ASSERT_NE(source, nullptr);
  Interrupt stop;
  const auto start = std::chrono::steady_clock::now();
  const std::string result = ReadText(*source, 4, stop);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_NE(result.find("sent nothing for 0.3 s; killed by signal 9 (Killed)"), std::string::npos)
      << result;
}

TEST_F(QwqngSourceTest, LogFramesKeepAWorkerAlive) {
  // Five log lines 0.3 s apart, then data: 1.5 s before the first data frame, but
  // never 1 s of silence.
  auto source = Make(Worker("for i in 1 2 3 4 5; do printf 'QL\\002\\000Ix' >&3; sleep 0.3; done\n"
                            "printf 'QD\\001\\000y' >&3; exec sleep 30"),
                     ",timeout=1");
  ASSERT_NE(source, nullptr);
  Interrupt stop;
  EXPECT_EQ(ReadText(*source, 4, stop), "y");
}

TEST_F(QwqngSourceTest, MalformedFramesEndTheWorker) {
  auto source = Make(Worker("printf 'garbage' >&3; exec sleep 30"));
  ASSERT_NE(source, nullptr);
  Interrupt stop;
  const std::string result = ReadText(*source, 4, stop);
  EXPECT_NE(result.find("sent a malformed frame (bad frame magic); killed by signal 9"),
            std::string::npos)
      << result;
}

TEST_F(QwqngSourceTest, StopEndsABlockedReadPromptly) {
  auto source = Make(Worker("exec sleep 30"));
  ASSERT_NE(source, nullptr);
  Interrupt stop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(100));
    stop.Trigger();
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ReadText(*source, 4, stop), "");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  stopper.join();
}

TEST_F(QwqngSourceTest, DestructionStopsTheWorker) {
  auto source = Make(Worker("printf 'QD\\001\\000z' >&3; exec sleep 30"));
  ASSERT_NE(source, nullptr);
  Interrupt stop;
  EXPECT_EQ(ReadText(*source, 1, stop), "z");
  const pid_t pid = std::stoi(Stats(*source).at("worker_pid"));
  ASSERT_GT(pid, 0);
  source.reset();
  EXPECT_NE(kill(pid, 0), 0);  // gone and reaped: the pid no longer exists for us
}

TEST_F(QwqngSourceTest, SpecErrors) {
  auto error = [](const std::string& text) {
    Result<SourceSpec> spec = ParseSourceSpec(text);
    Result<std::unique_ptr<Source>> source = CreateQwqngDriver(*spec);
    return source.ok() ? "OK" : source.status().message();
  };
  EXPECT_EQ(error("qwqng,worker=/nonexistent/w"),
            "source \"qwqng,worker=/nonexistent/w\": worker /nonexistent/w: No such file or "
            "directory (it is installed next to rngmux; worker=PATH names another)");
  EXPECT_EQ(error("qwqng,worker=/bin/true,timeout=0"),
            "source \"qwqng,worker=/bin/true,timeout=0\": timeout must be seconds from 0.1 to "
            "3600, got \"0\"");
  EXPECT_EQ(error("qwqng,serial=QWR4M004"),
            "source \"qwqng,serial=QWR4M004\": unknown option \"serial\" (known: entropy, block, "
            "sysfs, timeout, worker)");
}

TEST(QwqngFactoryTest, SaysWhenNotCompiledIn) {
  Result<std::unique_ptr<Source>> source = CreateSource("qwqng,worker=/bin/true", {});
  if (QwqngCompiledIn()) {
    EXPECT_TRUE(source.ok()) << source.status().message();
  } else {
    ASSERT_FALSE(source.ok());
    EXPECT_EQ(source.status().message(),
              "source \"qwqng,worker=/bin/true\": not compiled in: rebuild rngmux with "
              "-DRNGMUX_WITH_QWQNG=ON after installing libqwqng 1.4 (see README, \"QNG "
              "PQ4000KU\")");
  }
}

class QwqngProbeTest : public QwqngSourceTest {
 protected:
  void AddDevice(const std::string& serial) {
    const std::string device = dir_ + "/sys/bus/usb/devices/1-1";
    std::filesystem::create_directories(device);
    std::ofstream(device + "/idVendor") << "0403\n";
    std::ofstream(device + "/idProduct") << "6001\n";
    std::ofstream(device + "/serial") << serial << "\n";
  }
};

TEST_F(QwqngProbeTest, UsableWithDeviceSupportAndWorker) {
  AddDevice("QWR4M004");
  const QwqngPresence presence = ProbeQwqng(dir_ + "/sys", "/bin/true", true);
  EXPECT_TRUE(presence.usable);
  EXPECT_EQ(presence.reason, "qwqng (QNG QWR4M004 at " + dir_ + "/sys/bus/usb/devices/1-1)");
}

TEST_F(QwqngProbeTest, DeviceWithoutSupportOrWorker) {
  AddDevice("QWR4M004");
  QwqngPresence presence = ProbeQwqng(dir_ + "/sys", "/bin/true", false);
  EXPECT_FALSE(presence.usable);
  EXPECT_TRUE(presence.device_seen);
  EXPECT_NE(presence.reason.find("built without qwqng support"), std::string::npos);
  presence = ProbeQwqng(dir_ + "/sys", dir_ + "/no-worker", true);
  EXPECT_FALSE(presence.usable);
  EXPECT_NE(presence.reason.find("no-worker: No such file or directory"), std::string::npos);
}

TEST_F(QwqngProbeTest, IgnoresPlainFtdiAdaptersAndEmptyBuses) {
  EXPECT_FALSE(ProbeQwqng(dir_ + "/sys", "/bin/true", true).device_seen);
  AddDevice("A50285BI");
  const QwqngPresence presence = ProbeQwqng(dir_ + "/sys", "/bin/true", true);
  EXPECT_FALSE(presence.device_seen);
  EXPECT_EQ(presence.reason, "no QNG PQ4000KU in " + dir_ + "/sys/bus/usb/devices");
}

}  // namespace
}  // namespace rngmux
