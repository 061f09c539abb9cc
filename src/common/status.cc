#include "common/status.h"

#include <cstring>

namespace rngmux {

Status Status::FromErrno(const std::string& what, int err) {
  return Status::Error(what + ": " + std::strerror(err));
}

}  // namespace rngmux
