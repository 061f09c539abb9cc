#!/usr/bin/env bash
# The QEMU guest end-to-end tests (tests/integration/test_qemu_guest.py), or some of them:
#
#   bash scripts/e2e.sh                  # every case
#   bash scripts/e2e.sh two_guests       # cases whose name contains "two_guests"
#   bash scripts/e2e.sh --list           # the case names
#
# Builds rngmux into build/ (and the guest, cached in /var/cache/rngmux-test-guest) first.
# A failing case keeps its logs (rngmux, guest console, QEMU stderr and command line) in
# $RNGMUX_TEST_LOGS/<test id>/ (default build/test-logs) and prints where.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${1:-}" = "--list" ]; then
  grep -o 'def test_[a-z0-9_]*' tests/integration/test_qemu_guest*.py | sed 's/.*def test_//'
  exit 0
fi

bash scripts/build.sh

export RNGMUX_BINARY="$PWD/build/rngmux"
export RNGMUX_TEST_LOGS="${RNGMUX_TEST_LOGS:-$PWD/build/test-logs}"
patterns=()
for name in "$@"; do
  patterns+=(-k "$name")
done
cd tests/integration
modules=()
for f in test_qemu_guest*.py; do
  modules+=("${f%.py}")
done
exec python3 -m unittest -v "${patterns[@]}" "${modules[@]}"
