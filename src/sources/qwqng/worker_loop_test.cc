#include "sources/qwqng/worker_loop.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <deque>
#include <filesystem>
#include <fstream>

#include "sources/qwqng/usb_sysfs.h"
#include "support/fake_clock.h"

namespace rngmux::qwqng {
namespace {

constexpr std::uint8_t kGoodByte = 0x5a;
constexpr std::uint8_t kPoisonByte = 0xee;

// A scripted libqwqng: RandBytes returns the queued codes in order, then
// success. Failing reads fill the buffer with kPoisonByte, as the real library
// may fill it and still report an error. Every call is recorded.
class ScriptedDevice final : public QngDevice {
 public:
  ScriptedDevice(std::string id, std::deque<std::uint32_t> codes, FakeClock* clock = nullptr)
      : id_(std::move(id)), codes_(std::move(codes)), clock_(clock) {}

  std::string DeviceId() override { return id_; }
  std::string StatusText() override { return "status of " + DescribeCode(status_); }
  std::uint32_t RandBytes(std::span<std::uint8_t> out) override {
    calls_.push_back("RandBytes(" + std::to_string(out.size()) + ")");
    if (clock_ != nullptr) clock_->Advance(std::chrono::milliseconds(100));
    if (on_read_) on_read_();
    status_ = kSOk;
    if (!codes_.empty()) {
      status_ = codes_.front();
      codes_.pop_front();
    }
    std::fill(out.begin(), out.end(), IsSuccess(status_) ? kGoodByte : kPoisonByte);
    return status_;
  }
  std::uint32_t Clear() override {
    calls_.push_back("Clear");
    return status_;
  }
  std::uint32_t Reset() override {
    calls_.push_back("Reset");
    status_ = reset_code_;
    return reset_code_;
  }
  std::uint32_t RuntimeInfo(std::array<float, kRuntimeInfoFloats>& out) override {
    calls_.push_back("RuntimeInfo");
    out.fill(0.25f);
    return runtime_info_code_;
  }

  std::vector<std::string> calls_;
  std::uint32_t reset_code_ = kQngSOk;
  std::uint32_t runtime_info_code_ = kSOk;
  std::function<void()> on_read_;

 private:
  std::string id_;
  std::deque<std::uint32_t> codes_;
  FakeClock* clock_;
  std::uint32_t status_ = kQngSOk;
};

// Lends a test's device to RunWorker, which owns (and destroys) what it opens.
class BorrowedDevice final : public QngDevice {
 public:
  explicit BorrowedDevice(QngDevice* device) : device_(device) {}
  std::string DeviceId() override { return device_->DeviceId(); }
  std::string StatusText() override { return device_->StatusText(); }
  std::uint32_t RandBytes(std::span<std::uint8_t> out) override { return device_->RandBytes(out); }
  std::uint32_t Clear() override { return device_->Clear(); }
  std::uint32_t Reset() override { return device_->Reset(); }
  std::uint32_t RuntimeInfo(std::array<float, kRuntimeInfoFloats>& out) override {
    return device_->RuntimeInfo(out);
  }

 private:
  QngDevice* device_;
};

// Keeps frames; reports the pipe closed after `data_limit` data frames.
class RecordingSink final : public FrameSink {
 public:
  explicit RecordingSink(std::size_t data_limit) : data_limit_(data_limit) {}
  bool Send(FrameType type, std::span<const std::uint8_t> payload) override {
    frames_.push_back({type, std::string(payload.begin(), payload.end())});
    if (type == FrameType::kData) ++data_frames_;
    return data_frames_ < data_limit_;
  }
  std::size_t Count(FrameType type) const {
    return static_cast<std::size_t>(std::count_if(
        frames_.begin(), frames_.end(), [&](const auto& frame) { return frame.first == type; }));
  }
  std::string Last(FrameType type) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      if (it->first == type) return it->second;
    }
    return "";
  }
  std::string AllLogText() const {
    std::string text;
    for (const auto& [type, payload] : frames_) {
      if (type == FrameType::kLog) text += payload.substr(1) + "\n";
    }
    return text;
  }

