#!/usr/bin/env bash
# Full test run, every build against the libqwqng test double (tests/qwqng-double):
# (a) RelWithDebInfo build + all ctest tests (unit + integration),
# (b) ASan/UBSan clang build + unit and integration tests but those labelled
# release-only (rng-egd guests, the benchmarks' smoke run), (c) ThreadSanitizer build +
# unit tests and the integration tests but the QEMU guest files and the release-only
# ones (the daemon runs under TSan), (d) FUZZ_SECONDS (default 30) of libFuzzer on each
# parser; and first, that every C++ file is clang-formatted.
#
# Counts tests: every ctest test and every unit test of a sanitizer build (run in one
# process, counted from GoogleTest's summary) (an integration file that skipped a test counts as
# skipped, not passed), the format check and each fuzzer; a part that does not build
# counts as one failure. Ends with the line "N passed, N failed, N skipped" and exits
# non-zero on any failure. Skips and their reasons are listed above that line.
#
# (e) the Debian package: built, lintian, installed into a fresh Debian 12 root made with
# mmdebstrap, where the installed daemon serves a client (scripts/package-test.sh).
#
# Arguments name the parts to run (format release asan tsan fuzz package; default all).
#
# RNGMUX_REQUIRE (default here: ipv6,unshare,port1024,qwqng,netns, which a fresh Debian 12
# machine run as root always has) turns those skips into failures; set RNGMUX_REQUIRE=
# (empty) on a host that lacks one of them. See tests/integration/harness.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

JOBS="${JOBS:-2}"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
export RNGMUX_REQUIRE="${RNGMUX_REQUIRE-ipv6,unshare,port1024,qwqng,netns}"

bash scripts/install-deps.sh

CLANGXX=clang++-14
command -v "$CLANGXX" >/dev/null 2>&1 || CLANGXX=clang++
CLANGC=clang-14
command -v "$CLANGC" >/dev/null 2>&1 || CLANGC=clang

passed=0
failed=0
skipped=0
failed_parts=()
skip_reasons=()
failure_notes=()  # failed tests, and the end of an integration test's traceback
part_counted=0  # tests counted by the running part (0: the part counts as one)

