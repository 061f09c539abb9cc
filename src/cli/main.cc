#include <csignal>
#include <cstdio>
#include <exception>

#include "cli/cli.h"

int main(int argc, char** argv) {
  // A client that vanishes mid-write must cost one connection, not the daemon.
  std::signal(SIGPIPE, SIG_IGN);
  try {
    return rngmux::RunCli(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rngmux: fatal: %s\n", e.what());
    return 1;
  }
}
