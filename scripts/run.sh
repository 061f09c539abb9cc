#!/usr/bin/env bash
# Builds rngmux (Release with debug info) into build/ and runs `rngmux serve ARGS...`.
# With no arguments rngmux listens on tcp:127.0.0.1:1024 and prints QEMU arguments.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh >&2
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
cmake --build build -j2 --target rngmux >&2
exec build/rngmux serve "$@"
