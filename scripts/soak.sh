#!/usr/bin/env bash
# soak.sh - a multi-user soak of the sanitizer build: fakevlm and livevlm (--no-tls, token auth)
# on free loopback ports in a temp dir, tools/loadgen with SOAK_SESSIONS (300) camera pages from
# SOAK_USERS (10) users, each user on its own 127.0.0.x source addresses, for SOAK_DURATION_S
# (60) seconds at one frame a second, while livevlm's RSS is sampled from /proc every 2 s. Then
# SIGTERM to both servers. Asserts, one line each:
#   - every session connected and none was lost; loadgen reports zero errors (error messages,
#     failed answers, abnormal close codes, answers about another session's prompt)
#   - answers >= SOAK_MIN_ANSWER_PCT (98) % of the frames the server asked for in the window
#   - frames asked for >= SOAK_MIN_PACE_PCT (75) % of sessions x window / interval: loadgen's
#     "expected" figure. The server's credit period is interval_ms plus the wait for its next 20 ms
#     tick plus its loop's lag (lv_engine.c: next credit = grant time + interval), and it holds
#     credits back while a round of backend capacity is already waiting, so with ASan on 2 cores
#     it asks for 96-98 % of that figure on a quiet machine and 85 % on one shared with a fuzzer
#     and a browser (measured). Answers are therefore judged against what was asked for, and the
#     pace gets its own floor: loose enough for a busy CI machine, still well above the 50 % of a
#     credit loop that skips every other interval
#   - Jain's fairness index over the users' answer counts >= SOAK_MIN_JAIN (0.98)
#   - RSS flat after warm-up: after SOAK_RSS_SKIP_S (20) s, the last third's mean exceeds the
#     first third's by less than SOAK_RSS_MAX_GROWTH_MB (16) MiB (see "RSS bound" below)
#   - livevlm and fakevlm exit 0 on SIGTERM within 20 s
#   - no AddressSanitizer, LeakSanitizer or UBSan report in any process's log, and no error line in
#     livevlm's log
# Ends with "soak: N passed, N failed" and exits non-zero when anything failed. The temp dir (logs,
# loadgen.json, rss.txt) is kept on failure (or with SOAK_KEEP=1) and removed otherwise.
#   LIVEVLM_BUILD=build-san bash scripts/soak.sh
#
# RSS bound. ASan keeps freed memory in a quarantine (256 MiB by default) before reusing it, so RSS
# climbs for as long as the quarantine fills, and the allocator's size classes make it step rather
# than grow smoothly. The soak therefore runs livevlm with quarantine_size_mb=32 (still catching a
# use after free of anything freed in the last ~100 frames: 32 MiB of decode buffers) so that the quarantine is full
# within the warm-up (RSS climbs from ~20 to ~100 MiB in the first 20 s, then holds), then compares
# the mean of the last third of the samples after warm-up with the mean of the first third (about
# 33 s apart). 16 MiB over 33 s is ~0.5 MiB/s: a leak of ~1.7 KiB per frame at 300 frames/s, or
# of one 10 KiB frame in six, exceeds it, while the allocator's steps and the quarantine's churn
# (samples move by up to 8 MiB; 2.8, 3.1 and 3.6 MiB between thirds measured on the 2-core
# development VM) stay below it. Leaks of unreachable memory are LeakSanitizer's job at exit; this
# catches memory still referenced but growing without bound (lists, tables, histories).
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${LIVEVLM_BUILD:-build-san}
SESSIONS=${SOAK_SESSIONS:-300}
USERS=${SOAK_USERS:-10}
DURATION_S=${SOAK_DURATION_S:-60}
RAMP_S=${SOAK_RAMP_S:-5}
WARMUP_S=${SOAK_WARMUP_S:-5}
INTERVAL_MS=${SOAK_INTERVAL_MS:-1000}
RSS_SKIP_S=${SOAK_RSS_SKIP_S:-20}
RSS_MAX_GROWTH_MB=${SOAK_RSS_MAX_GROWTH_MB:-16}
MIN_ANSWER_PCT=${SOAK_MIN_ANSWER_PCT:-98}
MIN_PACE_PCT=${SOAK_MIN_PACE_PCT:-75}
MIN_JAIN=${SOAK_MIN_JAIN:-0.98}
JPEG=${SOAK_JPEG:-tests/data/frame-320x240.jpg}

