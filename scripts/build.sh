#!/usr/bin/env bash
# Builds rngmux (Release with debug info) into build/: the binary a user runs.
# The test suite builds into build-test/ instead, because it links the QNG source
# against the libqwqng test double; this build finds the vendor's libqwqng if it is
# installed (RNGMUX_WITH_QWQNG=AUTO) and otherwise goes without.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh >&2
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRNGMUX_BUILD_TESTS=OFF >&2
cmake --build build -j2 >&2
echo "built $PWD/build/rngmux" >&2
