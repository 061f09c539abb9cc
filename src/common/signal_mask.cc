#include "common/signal_mask.h"

#include <pthread.h>

#include <initializer_list>

namespace rngmux {

ScopedAsyncSignalBlock::ScopedAsyncSignalBlock() {
  sigset_t block;
  sigfillset(&block);
  for (int sync : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS}) {
    sigdelset(&block, sync);
  }
  pthread_sigmask(SIG_BLOCK, &block, &previous_);
}

ScopedAsyncSignalBlock::~ScopedAsyncSignalBlock() {
  pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

}  // namespace rngmux
