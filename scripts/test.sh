#!/usr/bin/env bash
# Full test run, every build against the libqwqng test double (tests/qwqng-double):
# (a) RelWithDebInfo build + all ctest tests (unit + integration),
# (b) ASan/UBSan clang build + unit and integration tests, (c) ThreadSanitizer build +
# unit tests, (d) 60 s of libFuzzer on the EGD parser, (e) 30 s each on the vhost-user
# message parser and the split-virtqueue walker; and first, that every C++ file is
# clang-formatted.
# Ends with one line "N passed, N failed" counting these parts; exits non-zero on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

JOBS="${JOBS:-2}"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
VHOST_FUZZ_SECONDS="${VHOST_FUZZ_SECONDS:-30}"

bash scripts/install-deps.sh

CLANGXX=clang++-14
command -v "$CLANGXX" >/dev/null 2>&1 || CLANGXX=clang++
CLANGC=clang-14
command -v "$CLANGC" >/dev/null 2>&1 || CLANGC=clang

passed=0
failed=0
failed_parts=()

run_part() {
  local name="$1"
  shift
  echo
  echo "=== ${name} ==="
  # `set -e` is suspended inside a function called from `if`: use explicit checks.
  if "$@"; then
    echo "=== ${name}: PASSED ==="
    passed=$((passed + 1))
  else
    echo "=== ${name}: FAILED ==="
    failed=$((failed + 1))
    failed_parts+=("$name")
  fi
}

# The libqwqng test double, installed like the vendor's library; every build of
# rngmux here uses it, so the QNG source is always built and tested.
QWQNG_PREFIX="$PWD/build-qwqng-double/prefix"
QWQNG_FLAGS=(-DRNGMUX_WITH_QWQNG=ON -DQWQNG_ROOT="$QWQNG_PREFIX")
qwqng_double() {
  cmake -S tests/qwqng-double -B build-qwqng-double -DCMAKE_INSTALL_PREFIX="$QWQNG_PREFIX" \
    >/dev/null || return 1
  cmake --build build-qwqng-double -j"$JOBS" || return 1
  cmake --install build-qwqng-double >/dev/null || return 1
  (cd build-qwqng-double && ctest --output-on-failure) || return 1
}

release() {
  qwqng_double || return 1
  # build-test/, not build/: this one links the libqwqng test double.
  cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo "${QWQNG_FLAGS[@]}" || return 1
  cmake --build build-test -j"$JOBS" || return 1
  (cd build-test && ctest --output-on-failure -j1) || return 1
}

asan() {
  qwqng_double || return 1
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRNGMUX_SANITIZE=ON \
    -DCMAKE_CXX_COMPILER="$CLANGXX" "${QWQNG_FLAGS[@]}" || return 1
  cmake --build build-asan -j"$JOBS" || return 1
  (cd build-asan &&
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j1) || return 1
}

tsan() {
  qwqng_double || return 1
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRNGMUX_SANITIZE_THREAD=ON \
    -DCMAKE_CXX_COMPILER="$CLANGXX" "${QWQNG_FLAGS[@]}" || return 1
  cmake --build build-tsan -j"$JOBS" --target rngmux_unit_tests || return 1
  (cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --output-on-failure -LE integration -j"$JOBS") || return 1
}

fuzz() {
  cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRNGMUX_FUZZ=ON \
    -DRNGMUX_BUILD_TESTS=OFF -DCMAKE_CXX_COMPILER="$CLANGXX" || return 1
  cmake --build build-fuzz -j"$JOBS" --target egd_parser_fuzzer || return 1
  local bin
  bin="$(find build-fuzz -type f -name egd_parser_fuzzer -perm -u+x | head -n1)"
  if [[ -z "$bin" ]]; then
    echo "fuzz: egd_parser_fuzzer binary not found under build-fuzz" >&2
    return 1
  fi
  mkdir -p build-fuzz/corpus build-fuzz/artifacts
  # a few valid seeds so the fuzzer starts from real requests
  printf '\x00' >build-fuzz/corpus/seed-entropy-count
  printf '\x02\x40' >build-fuzz/corpus/seed-read-blocking
  printf '\x01\xff\x04' >build-fuzz/corpus/seed-read-nonblocking-pid
  printf '\x03\x00\x10\x02ab\x02\x00' >build-fuzz/corpus/seed-write
  # libFuzzer exits non-zero on a crash, leak, timeout or sanitizer report.
  "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix=build-fuzz/artifacts/ build-fuzz/corpus || return 1
  if compgen -G "build-fuzz/artifacts/*" >/dev/null; then
    echo "fuzz: crash artifacts found in build-fuzz/artifacts" >&2
    return 1
  fi
}

# vhost-user: the message parser and the descriptor walker (over a fake memory map).
fuzz_vhost() {
  cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRNGMUX_FUZZ=ON \
    -DRNGMUX_BUILD_TESTS=OFF -DCMAKE_CXX_COMPILER="$CLANGXX" || return 1
  cmake --build build-fuzz -j"$JOBS" --target vhost_user_message_fuzzer split_virtqueue_fuzzer \
    || return 1
  local name bin
  # a seed: one GET_FEATURES (no fds, a 12-byte chunk)
  mkdir -p build-fuzz/corpus-vhost_user_message_fuzzer
  printf '\x00\x0c\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00' \
    >build-fuzz/corpus-vhost_user_message_fuzzer/seed-get-features
  for name in vhost_user_message_fuzzer split_virtqueue_fuzzer; do
    bin="$(find build-fuzz -type f -name "$name" -perm -u+x | head -n1)"
    if [[ -z "$bin" ]]; then
      echo "fuzz: $name binary not found under build-fuzz" >&2
      return 1
    fi
    mkdir -p "build-fuzz/corpus-$name" "build-fuzz/artifacts-$name"
    "$bin" -max_total_time="$VHOST_FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts-$name/" \
      "build-fuzz/corpus-$name" || return 1
    if compgen -G "build-fuzz/artifacts-$name/*" >/dev/null; then
      echo "fuzz: crash artifacts found in build-fuzz/artifacts-$name" >&2
      return 1
    fi
  done
}

format_check() {
  git ls-files '*.cc' '*.h' | xargs clang-format --dry-run -Werror
}

run_part "clang-format" format_check
run_part "release build + ctest (unit + integration)" release
run_part "ASan/UBSan build + unit and integration tests" asan
run_part "ThreadSanitizer build + unit tests" tsan
run_part "fuzz egd_parser_fuzzer ${FUZZ_SECONDS}s" fuzz
run_part "fuzz vhost-user parser and virtqueue walker ${VHOST_FUZZ_SECONDS}s each" fuzz_vhost

echo
if [[ $failed -gt 0 ]]; then
  echo "failed parts: ${failed_parts[*]}"
fi
echo "${passed} passed, ${failed} failed"
[[ $failed -eq 0 ]]
