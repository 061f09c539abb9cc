#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "sources/source.h"

namespace rngmux {
namespace {

using std::chrono::milliseconds;

// A FIFO in a fresh temporary directory, and writers that connect to it.
class FileSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/rngmux_file_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    fifo_ = dir_ + "/trng";
    ASSERT_EQ(mkfifo(fifo_.c_str(), 0600), 0);
    Result<std::unique_ptr<Source>> source = CreateSource("file:" + fifo_, {});
    ASSERT_TRUE(source.ok()) << source.status().message();
    source_ = std::move(*source);
  }
  void TearDown() override {
    source_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Opens the FIFO for writing (which waits for a reader), writes, closes.
  std::thread Writer(std::string bytes) {
    return std::thread([path = fifo_, bytes = std::move(bytes)] {
      const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
      close(fd);
    });
  }

  // Reads until `size` bytes have arrived or an error or stop ends it.
  Result<std::string> ReadString(std::size_t size) {
    std::string text;
    std::uint8_t buffer[64];
    while (text.size() < size) {
      Result<std::size_t> got = source_->Read(buffer, stop_);
      if (!got.ok()) return got.status();
      text.append(reinterpret_cast<const char*>(buffer), *got);
    }
    return text;
  }

  std::string dir_;
  std::string fifo_;
  std::unique_ptr<Source> source_;
  Interrupt stop_;
};

TEST_F(FileSourceTest, DefaultsSuitSlowDevices) {
  EXPECT_EQ(source_->name(), "file:" + fifo_);
  // Not /dev/hwrng: possibly raw noise, so a conservative claim (conditioned later).
  EXPECT_EQ(source_->claimed_entropy_bits_per_byte(), 4.0);
  EXPECT_EQ(source_->preferred_block_size(), 512u);
}

TEST(FileSourceClaimTest, HwrngIsFullEntropyAndEntropyOverrides) {
  SourceFactoryContext context;
  auto hwrng = CreateSource("file:/dev/hwrng", context);
  ASSERT_TRUE(hwrng.ok()) << hwrng.status().message();
  EXPECT_EQ((*hwrng)->claimed_entropy_bits_per_byte(), 8.0);
  auto tty = CreateSource("file:/dev/ttyACM7,entropy=7.5", context);
  ASSERT_TRUE(tty.ok()) << tty.status().message();
  EXPECT_EQ((*tty)->claimed_entropy_bits_per_byte(), 7.5);
}

TEST_F(FileSourceTest, BytesArriveThenEndOfFileThenReopenWithANewWriter) {
  std::thread first = Writer("hello");
  Result<std::string> got = ReadString(5);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(*got, "hello");
  first.join();

  std::uint8_t buffer[16];
  Result<std::size_t> eof = source_->Read(buffer, stop_);
  ASSERT_FALSE(eof.ok());
  EXPECT_EQ(eof.status().message(), fifo_ + ": end of file");

  // The next Read reopens the FIFO and waits for the next writer.
  std::thread second = Writer("again");
  got = ReadString(5);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(*got, "again");
  second.join();
}

TEST_F(FileSourceTest, StopInterruptsAReadThatIsWaitingForAWriter) {
  auto reader = std::async(std::launch::async, [this] {
    std::uint8_t buffer[16];
    return source_->Read(buffer, stop_);
  });
  EXPECT_EQ(reader.wait_for(milliseconds(50)), std::future_status::timeout);  // blocked
  stop_.Trigger();
  // No writer ever comes: without the stop, the Read would wait forever.
  ASSERT_EQ(reader.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Result<std::size_t> result = reader.get();
  ASSERT_TRUE(result.ok()) << result.status().message();
  EXPECT_EQ(*result, 0u);
}

TEST_F(FileSourceTest, StopInterruptsAReadWhileAWriterIsConnectedButSilent) {
  int writer = -1;
  std::thread connect([&] { writer = open(fifo_.c_str(), O_WRONLY | O_CLOEXEC); });
  auto reader = std::async(std::launch::async, [this] {
    std::uint8_t buffer[16];
    return source_->Read(buffer, stop_);
  });
  connect.join();
  ASSERT_GE(writer, 0);
  EXPECT_EQ(reader.wait_for(milliseconds(50)), std::future_status::timeout);
  stop_.Trigger();
  ASSERT_EQ(reader.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(*reader.get(), 0u);
  close(writer);
}

TEST(FileSourceErrorsTest, MissingFileNamesPathAndErrno) {
  Result<std::unique_ptr<Source>> source = CreateSource("file:/nonexistent/rngmux-trng", {});
  ASSERT_TRUE(source.ok());  // opened lazily, so a device may appear later
  Interrupt stop;
  std::uint8_t buffer[16];
  Result<std::size_t> got = (*source)->Read(buffer, stop);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(), "/nonexistent/rngmux-trng: open: No such file or directory");
}

TEST(FileSourceErrorsTest, DirectoryIsRefused) {
  char pattern[] = "/tmp/rngmux_dir_XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  Result<std::unique_ptr<Source>> source = CreateSource("file:" + dir, {});
  ASSERT_FALSE(source.ok());
  EXPECT_EQ(source.status().message(),
            "source \"file:" + dir + "\": " + dir +
                " is not a character device, tty or FIFO (a regular file would be served "
                "again after every end of file)");
  rmdir(pattern);
}

TEST(FileSourceErrorsTest, RegularFileIsRefusedSoItsBytesAreNeverReplayed) {
  char pattern[] = "/tmp/rngmux_reg_XXXXXX";
  const int fd = mkstemp(pattern);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "0123456789", 10), 10);
  close(fd);
  const std::string path = pattern;
  Result<std::unique_ptr<Source>> refused = CreateSource("file:" + path, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("is not a character device, tty or FIFO"),
            std::string::npos)
      << refused.status().message();

  // A path that becomes a regular file after the source was made is refused at open.
  unlink(pattern);
  Result<std::unique_ptr<Source>> source = CreateSource("file:" + path + ",block=16", {});
  ASSERT_TRUE(source.ok()) << source.status().message();
  const int again = open(pattern, O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(again, 0);
  ASSERT_EQ(write(again, "0123456789", 10), 10);
  close(again);
  Interrupt stop;
  std::uint8_t buffer[64];
  for (int attempt = 0; attempt < 2; ++attempt) {  // never a byte, also after a reopen
    Result<std::size_t> got = (*source)->Read(buffer, stop);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().message(),
              path +
                  " is not a character device, tty or FIFO (a regular file would be served "
                  "again after every end of file)");
  }
  unlink(pattern);
}

}  // namespace
}  // namespace rngmux
