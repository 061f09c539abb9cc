#pragma once

// Finding QNG devices in sysfs without opening them: cheap, never blocks on the
// device, and needs no permissions. The root is a parameter ("/sys" in
// production) so that tests can lay out a fake tree.

#include <optional>
#include <string>
#include <vector>

namespace rngmux::qwqng {

// One USB device as sysfs describes it (/sys/bus/usb/devices/1-1/...).
struct UsbDevice {
  std::string path;       // the device's sysfs directory
  std::string vendor_id;  // "0403"
  std::string product_id;
  std::string serial;  // "QWR4M004"
  // The bus assigns a new device number on every plug, so (path, devnum) tells a
  // replugged device from the one that was opened.
  std::string devnum;
};

// Whether a vendor:product pair is one the QNG drivers use: FTDI 0403:6001
// (R2000KU, PQ4000KU, PQ4000KS) or 0403:6014 (R32MU, PQ32MU).
bool IsQngUsbId(const std::string& vendor_id, const std::string& product_id);

// Whether a serial names a third-generation QNG (PQ4000KU): "QW" and a 4th
// character from '4' to '6', as in "QWR4M004". Plain FTDI serial adapters share
// the USB ids but not the serials.
bool IsGen3QngSerial(const std::string& serial);

// USB devices under <sysfs_root>/bus/usb/devices with a QNG vendor:product id,
// sorted by path. Interfaces and unreadable entries are skipped.
std::vector<UsbDevice> FindQngUsbDevices(const std::string& sysfs_root);

// The QNG device with this serial, if sysfs shows one.
std::optional<UsbDevice> FindQngBySerial(const std::string& sysfs_root, const std::string& serial);

// Whether `device` is still plugged in as the same device: its directory still
// shows the same ids, serial and device number.
bool StillPresent(const UsbDevice& device);

}  // namespace rngmux::qwqng