passed=0
failed=0
check() { # check NAME OK(0|1) DETAIL
  if [ "$2" = 1 ]; then
    passed=$((passed + 1)); echo "soak: ok     $1: $3"
  else
    failed=$((failed + 1)); echo "soak: FAILED $1: $3"
  fi
}

for b in livevlm fakevlm loadgen; do
  if [ ! -x "$BUILD/$b" ]; then
    echo "soak: $BUILD/$b does not exist (build it: make SAN=1 BUILD=$BUILD)" >&2
    echo "soak: 0 passed, 1 failed"
    exit 1
  fi
done

base=${LIVEVLM_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$base"
dir=$(mktemp -d "$base/soak-XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
}
trap cleanup EXIT

# Leaks are reported at exit; a UB report stops the process so it cannot be missed.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:quarantine_size_mb=32"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"
export XDG_CONFIG_HOME="$dir/xdg"

wait_port() { # wait_port FILE PID NAME -> prints the port
  local i
  for i in $(seq 1 300); do
    if ! kill -0 "$2" 2>/dev/null; then echo "soak: $3 exited before it was ready" >&2; return 1; fi
    if [ -s "$1" ] && grep -qE '^[0-9]+$' "$1" && [ "$(cat "$1")" -gt 0 ]; then cat "$1"; return 0; fi
    sleep 0.1
  done
  echo "soak: $3 not ready after 30 s" >&2
  return 1
}

# stop_proc PID VAR: SIGTERM, wait up to 20 s, set VAR to the exit status ("timeout" when it had
# to be SIGKILLed). Not in a $(...) subshell: only this shell can wait for its children.
stop_proc() {
  local i
  kill -TERM "$1" 2>/dev/null
  for i in $(seq 1 200); do
    if ! kill -0 "$1" 2>/dev/null; then wait "$1"; printf -v "$2" '%s' "$?"; return; fi
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  printf -v "$2" '%s' timeout
}

t0=$(date +%s)
"$BUILD/fakevlm" --port 0 --port-file "$dir/fakevlm.port" --slots 128 --ttft-ms 20 --token-ms 5 \
  --tokens 8 --quiet >"$dir/fakevlm.log" 2>&1 &
fake_pid=$!
pids+=("$fake_pid")
fake_port=$(wait_port "$dir/fakevlm.port" "$fake_pid" fakevlm) || { cat "$dir/fakevlm.log"; exit 1; }

"$BUILD/livevlm" serve --host 127.0.0.1 --port 0 --port-file "$dir/livevlm.port" --no-tls --no-detect \
  --auth token --config-dir "$dir/config" --log-level info \
  --backend "fake=http://127.0.0.1:$fake_port/v1" --backend-max fake=128 >"$dir/livevlm.log" 2>&1 &
lv_pid=$!
pids+=("$lv_pid")
lv_port=$(wait_port "$dir/livevlm.port" "$lv_pid" livevlm) || { cat "$dir/livevlm.log"; exit 1; }
for i in $(seq 1 50); do [ -s "$dir/config/token" ] && break; sleep 0.1; done

echo "soak: $BUILD, $SESSIONS sessions, $USERS users, ${DURATION_S}s window at ${INTERVAL_MS} ms" \
  "(ramp ${RAMP_S}s, warm-up ${WARMUP_S}s), livevlm :$lv_port, fakevlm :$fake_port, dir $dir"

# RSS of livevlm every 2 s: "ms-since-loadgen-start kB".
lg_start=$(( $(date +%s%N) / 1000000 ))
(
  while [ -r "/proc/$lv_pid/status" ]; do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$lv_pid/status" 2>/dev/null)
    [ -n "$kb" ] && echo "$(( $(date +%s%N) / 1000000 - lg_start )) $kb"
    sleep 2
  done
) >"$dir/rss.txt" 2>/dev/null &
sampler_pid=$!
pids+=("$sampler_pid")

"$BUILD/loadgen" --url "ws://127.0.0.1:$lv_port/ws" --token-file "$dir/config/token" \
  --sessions "$SESSIONS" --users "$USERS" --interval-ms "$INTERVAL_MS" --jpeg "$JPEG" \
  --ramp-s "$RAMP_S" --warmup-s "$WARMUP_S" --duration-s "$DURATION_S" \
  --out "$dir/loadgen.json" --quiet >"$dir/loadgen.txt" 2>"$dir/loadgen.log"
lg_rc=$?
window_end=$((RAMP_S + WARMUP_S + DURATION_S))

stop_proc "$lv_pid" lv_rc
stop_proc "$fake_pid" fake_rc
kill "$sampler_pid" 2>/dev/null
wait "$sampler_pid" 2>/dev/null
pids=()

# The numbers, from loadgen's JSON and the RSS samples (node: the test suite needs it anyway).
eval "$(node - "$dir/loadgen.json" "$dir/rss.txt" "$RSS_SKIP_S" "$window_end" <<'EOF'
const fs = require('fs');
const [json, rssFile, skip, end] = process.argv.slice(2);
const out = (k, v) => console.log(`${k}=${JSON.stringify(String(v))}`);
let r = null;
try { r = JSON.parse(fs.readFileSync(json, 'utf8')); } catch (e) { out('lg_json_error', e.message); }
if (r) {
  const s = r.sessions || {};
  out('connected', s.connected ?? 0);
  out('conn_failed', s.failed ?? 0);
  out('lost', s.lost_after_connect ?? 0);
  out('conn_reasons', JSON.stringify({ ...(s.failed_by_reason || {}), ...(s.lost_by_reason || {}) }));
  const errs = Object.values(r.errors || {}).reduce((a, b) => a + b, 0);
  out('errors', errs);
  out('error_codes', JSON.stringify(r.errors || {}));
  out('answer_errors', r.totals?.answer_errors ?? 0);
  const badClose = Object.entries(r.close_codes || {}).filter(([c]) => c !== '1000');
  out('bad_closes', JSON.stringify(Object.fromEntries(badClose)));
  out('mismatched', r.answer_check?.mismatched ?? 0);
  out('checked', r.answer_check?.checked ?? 0);
  out('answers', r.answers ?? 0);
  out('frames', r.frames_sent ?? 0);
  out('answer_pct', r.frames_sent ? (100 * r.answers / r.frames_sent).toFixed(2) : 0);
  out('expected', Math.round(r.answers_expected ?? 0));
  out('pace_pct', r.answers_expected ? (100 * r.frames_sent / r.answers_expected).toFixed(2) : 0);
  out('jain', r.users?.jain ?? 0);
  out('jain_sessions', r.users?.jain_sessions ?? 0);
  const l = r.latency_ms?.total || {};
  out('lat', `p50 ${l.p50} ms, p99 ${l.p99} ms, max ${l.max} ms`);
}
const samples = fs.existsSync(rssFile) ? fs.readFileSync(rssFile, 'utf8').trim().split('\n')
  .map((l) => l.trim().split(/\s+/).map(Number)).filter((a) => a.length === 2 && a.every(Number.isFinite))
  .map(([ms, kb]) => [ms / 1000, kb]) : [];
const win = samples.filter(([t]) => t >= Number(skip) && t <= Number(end));
const mean = (a) => a.reduce((x, [, kb]) => x + kb, 0) / a.length / 1024;
out('rss_n', win.length);
out('rss_all', samples.map(([t, kb]) => `${Math.round(t)}s:${Math.round(kb / 1024)}`).join(' '));
if (win.length >= 6) {
  const third = Math.floor(win.length / 3);
  const first = mean(win.slice(0, third));
  const last = mean(win.slice(-third));
  out('rss_first', first.toFixed(1));
  out('rss_last', last.toFixed(1));
  out('rss_growth', (last - first).toFixed(1));
  out('rss_peak', (Math.max(...samples.map(([, kb]) => kb)) / 1024).toFixed(1));
}
EOF
)"

