// A clean-room test double of libqwqng 1.4's public header, written from the
// documented interface only. Same class, signatures and macros as the vendor's,
// and like it, it includes <ftdi.h> and defines global macros: include it in one
// .cc file, after everything else.
#ifndef QWQNG_HPP
#define QWQNG_HPP

#include <ftdi.h>

// Return codes: long literals, returned as int (compare them as uint32_t).
#define S_OK 0x00000000L
#define QNG_S_OK 0x00044400L
#define QNG_E_GENERAL_FAILURE 0x80044401L
#define QNG_E_IO_ERROR 0x80044402L
#define QNG_E_IO_TIMEOUT 0x80044403L
#define QNG_E_IO_ARRAY_OVERSIZED 0x80044404L
#define QNG_E_STATS_EXCEPTION 0x80044406L
#define QNG_E_STATS_UNSUPPORTED 0x80044407L
#define QNG_E_DIAGX_UNSUPPORTED 0x80044408L
#define QNG_E_DEVICE_NOT_OPENED 0x8004440AL

// The vendor's header redefines this one too.
#define __func__ __FUNCTION__

class QWQNG {
 public:
  QWQNG();
  static QWQNG* Instance();
  ~QWQNG();

  char* statusString_;
  char* devId_;

  char* StatusString();
  char* DeviceID();
  int RandInt32(long* pVal);
  int RandUniform(double* pVal);
  int RandNormal(double* pVal);
  int RandBytes(char* pval, long length);
  int Clear();
  int Reset();
  int RuntimeInfo(float* pVal);
  int Diagnostics(char dxCode, char* dxInfo);

 private:
  struct Device;
  Device* device_;
};

#endif  // QWQNG_HPP