  std::vector<std::pair<FrameType, std::string>> frames_;

 private:
  std::size_t data_limit_;
  std::size_t data_frames_ = 0;
};

class WorkerLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/rngmux_worker_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    options_.sysfs_root = pattern;
    device_dir_ = options_.sysfs_root + "/bus/usb/devices/1-1";
    Plug("QWR4M004", "7");
  }
  void TearDown() override { std::filesystem::remove_all(options_.sysfs_root); }

  void Plug(const std::string& serial, const std::string& devnum) {
    std::filesystem::create_directories(device_dir_);
    std::ofstream(device_dir_ + "/idVendor") << "0403\n";
    std::ofstream(device_dir_ + "/idProduct") << "6001\n";
    std::ofstream(device_dir_ + "/serial") << serial << "\n";
    std::ofstream(device_dir_ + "/devnum") << devnum << "\n";
  }
  void Unplug() { std::filesystem::remove_all(device_dir_); }

  int Run(ScriptedDevice& device, RecordingSink& sink) {
    return RunWorker([&device] { return std::unique_ptr<QngDevice>(new BorrowedDevice(&device)); },
                     sink, clock_, options_);
  }

  // No data frame may hold a byte of a failed read.
  static void ExpectOnlyGoodData(const RecordingSink& sink) {
    for (const auto& [type, payload] : sink.frames_) {
      if (type != FrameType::kData) continue;
      EXPECT_EQ(payload.size(), kMaxReadBytes);
      EXPECT_EQ(payload.find(static_cast<char>(kPoisonByte)), std::string::npos);
    }
  }

  FakeClock clock_;
  WorkerOptions options_;
  std::string device_dir_;
};

TEST(QngCodeTest, LongLiteralsAgainstIntReturnValues) {
  // What the vendor header's QNG_E_IO_ERROR is, and what its functions return.
  const long io_error_literal = 0x80044402L;
  const int returned = static_cast<int>(static_cast<std::uint32_t>(io_error_literal));
  EXPECT_NE(static_cast<long>(returned), io_error_literal);  // the trap
  EXPECT_EQ(CodeOf(returned), kQngIoError);
  EXPECT_TRUE(IsSuccess(CodeOf(0)));
  EXPECT_TRUE(IsSuccess(CodeOf(0x00044400)));
  EXPECT_FALSE(IsSuccess(kQngStatsException));
}

TEST(QngCodeTest, Describe) {
  EXPECT_EQ(DescribeCode(kQngIoTimeout), "QNG_E_IO_TIMEOUT (0x80044403)");
  EXPECT_EQ(DescribeCode(kQngDeviceNotOpened), "QNG_E_DEVICE_NOT_OPENED (0x8004440A)");
  EXPECT_EQ(DescribeCode(0x12345678), "0x12345678");
}

TEST(WorkerArgsTest, Parses) {
  std::string error;
  const auto options = ParseWorkerArgs(
      {"--fd=3", "--sysfs=/tmp/sys", "--parent-pid=42", "--stats-interval-ms=250"}, &error);
  ASSERT_TRUE(options.has_value()) << error;
  EXPECT_EQ(options->fd, 3);
  EXPECT_EQ(options->sysfs_root, "/tmp/sys");
  EXPECT_EQ(options->parent_pid, 42);
  EXPECT_EQ(options->stats_interval, std::chrono::milliseconds(250));
}

TEST(WorkerArgsTest, RejectsAnythingElse) {
  std::string error;
  EXPECT_FALSE(ParseWorkerArgs({}, &error).has_value());
  EXPECT_EQ(error, "missing --fd=N");
  EXPECT_FALSE(ParseWorkerArgs({"--fd=3", "--verbose"}, &error).has_value());
  EXPECT_EQ(error, "bad argument \"--verbose\"");
  EXPECT_FALSE(ParseWorkerArgs({"--fd=x"}, &error).has_value());
  EXPECT_FALSE(ParseWorkerArgs({"--fd=3", "--parent-pid=0"}, &error).has_value());
}

