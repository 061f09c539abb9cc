#!/usr/bin/env bash
# Builds rngmux into build/ (scripts/build.sh) and runs `rngmux serve ARGS...`.
# With no arguments rngmux listens on tcp:127.0.0.1:1024 and prints QEMU arguments.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/build.sh
exec build/rngmux serve "$@"
