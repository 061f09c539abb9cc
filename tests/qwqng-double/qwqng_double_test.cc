// Checks that the double keeps the documented behaviour of libqwqng 1.4 that the
// worker relies on. One process, in order: the status is process-global.

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "qwqng.hpp"

namespace {

int failures = 0;

#define CHECK(condition)                                                                 \
  do {                                                                                   \
    if (!(condition)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
      ++failures;                                                                        \
    }                                                                                    \
  } while (0)

std::uint32_t U(long code) { return static_cast<std::uint32_t>(code); }
std::uint32_t U(int rc) { return static_cast<std::uint32_t>(rc); }

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text << "\n";
}

}  // namespace

int main() {
  char root[] = "/tmp/qwqng_double_test_XXXXXX";
  if (mkdtemp(root) == nullptr) return 1;
  const std::string dir = root;
  const std::string device = dir + "/sys/bus/usb/devices/1-1";
  const std::string control = dir + "/control";
  std::string mkdirs = "mkdir -p " + device + " " + control;
  if (std::system(mkdirs.c_str()) != 0) return 1;
  unsetenv("QWQNG_DOUBLE_SYSFS");
  setenv("QWQNG_DOUBLE_CONTROL", control.c_str(), 1);

  {  // No device: DEVICE_NOT_OPENED, "" and never NULL.
    QWQNG* qng = QWQNG::Instance();
    CHECK(qng->DeviceID() != nullptr && qng->DeviceID()[0] == '\0');
    char bytes[16];
    CHECK(U(qng->RandBytes(bytes, 16)) == U(QNG_E_DEVICE_NOT_OPENED));
    CHECK(std::strcmp(qng->StatusString(), "QNG device not found or already in use.") == 0);
    CHECK(U(qng->RandBytes(bytes, 0)) == U(S_OK));  // no I/O, whatever the status
  }

  Write(device + "/idVendor", "0403");
  Write(device + "/idProduct", "6001");
  Write(device + "/serial", "QWR4M004");
  Write(device + "/devnum", "5");
  setenv("QWQNG_DOUBLE_SYSFS", (dir + "/sys").c_str(), 1);

  QWQNG* qng = QWQNG::Instance();
  CHECK(std::strcmp(qng->DeviceID(), "QWR4M004") == 0);
  CHECK(std::strcmp(qng->StatusString(), "QNG device reports success.") == 0);
  char bytes[8193];
  CHECK(U(qng->RandBytes(bytes, 8192)) == U(S_OK));

  // The int/long trap is real: the int that comes back never equals the long macro.
  Write(control + "/read_fault", "io_error");
  const int rc = qng->RandBytes(bytes, 16);
  CHECK(static_cast<long>(rc) != QNG_E_IO_ERROR);
  CHECK(U(rc) == U(QNG_E_IO_ERROR));
  // Sticky: later calls fail too, even though they fill the buffer.
  CHECK(U(qng->RandBytes(bytes, 16)) == U(QNG_E_IO_ERROR));
  // A stats exception replaces an error; an I/O error does not replace it.
  Write(control + "/read_fault", "stats_exception");
  Write(control + "/io_timeout", "0");
  CHECK(U(qng->RandBytes(bytes, 16)) == U(QNG_E_STATS_EXCEPTION));
  Write(control + "/read_fault", "io_error");
  CHECK(U(qng->RandBytes(bytes, 16)) == U(QNG_E_STATS_EXCEPTION));
  CHECK(std::strcmp(qng->StatusString(), "QNG test statistics exception.") == 0);
  CHECK(U(qng->Reset()) == U(QNG_S_OK));
  CHECK(U(qng->RandBytes(bytes, 16)) == U(S_OK));

  // 8193 bytes poison the session until Reset().
  CHECK(U(qng->RandBytes(bytes, 8193)) == U(QNG_E_IO_ARRAY_OVERSIZED));
  CHECK(U(qng->RandBytes(bytes, 16)) == U(QNG_E_IO_ARRAY_OVERSIZED));
  CHECK(U(qng->Reset()) == U(QNG_S_OK));

  long value = -1;
  CHECK(U(qng->RandInt32(&value)) == U(S_OK));
  CHECK((static_cast<unsigned long>(value) >> 32) == 0xffffffffUL);  // only 4 bytes written

  float info[18];
  info[17] = 42.0f;
  CHECK(U(qng->RuntimeInfo(info)) == U(S_OK));
  CHECK(info[17] == 42.0f && info[0] == 0.0f);

  double uniform = -1;
  CHECK(U(qng->RandUniform(&uniform)) == U(S_OK) && uniform >= 0 && uniform < 1);

  // The throttle starts with no credit: 20000 bytes at 100000 B/s take 0.2 s ...
  Write(control + "/rate", "100000");
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) CHECK(U(qng->RandBytes(bytes, 5000)) == U(S_OK));
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(199));
  // ... and what a reader leaves unfetched for a while comes at once when it is back.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) CHECK(U(qng->RandBytes(bytes, 8000)) == U(S_OK));  // 0.8 s worth
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(500));
  std::remove((control + "/rate").c_str());

  // The destructor leaks the handle: another object in this process finds it in use.
  delete qng;
  QWQNG* again = QWQNG::Instance();
  CHECK(again->DeviceID()[0] == '\0');
  CHECK(U(again->RandBytes(bytes, 16)) == U(QNG_E_DEVICE_NOT_OPENED));

  std::string cleanup = "rm -rf " + dir;
  if (std::system(cleanup.c_str()) != 0) return 1;
  if (failures != 0) std::fprintf(stderr, "%d checks failed\n", failures);
  return failures == 0 ? 0 : 1;
}
