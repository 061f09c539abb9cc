# The QNG PQ4000KU source needs the vendor's libqwqng (1.4), which users build and
# install themselves: qwqng.hpp in /usr/local/include, libqwqng.so in
# /usr/local/lib64 (on neither Debian's linker path nor its pkg-config path). Its
# header includes <ftdi.h>, so libftdi's include directory is needed to compile,
# but only libqwqng is linked: two libftdi versions in one process collide.
#
# Sets RNGMUX_HAVE_QWQNG and, when true, the target rngmux_qwqng_vendor.

set(RNGMUX_WITH_QWQNG AUTO CACHE STRING
    "Build the QNG PQ4000KU source against libqwqng: AUTO (if found), ON (required) or OFF")
set_property(CACHE RNGMUX_WITH_QWQNG PROPERTY STRINGS AUTO ON OFF)
set(QWQNG_ROOT "" CACHE PATH "Prefix libqwqng is installed in (include/, lib64/); searched first")

string(TOUPPER "${RNGMUX_WITH_QWQNG}" _qwqng_mode)
if(NOT _qwqng_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "RNGMUX_WITH_QWQNG must be AUTO, ON or OFF, not \"${RNGMUX_WITH_QWQNG}\"")
endif()

set(RNGMUX_HAVE_QWQNG OFF)
if(NOT _qwqng_mode STREQUAL "OFF")
  set(_qwqng_missing "")
  set(_qwqng_hints)
  set(_qwqng_include_dirs "/usr/local/include")
  set(_qwqng_lib_dirs "/usr/local/lib64")
  if(QWQNG_ROOT)
    list(APPEND _qwqng_hints "${QWQNG_ROOT}")
    set(_qwqng_include_dirs "${QWQNG_ROOT}/include and /usr/local/include")
    set(_qwqng_lib_dirs "${QWQNG_ROOT}/lib64 and /usr/local/lib64")
  endif()

  find_path(QWQNG_INCLUDE_DIR qwqng.hpp
    HINTS ${_qwqng_hints} PATH_SUFFIXES include PATHS /usr/local/include)
  find_library(QWQNG_LIBRARY NAMES qwqng
    HINTS ${_qwqng_hints} PATH_SUFFIXES lib64 lib PATHS /usr/local/lib64 /usr/local/lib)
  if(NOT QWQNG_INCLUDE_DIR)
    list(APPEND _qwqng_missing "qwqng.hpp (looked in ${_qwqng_include_dirs})")
  endif()
  if(NOT QWQNG_LIBRARY)
    list(APPEND _qwqng_missing "libqwqng (looked in ${_qwqng_lib_dirs})")
  endif()

  # libftdi1 first; the vendor's own build script may have used the old libftdi 0.x.
  set(_qwqng_ftdi_dirs "")
  set(_qwqng_ftdi_found OFF)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(QWQNG_FTDI1 QUIET libftdi1)
    if(QWQNG_FTDI1_FOUND)
      set(_qwqng_ftdi_dirs ${QWQNG_FTDI1_INCLUDE_DIRS})
      set(_qwqng_ftdi_found ON)
    else()
      pkg_check_modules(QWQNG_FTDI0 QUIET libftdi)
      if(QWQNG_FTDI0_FOUND)
        set(_qwqng_ftdi_dirs ${QWQNG_FTDI0_INCLUDE_DIRS})
        set(_qwqng_ftdi_found ON)
      endif()
    endif()
  endif()
  if(NOT _qwqng_ftdi_found)
    find_path(QWQNG_FTDI_INCLUDE_DIR ftdi.h PATH_SUFFIXES libftdi1 libftdi)
    if(QWQNG_FTDI_INCLUDE_DIR)
      set(_qwqng_ftdi_dirs ${QWQNG_FTDI_INCLUDE_DIR})
      set(_qwqng_ftdi_found ON)
    else()
      list(APPEND _qwqng_missing "libftdi's ftdi.h (install libftdi1-dev)")
    endif()
  endif()

  if(_qwqng_missing STREQUAL "")
    # The probe compiles and links a use of the class as worker_main.cc does. Its
    # result is cached under a name that changes with the paths, so pointing
    # QWQNG_ROOT elsewhere probes again.
    include(CheckCXXSourceCompiles)
    string(MD5 _qwqng_probe_key "${QWQNG_INCLUDE_DIR};${QWQNG_LIBRARY};${_qwqng_ftdi_dirs}")
    set(CMAKE_REQUIRED_INCLUDES ${QWQNG_INCLUDE_DIR} ${_qwqng_ftdi_dirs})
    set(CMAKE_REQUIRED_LIBRARIES ${QWQNG_LIBRARY})
    set(CMAKE_REQUIRED_QUIET ON)
    set(_qwqng_probe_source "
#include <qwqng.hpp>
int main() {
  QWQNG* qng = QWQNG::Instance();
  char bytes[16];
  float info[17];
  int rc = qng->RandBytes(bytes, 16);
  rc |= qng->Clear() | qng->Reset() | qng->RuntimeInfo(info);
  return (qng->DeviceID()[0] != 0 && qng->StatusString() != nullptr && rc == 0) ? 0 : 1;
}
")
    check_cxx_source_compiles("${_qwqng_probe_source}" RNGMUX_QWQNG_PROBE_${_qwqng_probe_key})
    unset(CMAKE_REQUIRED_INCLUDES)
    unset(CMAKE_REQUIRED_LIBRARIES)
    unset(CMAKE_REQUIRED_QUIET)
    if(NOT RNGMUX_QWQNG_PROBE_${_qwqng_probe_key})
      list(APPEND _qwqng_missing
           "a program using qwqng.hpp and ${QWQNG_LIBRARY} did not compile and link "
           "(see CMakeFiles/CMakeError.log)")
    endif()
  endif()

  if(_qwqng_missing STREQUAL "")
    set(RNGMUX_HAVE_QWQNG ON)
    get_filename_component(QWQNG_LIBRARY_DIR "${QWQNG_LIBRARY}" DIRECTORY)
    add_library(rngmux_qwqng_vendor INTERFACE)
    # SYSTEM: the vendor's headers are not held to this project's warnings.
    target_include_directories(rngmux_qwqng_vendor SYSTEM INTERFACE
      ${QWQNG_INCLUDE_DIR} ${_qwqng_ftdi_dirs})
    target_link_libraries(rngmux_qwqng_vendor INTERFACE ${QWQNG_LIBRARY})
    message(STATUS "qwqng: building the QNG source with ${QWQNG_LIBRARY}")
  else()
    list(JOIN _qwqng_missing "; " _qwqng_missing_text)
    if(_qwqng_mode STREQUAL "ON")
      message(FATAL_ERROR "RNGMUX_WITH_QWQNG=ON, but libqwqng is not usable: missing "
              "${_qwqng_missing_text}. Install libqwqng 1.4 (see README, \"QNG PQ4000KU\") "
              "or set QWQNG_ROOT to its prefix.")
    endif()
    message(STATUS "qwqng: not found (${_qwqng_missing_text}); building without the QNG "
            "source (--source qwqng will say \"not compiled in\")")
  endif()
endif()