# Counts the tests of one ctest run from its output (one line per test).
count_ctest() {
  local log="$1" logs_dir="$2" p f s
  p=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* +Passed +[0-9.]+ sec' "$log" || true)
  s=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*\*\*\*Skipped' "$log" || true)
  f=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: ' "$log" || true)
  f=$((f - p - s))
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
  part_counted=$((part_counted + p + f + s))
  if [[ -f "$logs_dir/skipped.txt" ]]; then
    while IFS= read -r line; do skip_reasons+=("$line"); done <"$logs_dir/skipped.txt"
  fi
  # the names of the failed ctest tests, so the end of a long log says which
  while IFS= read -r line; do failure_notes+=("$(dirname "$log"): $line"); done < <(
    grep -E '^ *[0-9]+/[0-9]+ Test +#[0-9]+: ' "$log" | grep -vE ' Passed +[0-9.]+ sec|\*\*\*Skipped' |
      sed -E 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: ([^ ]+) .*\*\*\*([A-Za-z]+).*/\1: \2/' || true)
  if [[ -f "$logs_dir/failed.txt" ]]; then
    while IFS= read -r line; do failure_notes+=("  $line"); done <"$logs_dir/failed.txt"
  fi
}

# ctest in build dir $1 with the remaining arguments; its tests are counted.
run_ctest() {
  local dir="$1"
  shift
  rm -f "$dir/test-logs/skipped.txt" "$dir/test-logs/failed.txt"
  local rc=0
  (cd "$dir" && ctest --output-on-failure "$@") 2>&1 | tee "$dir/ctest-output.log" || rc=$?
  count_ctest "$dir/ctest-output.log" "$dir/test-logs"
  return $rc
}

# The unit test binary $1 in one process (the remaining arguments go to it); its tests
# are counted from GoogleTest's summary. The sanitizer parts use this: one process per
# test (as ctest runs them) pays the sanitizer's start-up 550 times, minutes of the
# test command; the release part keeps a process per test.
run_gtest() {
  local bin="$1"
  shift
  local log="$bin-output.log" rc=0 p f s
  # Bounded: a hang fails the part instead of stalling the test command.
  timeout -k 10 900 "$bin" "$@" 2>&1 | tee "$log" || rc=$?
  p=$(sed -nE 's/^\[  PASSED  \] ([0-9]+) tests?\.$/\1/p' "$log" | tail -n1)
  s=$(sed -nE 's/^\[  SKIPPED \] ([0-9]+) tests?, listed below:$/\1/p' "$log" | tail -n1)
  f=$(sed -nE 's/^\[  FAILED  \] ([0-9]+) tests?, listed below:$/\1/p' "$log" | tail -n1)
  # without a summary (the binary died), the tests that ended before it count as they ended
  [[ -n $p ]] || p=$(grep -cE '^\[       OK \] ' "$log" || true)
  p=${p:-0} s=${s:-0} f=${f:-0}
  # A crash, a sanitizer abort or the time bound ends the binary before its summary (the
  # tests after the one running are then not run: fix it and run again); a leak report
  # comes after the summary. Either way it is a failure, named.
  if [[ $rc -ne 0 && $f -eq 0 ]]; then
    f=1
    if grep -qE '^\[==========\] [0-9]+ tests? from .* ran\.' "$log"; then
      failure_notes+=("$bin: exited with $rc after its summary (a report at exit, e.g. a leak)")
    else
      local running
      running=$(sed -nE 's/^\[ RUN      \] (.*)$/\1/p' "$log" | tail -n1)
      failure_notes+=("$bin: exited with $rc while running ${running:-no test}; the tests after it did not run")
    fi
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
  part_counted=$((part_counted + p + f + s))
  while IFS= read -r line; do skip_reasons+=("$(basename "$bin"): $line"); done < <(
    sed -nE 's/^\[  SKIPPED \] ([A-Za-z0-9_./]+)$/\1/p' "$log" | sort -u)
  while IFS= read -r line; do failure_notes+=("$(basename "$bin"): $line: Failed"); done < <(
    grep -v ', listed below:$' "$log" | sed -nE 's/^\[  FAILED  \] ([A-Za-z0-9_./]+)([ ,].*)?$/\1/p' |
      sort -u)
  return $rc
}

run_part() {
  local name="$1"
  shift
  echo
  echo "=== ${name} ==="
  local f0=$failed start=$SECONDS rc=0
  part_counted=0
  # `set -e` is suspended inside a function called from `if`: use explicit checks.
  if "$@"; then rc=0; else rc=1; fi
  if [[ $part_counted -eq 0 ]]; then
    # a part without counted tests (format check, a build that failed before its tests)
    if [[ $rc -eq 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  elif [[ $rc -ne 0 && $failed -eq $f0 ]]; then
    failed=$((failed + 1))  # tests ran and passed, but the part failed (a build step)
  fi
  if [[ $rc -eq 0 && $failed -eq $f0 ]]; then
    echo "=== ${name}: PASSED ($((SECONDS - start)) s) ==="
  else
    echo "=== ${name}: FAILED ($((SECONDS - start)) s) ==="
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
  run_ctest build-test -j1 || return 1
}

asan() {
  qwqng_double || return 1
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRNGMUX_SANITIZE=ON \
    -DCMAKE_CXX_COMPILER="$CLANGXX" "${QWQNG_FLAGS[@]}" || return 1
  cmake --build build-asan -j"$JOBS" || return 1
  local rc=0
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_gtest build-asan/rngmux_unit_tests || rc=1
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest build-asan -j1 -L integration -LE release-only || rc=1
  return $rc
}

tsan() {
  qwqng_double || return 1
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRNGMUX_SANITIZE_THREAD=ON \
    -DCMAKE_CXX_COMPILER="$CLANGXX" "${QWQNG_FLAGS[@]}" || return 1
  cmake --build build-tsan -j"$JOBS" || return 1
  # The daemon (event loop, source threads, QNG worker) runs under TSan in the
  # integration tests; a report fails the test (harness.py greps every daemon log).
  # The QEMU guest files are left out: the daemon code they drive (TCP and UDP
  # sessions, primers, connect endpoints) is the same the other files drive with
  # Python clients, and under TSan their TCG guests would take most of an hour.
  local rc=0
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    run_gtest build-tsan/rngmux_unit_tests || rc=1
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    run_ctest build-tsan -j1 -L integration -LE 'guest|release-only' || rc=1
  return $rc
}

fuzz() {
  cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRNGMUX_FUZZ=ON \
    -DRNGMUX_BUILD_TESTS=OFF -DCMAKE_CXX_COMPILER="$CLANGXX" || return 1
  cmake --build build-fuzz -j"$JOBS" --target fuzzers || return 1
}

# One libFuzzer target for FUZZ_SECONDS, from the seeds in tests/fuzz/seeds/<target>/
# (read only) and the corpus it grew in earlier runs (build-fuzz/corpus/<target>/).
fuzz_target() {
  local target="$1" bin="build-fuzz/$1"
  if [[ ! -x "$bin" ]]; then
    echo "fuzz: $bin not built" >&2
    return 1
  fi
  local corpus="build-fuzz/corpus/$target" artifacts="build-fuzz/artifacts/$target"
  rm -rf "$artifacts"
  mkdir -p "$corpus" "$artifacts"
  # libFuzzer exits non-zero on a crash, leak, timeout or sanitizer report.
  "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" "tests/fuzz/seeds/$target" || return 1
  if compgen -G "$artifacts/*" >/dev/null; then
    echo "fuzz: crash artifacts found in $artifacts" >&2
    return 1
  fi
}

# The Debian package: built, checked by lintian, installed into a fresh Debian 12 root
# where the installed daemon serves a client (scripts/package-test.sh); its steps count.
package() {
  local log rc=0
  log="$(mktemp /tmp/rngmux-package-test.XXXXXX.log)"
  bash scripts/package-test.sh 2>&1 | tee "$log" || rc=$?
  local counts p f s
  counts="$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n1 || true)"
  if [[ -n "$counts" ]]; then
    read -r p _ f _ s _ <<<"${counts//,/}"
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
    part_counted=$((part_counted + p + f + s))
    while IFS= read -r line; do skip_reasons+=("package: ${line#skipped: }"); done < <(
      grep -E '^skipped: ' "$log" || true)
  fi
  rm -f "$log"
  return $rc
}

format_check() {
  git ls-files '*.cc' '*.h' | xargs clang-format --dry-run -Werror
}

# Parts to run: all by default, or those named as arguments (format release asan tsan fuzz
# package).
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(format release asan tsan fuzz package)
for part in "${parts[@]}"; do
  case "$part" in
    format) run_part "clang-format" format_check ;;
    release) run_part "release build + ctest (unit + integration)" release ;;
    asan) run_part "ASan/UBSan build + unit and integration tests" asan ;;
    tsan) run_part "ThreadSanitizer build + unit and integration tests (no guest files)" tsan ;;
    package) run_part "Debian package: build, lintian, install and serve in a fresh root" package ;;
    fuzz)
      run_part "fuzzer build" fuzz
      for target in egd_parser_fuzzer egd_datagram_fuzzer endpoint_spec_fuzzer \
        qemu_chardev_fuzzer qwqng_frame_fuzzer vhost_user_message_fuzzer split_virtqueue_fuzzer \
        config_file_fuzzer control_request_fuzzer http_request_fuzzer; do
        run_part "fuzz ${target} ${FUZZ_SECONDS}s" fuzz_target "$target"
      done
      ;;
    *)
      echo "usage: $0 [format|release|asan|tsan|fuzz|package]..." >&2
      exit 2
      ;;
  esac
done

echo
if [[ ${#skip_reasons[@]} -gt 0 ]]; then
  echo "skipped tests:"
  printf '  %s\n' "${skip_reasons[@]}"
fi
if [[ ${#failure_notes[@]} -gt 0 ]]; then
  echo "failed tests:"
  printf '  %s\n' "${failure_notes[@]}"
fi
if [[ $failed -gt 0 ]]; then
  echo "failed parts: ${failed_parts[*]}"
fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[[ $failed -eq 0 ]]