TEST_F(WorkerLoopTest, NoDeviceIsFatal) {
  ScriptedDevice device("", {});
  RecordingSink sink(100);
  EXPECT_EQ(Run(device, sink), kExitNoDevice);
  EXPECT_EQ(sink.Count(FrameType::kHello), 0u);
  EXPECT_EQ(sink.Count(FrameType::kData), 0u);
  EXPECT_EQ(sink.Last(FrameType::kFatal),
            "no QNG device found, or another process has it open: status of QNG_S_OK "
            "(0x00044400)");
}

TEST_F(WorkerLoopTest, ReadsFullBlocksUntilThePipeCloses) {
  ScriptedDevice device("QWR4M004", {});
  RecordingSink sink(3);
  EXPECT_EQ(Run(device, sink), kExitDaemonGone);
  EXPECT_EQ(sink.Last(FrameType::kHello), "QWR4M004");
  EXPECT_EQ(sink.Count(FrameType::kData), 3u);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "RandBytes(8192)"), 3);
  ExpectOnlyGoodData(sink);
}

TEST_F(WorkerLoopTest, TimeoutAndStatsExceptionClearThenReset) {
  ScriptedDevice device("QWR4M004", {kSOk, kQngIoTimeout, kSOk, kQngStatsException});
  RecordingSink sink(4);
  EXPECT_EQ(Run(device, sink), kExitDaemonGone);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "Clear"), 2);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "Reset"), 2);
  EXPECT_NE(sink.AllLogText().find("RandBytes: status of QNG_E_IO_TIMEOUT (0x80044403) "
                                   "QNG_E_IO_TIMEOUT (0x80044403); Clear() and Reset()"),
            std::string::npos)
      << sink.AllLogText();
  ExpectOnlyGoodData(sink);
}

TEST_F(WorkerLoopTest, IoErrorWhilePresentResetsWithoutClear) {
  ScriptedDevice device("QWR4M004", {kQngIoError});
  RecordingSink sink(2);
  EXPECT_EQ(Run(device, sink), kExitDaemonGone);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "Clear"), 0);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "Reset"), 1);
  ExpectOnlyGoodData(sink);
}

TEST_F(WorkerLoopTest, UnplugEndsTheWorkerWithoutReset) {
  ScriptedDevice device("QWR4M004", {kSOk, kQngIoError});
  int reads = 0;
  device.on_read_ = [&] {
    if (++reads == 2) Unplug();
  };
  RecordingSink sink(100);
  EXPECT_EQ(Run(device, sink), kExitUnplugged);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "Reset"), 0);
  EXPECT_NE(sink.Last(FrameType::kFatal).find("is gone from sysfs"), std::string::npos);
  EXPECT_EQ(sink.Count(FrameType::kData), 1u);
  ExpectOnlyGoodData(sink);
}

TEST_F(WorkerLoopTest, AQuickReplugIsStillAnUnplug) {
  ScriptedDevice device("QWR4M004", {kQngIoError});
  device.on_read_ = [&] { Plug("QWR4M004", "8"); };
  RecordingSink sink(100);
  EXPECT_EQ(Run(device, sink), kExitUnplugged);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "Reset"), 0);
}

TEST_F(WorkerLoopTest, GivesUpAfterMaxRecoveries) {
  ScriptedDevice device(
      "QWR4M004", {kQngStatsException, kQngStatsException, kQngStatsException, kQngStatsException});
  RecordingSink sink(100);
  EXPECT_EQ(Run(device, sink), kExitUnrecoverable);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "Reset"), 3);
  EXPECT_NE(sink.Last(FrameType::kFatal).find("still failing after 3 rounds of recovery"),
            std::string::npos);
  EXPECT_EQ(sink.Count(FrameType::kData), 0u);
}

