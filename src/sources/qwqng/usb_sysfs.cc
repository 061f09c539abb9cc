#include "sources/qwqng/usb_sysfs.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <system_error>

namespace rngmux::qwqng {
namespace {

// The first line of a sysfs attribute, without its newline; nullopt if unreadable.
std::optional<std::string> ReadAttribute(const std::string& dir, const char* name) {
  std::ifstream in(dir + "/" + name);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) {
    line.pop_back();
  }
  return line;
}

std::optional<UsbDevice> ReadDevice(const std::string& path) {
  UsbDevice device;
  device.path = path;
  const auto vendor = ReadAttribute(path, "idVendor");
  const auto product = ReadAttribute(path, "idProduct");
  if (!vendor || !product) return std::nullopt;  // an interface or a hub port
  device.vendor_id = *vendor;
  device.product_id = *product;
  device.serial = ReadAttribute(path, "serial").value_or("");
  device.devnum = ReadAttribute(path, "devnum").value_or("");
  return device;
}

}  // namespace

bool IsQngUsbId(const std::string& vendor_id, const std::string& product_id) {
  return vendor_id == "0403" && (product_id == "6001" || product_id == "6014");
}

bool IsGen3QngSerial(const std::string& serial) {
  return serial.size() >= 4 && serial.compare(0, 2, "QW") == 0 && serial[3] >= '4' &&
         serial[3] <= '6';
}

std::vector<UsbDevice> FindQngUsbDevices(const std::string& sysfs_root) {
  std::vector<UsbDevice> found;
  std::error_code ec;
  std::filesystem::directory_iterator it(sysfs_root + "/bus/usb/devices", ec);
  if (ec) return found;
  for (const std::filesystem::directory_entry& entry : it) {
    std::optional<UsbDevice> device = ReadDevice(entry.path().string());
    if (device && IsQngUsbId(device->vendor_id, device->product_id)) {
      found.push_back(std::move(*device));
    }
  }
  std::sort(found.begin(), found.end(),
            [](const UsbDevice& a, const UsbDevice& b) { return a.path < b.path; });
  return found;
}

std::optional<UsbDevice> FindQngBySerial(const std::string& sysfs_root, const std::string& serial) {
  if (serial.empty()) return std::nullopt;
  for (UsbDevice& device : FindQngUsbDevices(sysfs_root)) {
    if (device.serial == serial) return std::move(device);
  }
  return std::nullopt;
}

bool StillPresent(const UsbDevice& device) {
  const std::optional<UsbDevice> now = ReadDevice(device.path);
  return now && now->vendor_id == device.vendor_id && now->product_id == device.product_id &&
         now->serial == device.serial && now->devnum == device.devnum;
}

}  // namespace rngmux::qwqng
