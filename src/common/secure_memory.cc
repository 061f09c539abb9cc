#include "common/secure_memory.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>

namespace rngmux {

void SecureWipe(void* data, std::size_t size) {
  if (size != 0) explicit_bzero(data, size);
}

SecureBuffer::SecureBuffer(std::size_t size) : size_(size) {
  data_ = static_cast<std::uint8_t*>(std::calloc(size ? size : 1, 1));
  if (data_ == nullptr) throw std::bad_alloc();
  if (size != 0) {
    locked_ = mlock(data_, size) == 0;
    madvise(data_, size, MADV_DONTDUMP);  // Best effort: needs page alignment to apply.
  }
}

SecureBuffer::~SecureBuffer() {
  SecureWipe(data_, size_);
  if (locked_) munlock(data_, size_);
  std::free(data_);
}

}  // namespace rngmux