TEST_F(WorkerLoopTest, AGoodReadStartsTheCountAgain) {
  ScriptedDevice device("QWR4M004",
                        {kQngIoError, kQngIoError, kQngIoError, kSOk, kQngIoError, kQngIoError});
  RecordingSink sink(3);
  EXPECT_EQ(Run(device, sink), kExitDaemonGone);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "Reset"), 5);
}

TEST_F(WorkerLoopTest, OversizedIsNotCuredByReset) {
  ScriptedDevice device("QWR4M004", {kQngArrayOversized});
  RecordingSink sink(100);
  EXPECT_EQ(Run(device, sink), kExitUnrecoverable);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "Reset"), 0);
}

TEST_F(WorkerLoopTest, FailedResetEndsTheWorker) {
  ScriptedDevice device("QWR4M004", {kQngIoTimeout});
  device.reset_code_ = kQngIoError;
  RecordingSink sink(100);
  EXPECT_EQ(Run(device, sink), kExitUnrecoverable);
  EXPECT_EQ(sink.Last(FrameType::kFatal),
            "Reset: status of QNG_E_IO_ERROR (0x80044402) QNG_E_IO_ERROR (0x80044402)");
}

TEST_F(WorkerLoopTest, DeviceUnknownToSysfsIsNeverReset) {
  ScriptedDevice device("QWR4M777", {kQngIoTimeout});
  RecordingSink sink(100);
  EXPECT_EQ(Run(device, sink), kExitUnrecoverable);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "Reset"), 0);
  EXPECT_NE(sink.AllLogText().find("presence cannot be checked"), std::string::npos);
}

TEST_F(WorkerLoopTest, SendsRuntimeInfoEveryInterval) {
  // Each scripted read advances the clock by 100 ms; the interval is 1 s.
  ScriptedDevice device("QWR4M004", {}, &clock_);
  RecordingSink sink(25);
  EXPECT_EQ(Run(device, sink), kExitDaemonGone);
  EXPECT_EQ(sink.Count(FrameType::kStats), 3u);  // at 0, 1.0 and 2.0 s
  const auto info = DecodeRuntimeInfo(
      std::span(reinterpret_cast<const std::uint8_t*>(sink.Last(FrameType::kStats).data()),
                kRuntimeInfoFloats * 4));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ((*info)[16], 0.25f);
}

TEST_F(WorkerLoopTest, OlderGenerationsAreNotAskedForStatistics) {
  Plug("QWR2M004", "7");
  ScriptedDevice device("QWR2M004", {}, &clock_);
  RecordingSink sink(25);
  EXPECT_EQ(Run(device, sink), kExitDaemonGone);
  EXPECT_EQ(sink.Count(FrameType::kStats), 0u);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "RuntimeInfo"), 0);
}

TEST_F(WorkerLoopTest, FailedRuntimeInfoTurnsStatisticsOff) {
  ScriptedDevice device("QWR4M004", {}, &clock_);
  device.runtime_info_code_ = kQngStatsUnsupported;
  RecordingSink sink(25);
  EXPECT_EQ(Run(device, sink), kExitDaemonGone);
  EXPECT_EQ(std::count(device.calls_.begin(), device.calls_.end(), "RuntimeInfo"), 1);
  EXPECT_NE(sink.AllLogText().find("device statistics will not be read again"), std::string::npos);
}

TEST(FdFrameSinkTest, WritesFramesAndNoticesAClosedPipe) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  FdFrameSink sink(fds[1]);
  const std::string payload = "abc";
  ASSERT_TRUE(sink.Send(FrameType::kData,
                        std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), 3)));
  char buffer[16];
  ASSERT_EQ(read(fds[0], buffer, sizeof buffer), 7);
  EXPECT_EQ(std::string(buffer, 7), std::string("QD\x03\x00", 4) + "abc");
  close(fds[0]);
  signal(SIGPIPE, SIG_IGN);
  EXPECT_FALSE(SendLog(sink, WorkerLogLevel::kInfo, "anyone?"));
  close(fds[1]);
}

}  // namespace
}  // namespace rngmux::qwqng
