#!/usr/bin/env bash
# fuzz.sh - build each libFuzzer driver tests/fuzz/fuzz_<name>.c into build-fuzz/ and run it for
# FUZZ_SECONDS (default 20) seconds, starting from the seeds in tests/fuzz/corpus/<name>/.
#   scripts/fuzz.sh                 every driver
#   scripts/fuzz.sh wsmsg jpeg      just these
# A driver links src/common/*.c and src/proto/*.c unless its top comment names its own sources:
#    * fuzz-sources: src/proto/lv_x.c src/proto/lv_y.c
# (so one half-written module does not stop the others from being fuzzed; several such lines add
# up), and pkg-config packages it needs beyond PKGS:
#    * fuzz-pkgs: libuv
# New inputs found go to build-fuzz/corpus/<name>/ (kept between runs; the seeds in the repo are
# never written); crashes go to build-fuzz/artifacts/<name>/, logs to build-fuzz/fuzz_<name>.log.
# Exits non-zero when any driver fails to build or finds a crash, leak, timeout or UB.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
CC=${FUZZ_CC:-clang}
OUT=build-fuzz
PKGS="jansson libturbojpeg openssl"

if ! command -v "$CC" >/dev/null; then
  echo "fuzz: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi

# UB must stop the run, or libFuzzer would only print it and carry on.
CFLAGS=(-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -Isrc/common -Isrc/proto $(pkg-config --cflags $PKGS))
LIBS=($(pkg-config --libs $PKGS) -lm -lpthread)

if [ $# -gt 0 ]; then
  names=("$@")
else
  names=()
  for f in tests/fuzz/fuzz_*.c; do
    [ -e "$f" ] || continue
    n=${f#tests/fuzz/fuzz_}
    names+=("${n%.c}")
  done
fi
if [ ${#names[@]} -eq 0 ]; then
  echo "fuzz: no drivers in tests/fuzz/" >&2
  exit 2
fi

mkdir -p "$OUT"
failed=()
summary=()
for name in "${names[@]}"; do
  drv=tests/fuzz/fuzz_$name.c
  bin=$OUT/fuzz_$name
  log=$OUT/fuzz_$name.log
  if [ ! -f "$drv" ]; then
    echo "fuzz: $drv not found" >&2
    failed+=("$name"); summary+=("fuzz_$name: missing"); continue
  fi
  srcs=$(sed -n '/fuzz-sources:/{s/.*fuzz-sources:[[:space:]]*//; s/[[:space:]]*\*\/.*//; p}' "$drv" | tr '\n' ' ')
  if [ -z "${srcs// /}" ]; then
    srcs=$(ls src/common/*.c src/proto/*.c)
  fi
  pkgs=$(sed -n '/fuzz-pkgs:/{s/.*fuzz-pkgs:[[:space:]]*//; s/[[:space:]]*\*\/.*//; p}' "$drv" | tr '\n' ' ')
  extra=()
  if [ -n "${pkgs// /}" ]; then
    # shellcheck disable=SC2086 # pkgs is a list of package names
    if ! extra=($(pkg-config --cflags --libs $pkgs)); then
      failed+=("$name"); summary+=("fuzz_$name: BUILD FAILED (pkg-config $pkgs)"); continue
    fi
  fi
  echo "### fuzz_$name: build"
  # shellcheck disable=SC2086 # srcs is a list of paths without spaces
  if ! "$CC" "${CFLAGS[@]}" "$drv" $srcs -o "$bin" "${extra[@]}" "${LIBS[@]}"; then
    failed+=("$name"); summary+=("fuzz_$name: BUILD FAILED"); continue
  fi

  mkdir -p "$OUT/corpus/$name" "$OUT/artifacts/$name"
  seeds=()
  [ -d "tests/fuzz/corpus/$name" ] && seeds=("tests/fuzz/corpus/$name")
  echo "### fuzz_$name: run ${FUZZ_SECONDS}s"
  "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$OUT/artifacts/$name/" "$OUT/corpus/$name" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -1)
  corpus=$(ls "$OUT/corpus/$name" | wc -l)
  if [ $rc -ne 0 ]; then
    failed+=("$name")
    summary+=("fuzz_$name: FAILED (exit $rc) after ${execs:-?} execs; see $log and $OUT/artifacts/$name/")
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -5
  else
    summary+=("fuzz_$name: ok, ${execs:-?} execs, $corpus corpus files")
  fi
done

echo "### fuzz summary (${FUZZ_SECONDS}s each)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} driver(s) failed: ${failed[*]}"
  exit 1
fi
exit 0
