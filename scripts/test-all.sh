#!/usr/bin/env bash
# test-all.sh - the one test command: install what is missing, build with -Werror, run the whole
# suite (scripts/test.sh: unit, integration, cluster, browser), build with ASan+UBSan and run the
# suite again, a multi-user soak on that build, then a short fuzz run when the fuzz script exists.
# Every stage runs even when an earlier one failed (so one run shows everything); ends with
# "total: N passed, N failed" and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-2}
start=$(date +%s)
summary_file=$(mktemp "${TMPDIR:-/tmp}/livevlm-summary.XXXXXX")
export LIVEVLM_SUMMARY_FILE="$summary_file"
extra_pass=0
extra_fail=0
stages=()

stage() { echo; echo "##### $* ($(( $(date +%s) - start ))s)"; }
finish() {
  local p=0 f=0 a b
  while read -r a b; do p=$((p + a)); f=$((f + b)); done < "$summary_file"
  p=$((p + extra_pass)); f=$((f + extra_fail))
  rm -f "$summary_file"
  echo
  echo "##### done in $(( $(date +%s) - start ))s"
  for s in "${stages[@]}"; do echo "  $s"; done
  echo "total: $p passed, $f failed"
  [ "$f" -eq 0 ]
  exit $?
}

stage "install dependencies"
if ! bash scripts/install-deps.sh; then
  stages+=("install-deps: FAILED")
  extra_fail=$((extra_fail + 1))
  finish
fi

stage "source checks (scripts/check-src.sh)"
if bash scripts/check-src.sh; then
  stages+=("check-src: ok"); extra_pass=$((extra_pass + 1))
else
  stages+=("check-src: FAILED"); extra_fail=$((extra_fail + 1))
fi

stage "layer checks (scripts/check-layers.sh)"
if bash scripts/check-layers.sh; then
  stages+=("check-layers: ok"); extra_pass=$((extra_pass + 1))
else
  stages+=("check-layers: FAILED"); extra_fail=$((extra_fail + 1))
fi

stage "build (make -j$JOBS WERROR=1)"
if ! make -j"$JOBS" WERROR=1; then
  stages+=("build: FAILED")
  extra_fail=$((extra_fail + 1))
  finish
fi
stages+=("build: ok")

stage "test suite on build/"
lines_before=$(wc -l < "$summary_file")
if LIVEVLM_BUILD=build bash scripts/test.sh; then stages+=("suite (build): ok"); else stages+=("suite (build): FAILED"); fi
[ "$(wc -l < "$summary_file")" -gt "$lines_before" ] || extra_fail=$((extra_fail + 1))

stage "sanitizer build and test suite (make check-san)"
lines_before=$(wc -l < "$summary_file")
if ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   make -j"$JOBS" WERROR=1 check-san; then
  stages+=("suite (build-san): ok")
else
  stages+=("suite (build-san): FAILED")
fi
# A sanitizer build that did not compile never reached test.sh: count it as a failure.
[ "$(wc -l < "$summary_file")" -gt "$lines_before" ] || extra_fail=$((extra_fail + 1))

stage "multi-user soak on build-san (scripts/soak.sh)"
if LIVEVLM_BUILD=build-san bash scripts/soak.sh; then
  stages+=("soak: ok"); extra_pass=$((extra_pass + 1))
else
  stages+=("soak: FAILED"); extra_fail=$((extra_fail + 1))
fi

if [ -x scripts/fuzz.sh ] || [ -f scripts/fuzz.sh ]; then
  stage "fuzz (FUZZ_SECONDS=10)"
  if FUZZ_SECONDS=10 bash scripts/fuzz.sh; then
    stages+=("fuzz: ok"); extra_pass=$((extra_pass + 1))
  else
    stages+=("fuzz: FAILED"); extra_fail=$((extra_fail + 1))
  fi
fi

finish
