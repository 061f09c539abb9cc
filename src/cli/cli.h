#pragma once

namespace rngmux {

// Parses the command line and runs the chosen subcommand. Returns the exit code.
int RunCli(int argc, char** argv);

}  // namespace rngmux