echo "soak: loadgen exit $lg_rc"
grep -E '^(sessions|frames|answers|errors|closes|users): ' "$dir/loadgen.txt" | sed 's/^/soak:   /'
echo "soak: latency client frame -> answer: ${lat:-?}; answers checked ${checked:-0}"
echo "soak: livevlm RSS MiB by time since loadgen start: ${rss_all:-none}"

if [ -n "${lg_json_error:-}" ]; then
  check "loadgen ran" 0 "exit $lg_rc, no JSON: $lg_json_error; stderr: $(tail -3 "$dir/loadgen.log")"
else
  check "sessions" "$([ "$lg_rc" = 0 ] && [ "$connected" = "$SESSIONS" ] && [ "$conn_failed" = 0 ] && [ "$lost" = 0 ] && echo 1 || echo 0)" \
    "$connected of $SESSIONS connected, $conn_failed failed, $lost lost after connecting $conn_reasons (loadgen exit $lg_rc)"
  check "no errors" "$([ "$errors" = 0 ] && [ "$answer_errors" = 0 ] && [ "$mismatched" = 0 ] && [ "$bad_closes" = '{}' ] && echo 1 || echo 0)" \
    "errors $errors $error_codes, failed answers $answer_errors, answers naming another session's prompt $mismatched, close codes other than 1000 $bad_closes"
  check "answers" "$(node -p "$answer_pct >= $MIN_ANSWER_PCT ? 1 : 0")" \
    "$answers answers to $frames frames asked for and sent in the window ($answer_pct %, bound >= $MIN_ANSWER_PCT %)"
  check "pace" "$(node -p "$pace_pct >= $MIN_PACE_PCT ? 1 : 0")" \
    "$frames frames of $expected = sessions x window / interval ($pace_pct %, bound >= $MIN_PACE_PCT %)"
  check "fairness" "$(node -p "$jain >= $MIN_JAIN ? 1 : 0")" \
    "Jain over $USERS users $jain (bound >= $MIN_JAIN; over sessions $jain_sessions)"
