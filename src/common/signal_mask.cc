#include "common/signal_mask.h"

#include <pthread.h>

#include <initializer_list>

namespace rngmux {

sigset_t ScopedAsyncSignalBlock::AsyncSignals() {
  sigset_t set;
  sigfillset(&set);
  for (int sync : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS}) {
    sigdelset(&set, sync);
  }
  return set;
}

ScopedAsyncSignalBlock::ScopedAsyncSignalBlock() {
  const sigset_t block = AsyncSignals();
  pthread_sigmask(SIG_BLOCK, &block, &previous_);
}

ScopedAsyncSignalBlock::~ScopedAsyncSignalBlock() {
  pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

}  // namespace rngmux
