#!/usr/bin/env bash
# run-unit.sh BUILD_DIR - run every BUILD_DIR/tests/test_* (cmocka), show its output, and end with
# a summary line "unit: N passed, N failed" counting cmocka test cases (a binary that crashes or
# exits non-zero without a cmocka failure count is one failure). Exits non-zero on any failure.
set -uo pipefail
BUILD_DIR=${1:-build}
TIMEOUT=${UNIT_TIMEOUT:-300}

passed=0
failed=0
failed_bins=()
shopt -s nullglob
bins=("$BUILD_DIR"/tests/test_*)
# UNIT_ONLY="test_db test_acct" runs only those binaries (scripts/test.sh's PostgreSQL stage).
if [ -n "${UNIT_ONLY:-}" ]; then
  bins=()
  for n in $UNIT_ONLY; do bins+=("$BUILD_DIR/tests/$n"); done
fi
if [ ${#bins[@]} -eq 0 ]; then
  echo "run-unit: no unit test binaries in $BUILD_DIR/tests"
fi
for bin in "${bins[@]}"; do
  [ -x "$bin" ] && [ -f "$bin" ] || continue
  case "$bin" in *.d|*.o) continue ;; esac
  name=$(basename "$bin")
  echo "=== $name"
  out=$(mktemp)
  # cmocka prints to stdout; sanitizers to stderr: keep both, in order.
  timeout -k 5 "$TIMEOUT" "$bin" >"$out" 2>&1
  rc=$?
  cat "$out"
  p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
  f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      echo "run-unit: $name timed out after ${TIMEOUT}s"
    else
      echo "run-unit: $name exited with status $rc"
    fi
  fi
  if grep -qE 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$out" && [ "$f" -eq 0 ]; then
    echo "run-unit: $name: sanitizer report"
    f=1
  fi
  [ "$f" -gt 0 ] && failed_bins+=("$name")
  passed=$((passed + p))
  failed=$((failed + f))
  rm -f "$out"
done
if [ ${#failed_bins[@]} -gt 0 ]; then
  echo "run-unit: failing binaries: ${failed_bins[*]}"
fi
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