fi
if [ -n "${rss_growth:-}" ]; then
  check "RSS flat" "$(node -p "$rss_growth < $RSS_MAX_GROWTH_MB ? 1 : 0")" \
    "after ${RSS_SKIP_S}s: first third ${rss_first} MiB, last third ${rss_last} MiB, growth ${rss_growth} MiB (bound < $RSS_MAX_GROWTH_MB MiB; peak ${rss_peak} MiB, $rss_n samples)"
else
  check "RSS flat" 0 "too few RSS samples after ${RSS_SKIP_S}s ($rss_n)"
fi
check "livevlm SIGTERM" "$([ "$lv_rc" = 0 ] && echo 1 || echo 0)" "exit status $lv_rc (expected 0)"
check "fakevlm SIGTERM" "$([ "$fake_rc" = 0 ] && echo 1 || echo 0)" "exit status $fake_rc (expected 0)"
san=$(grep -lE 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: .*Sanitizer' \
  "$dir/livevlm.log" "$dir/fakevlm.log" "$dir/loadgen.log" 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ')
check "sanitizers" "$([ -z "$san" ] && echo 1 || echo 0)" "${san:+reports in $san}${san:-no report in livevlm, fakevlm or loadgen logs}"
err_re='^[0-9T:.-]+Z ERROR ' # lv_log's error level
errlines=$(grep -cE "$err_re" "$dir/livevlm.log")
check "livevlm log" "$([ "$errlines" = 0 ] && echo 1 || echo 0)" \
  "$errlines error lines$( [ "$errlines" = 0 ] || echo ": $(grep -m3 -E "$err_re" "$dir/livevlm.log" | tr '\n' ' ')")"

echo "soak: done in $(( $(date +%s) - t0 ))s"
if [ "$failed" -gt 0 ] || [ "${SOAK_KEEP:-0}" = 1 ]; then
  echo "soak: logs kept in $dir"
else
  rm -rf "$dir"
fi
echo "soak: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
