#!/usr/bin/env bash
# test.sh - the whole test suite on an already-built tree:
#   1. unit tests (cmocka binaries in $LIVEVLM_BUILD/tests/)
#   2. integration tests (node --test tests/integration/*.test.mjs: real livevlm + fakevlm)
#   3. cluster tests   (node --test tests/cluster/*.test.mjs: redis-server, haproxy with
#      deploy/haproxy.cfg, frontends, workers and fakevlm on loopback, faults injected; one file at
#      a time: they measure failover times)
#   4. browser tests   (node --test tests/e2e/*.test.mjs: Debian chromium via playwright-core)
#   5. a scan of every log the tests wrote for sanitizer reports
# LIVEVLM_BUILD picks the binaries (default build; build-san for the ASan+UBSan build).
# Ends with the line "tests: N passed, N failed" and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

export LIVEVLM_BUILD=${LIVEVLM_BUILD:-build}
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# a stage's time box: the browser stage runs its files one at a time and now holds the accounts
# walks (sign-in, admin page, single sign-on, the README journey) too
STAGE_TIMEOUT=${LIVEVLM_STAGE_TIMEOUT:-1500}
INTEGRATION_CONCURRENCY=${LIVEVLM_TEST_CONCURRENCY:-2}

TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/livevlm-test.XXXXXX")
export LIVEVLM_TEST_TMP="$TEST_TMP"

total_pass=0
total_fail=0
summary=()

count() { # stage pass fail
  total_pass=$((total_pass + $2))
  total_fail=$((total_fail + $3))
  summary+=("$(printf '%-15s %4d passed, %d failed' "$1" "$2" "$3")")
}

echo "### livevlm tests on $LIVEVLM_BUILD (logs under $TEST_TMP)"

# --- 1. unit ------------------------------------------------------------------------------------
echo "### unit tests"
unit_log="$TEST_TMP/unit.log"
scripts/run-unit.sh "$LIVEVLM_BUILD" 2>&1 | tee "$unit_log"
line=$(grep -E '^unit: [0-9]+ passed, [0-9]+ failed' "$unit_log" | tail -1)
if [ -n "$line" ]; then
  p=$(echo "$line" | sed -E 's/^unit: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
  f=$(echo "$line" | sed -E 's/^unit: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
else
  p=0; f=1
fi
count unit "$p" "$f"

# --- 1b. the accounts database's unit tests again, on a real PostgreSQL ---------------------------
# (scripts/pg-test.sh starts a throwaway server as the OS user postgres; its SQLite cases ran above)
echo "### database unit tests on PostgreSQL"
pg_log="$TEST_TMP/unit-postgres.log"
UNIT_ONLY="test_db test_acct" LIVEVLM_TEST_PG_ONLY=1 \
  scripts/pg-test.sh scripts/run-unit.sh "$LIVEVLM_BUILD" >"$pg_log" 2>&1
cat "$pg_log"
line=$(grep -E '^unit: [0-9]+ passed, [0-9]+ failed' "$pg_log" | tail -1)
if [ -n "$line" ]; then
  p=$(echo "$line" | sed -E 's/^unit: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
  f=$(echo "$line" | sed -E 's/^unit: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
else
  p=0; f=1
fi
count unit-postgres "$p" "$f"

# --- 2./3./4. node suites -------------------------------------------------------------------------
node_stage() { # name concurrency files...
  local name=$1 conc=$2; shift 2
  local tap="$TEST_TMP/$name.tap"
  if [ $# -eq 0 ]; then
    echo "### $name: no test files"
    count "$name" 0 0
    return
  fi
  if [ ! -d tests/node_modules/ws ]; then
    echo "### $name: tests/node_modules missing (run scripts/install-deps.sh)"
    count "$name" 0 1
    return
  fi
  echo "### $name tests: $*"
  timeout -k 20 "$STAGE_TIMEOUT" node --test \
    --test-concurrency="$conc" \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "$@"
  local rc=$?
  local p f c
  p=$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -1)
  f=$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -1)
  c=$(sed -n 's/^# cancelled \([0-9][0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -1)
  p=${p:-0}; f=${f:-0}; c=${c:-0}
  f=$((f + c))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      echo "### $name: stopped after ${STAGE_TIMEOUT}s"
    else
      echo "### $name: node exited with status $rc"
    fi
    f=1
  fi
  count "$name" "$p" "$f"
}

shopt -s nullglob
node_stage integration "$INTEGRATION_CONCURRENCY" tests/integration/*.test.mjs
node_stage cluster 1 tests/cluster/*.test.mjs
node_stage e2e 1 tests/e2e/*.test.mjs

# --- 5. sanitizer reports in any log ----------------------------------------------------------------
san_files=$(grep -rlE 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$TEST_TMP" \
              --include='*.log' 2>/dev/null | LC_ALL=C sort || true)
san_fail=0
if [ -n "$san_files" ]; then
  echo "### sanitizer reports found in:"
  for f in $san_files; do
    echo "--- $f"
    grep -nE -A12 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$f" | head -60
    san_fail=$((san_fail + 1))
  done
fi
count sanitizer-logs $(( san_fail == 0 ? 1 : 0 )) "$san_fail"

echo "### summary ($LIVEVLM_BUILD)"
for s in "${summary[@]}"; do echo "  $s"; done
if [ "$total_fail" -eq 0 ]; then
  rm -rf "$TEST_TMP"
else
  echo "logs kept in $TEST_TMP"
fi
if [ -n "${LIVEVLM_SUMMARY_FILE:-}" ]; then
  echo "$total_pass $total_fail" >> "$LIVEVLM_SUMMARY_FILE"
fi
echo "tests: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
