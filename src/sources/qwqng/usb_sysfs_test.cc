#include "sources/qwqng/usb_sysfs.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace rngmux::qwqng {
namespace {

class UsbSysfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/rngmux_usb_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
    std::filesystem::create_directories(root_ + "/bus/usb/devices");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::string AddDevice(const std::string& name, const std::string& vendor,
                        const std::string& product, const std::string& serial,
                        const std::string& devnum = "7") {
    const std::string dir = root_ + "/bus/usb/devices/" + name;
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/idVendor") << vendor << "\n";
    std::ofstream(dir + "/idProduct") << product << "\n";
    std::ofstream(dir + "/serial") << serial << "\n";
    std::ofstream(dir + "/devnum") << devnum << "\n";
    return dir;
  }

  std::string root_;
};

TEST(QngSerialTest, Generation3) {
  EXPECT_TRUE(IsGen3QngSerial("QWR4M004"));
  EXPECT_TRUE(IsGen3QngSerial("QWR6A001"));
  EXPECT_FALSE(IsGen3QngSerial("QWR2M004"));
  EXPECT_FALSE(IsGen3QngSerial("A50285BI"));  // an ordinary FTDI serial adapter
  EXPECT_FALSE(IsGen3QngSerial("QW4"));
  EXPECT_FALSE(IsGen3QngSerial(""));
}

TEST(QngSerialTest, UsbIds) {
  EXPECT_TRUE(IsQngUsbId("0403", "6001"));
  EXPECT_TRUE(IsQngUsbId("0403", "6014"));
  EXPECT_FALSE(IsQngUsbId("0403", "6010"));
  EXPECT_FALSE(IsQngUsbId("1d6b", "0002"));
}

TEST_F(UsbSysfsTest, FindsQngIdsOnly) {
  AddDevice("1-2", "0403", "6014", "QWR4M009");
  AddDevice("1-1", "0403", "6001", "QWR4M004");
  AddDevice("usb1", "1d6b", "0002", "0000:00:01.0");
  std::filesystem::create_directories(root_ + "/bus/usb/devices/1-1:1.0");  // an interface
  const std::vector<UsbDevice> found = FindQngUsbDevices(root_);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].path, root_ + "/bus/usb/devices/1-1");
  EXPECT_EQ(found[0].serial, "QWR4M004");
  EXPECT_EQ(found[0].devnum, "7");
  EXPECT_EQ(found[1].serial, "QWR4M009");
}

TEST_F(UsbSysfsTest, MissingTreeFindsNothing) {
  EXPECT_TRUE(FindQngUsbDevices(root_ + "/nonexistent").empty());
}

TEST_F(UsbSysfsTest, FindBySerial) {
  AddDevice("1-1", "0403", "6001", "QWR4M004");
  ASSERT_TRUE(FindQngBySerial(root_, "QWR4M004").has_value());
  EXPECT_FALSE(FindQngBySerial(root_, "QWR4M005").has_value());
  EXPECT_FALSE(FindQngBySerial(root_, "").has_value());
}

TEST_F(UsbSysfsTest, UnplugAndReplugAreNotTheSameDevice) {
  const std::string dir = AddDevice("1-1", "0403", "6001", "QWR4M004", "7");
  const UsbDevice device = *FindQngBySerial(root_, "QWR4M004");
  EXPECT_TRUE(StillPresent(device));
  std::filesystem::remove_all(dir);
  EXPECT_FALSE(StillPresent(device));
  AddDevice("1-1", "0403", "6001", "QWR4M004", "8");  // plugged back: a new device number
  EXPECT_FALSE(StillPresent(device));
}

}  // namespace
}  // namespace rngmux::qwqng
