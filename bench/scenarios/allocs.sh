#!/usr/bin/env bash
# bench/scenarios/allocs.sh - heap calls per frame in the running server: livevlm under the
# malloccount shim (bench/malloccount.c, LD_PRELOAD), fakevlm behind it, loadgen's sessions at
# 1 frame/s in front; the shim's totals at the start and the end of the measured window (SIGUSR2)
# divided by livevlm_frames_total's growth. Optionally (ALLOC_PERF=1, root: perf probe on libc)
# where the loop thread's mallocs come from: perf samples every malloc/calloc/realloc with a DWARF
# call graph and the first caller outside libc and jansson is counted. Writes $BENCH_OUT/allocs.md.
#
#   bench/scenarios/allocs.sh                          # 200 sessions, TLS, 10 s
#   ALLOC_N=200 ALLOC_DUR=10 ALLOC_TLS=0 ALLOC_PERF=1 bench/scenarios/allocs.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
JPEG=tests/data/frame-640x480.jpg
N=${ALLOC_N:-200}
DUR=${ALLOC_DUR:-10}
WARM=${ALLOC_WARM:-3}
TLS=${ALLOC_TLS:-1}
PERF=${ALLOC_PERF:-0}
PERF_S=${ALLOC_PERF_S:-3}
SHIM=$BUILD/malloccount.so
[ -f "$SHIM" ] || make -s BUILD="$BUILD" "$SHIM"
SHIM=$(realpath "$SHIM")
W="$BENCH_TMP/allocs"
mkdir -p "$W"
md="$OUT/allocs.md"
counts="$W/counts"

tlsarg=()
[ "$TLS" = 1 ] || tlsarg=(--no-tls)
start_fakevlm fv --slots 1024 --ttft-ms 50 --token-ms 5 --tokens 20 --queue-max 100000
fvpid=$FV_PID
lvargs=(--session-idle 5)
lv_opt lvargs --backend-adaptive fake=off
MALLOCCOUNT_OUT=$counts LD_PRELOAD=$SHIM start_livevlm lv "${tlsarg[@]}" --auth token \
    --backend fake=http://127.0.0.1:$FV_PORT/v1 --backend-max fake=1024 "${lvargs[@]}"
ramp=$(( N / 200 < 2 ? 2 : N / 200 ))
"$BUILD/loadgen" --url "$LV_WS" --token-file "$LV_TOKEN_FILE" --sessions "$N" --ramp-s $ramp \
    --warmup-s "$WARM" --duration-s "$DUR" --jpeg $JPEG --src-base 127.9.0.2 --quiet --out "$W/lg.json" \
    >"$W/lg.txt" 2>&1 &
lgpid=$!
BENCH_PIDS+=("$lgpid")
sleep $((ramp + WARM)).4
snap "$W" a "$LV_PID"; kill -USR2 "$LV_PID"
if [ "$PERF" = 1 ]; then
    # the probes are left in place (perf probe -d removes them); adding one twice is harmless
    libc=$(ldd "$BUILD/livevlm" | awk '/libc\.so/ {print $3}')
    for f in malloc calloc realloc; do perf probe -q -x "$libc" -a "$f" 2>/dev/null || true; done
    perf record -q -o "$W/perf.data" -e probe_libc:malloc -e probe_libc:calloc -e probe_libc:realloc \
        --call-graph dwarf,8192 -t "$LV_PID" -- sleep "$PERF_S" >/dev/null 2>&1 || PERF=failed
    sleep $((DUR - 1 - PERF_S)).2
else
    sleep $((DUR - 1)).2
fi
snap "$W" b "$LV_PID"; kill -USR2 "$LV_PID"
wait $lgpid || true
sleep 0.2

frames=$(mdelta "$W/a.prom" "$W/b.prom" livevlm_frames_total)
answers=$(mdelta "$W/a.prom" "$W/b.prom" livevlm_answers_total)
cpu=$(snap_cpu_s "$W" a b "$LV_PID")
dt=$(snap_dt "$W" a b)
# the two signal lines: field k of line 2 minus line 1, per frame
per() { awk -v k="$1" -v f="$frames" '/^malloccount signal/ { n++; for (i = 3; i <= NF; i++) { split($i, kv, "="); v[n, kv[1]] = kv[2] } }
    END { if (n >= 2 && f > 0) printf "%.1f", (v[2, k] - v[1, k]) / f; else printf "-" }' "$counts"; }
row() { echo "| $1 | $(per "$2malloc") | $(per "$2calloc") | $(per "$2realloc") | $(per "$2free") | $(per "$2bytes") |"; }
{
    echo "## Heap calls per frame"
    echo
    echo "$N sessions at 1 frame/s ($([ "$TLS" = 1 ] && echo TLS || echo plain)), fakevlm 1024 slots, 50 ms + 20 tokens × 5 ms; ${dt} s window:"
    echo "${frames:-?} frames, ${answers:-?} answers; livevlm CPU $(calc %.0f "${cpu}*1e6/(${frames:-0}+1e-9)") µs/frame (under the shim). $(missing_note)"
    echo
    echo "| thread | malloc | calloc | realloc | free | bytes |"
    echo "|---|---|---|---|---|---|"
    row "all" ""
    row "loop (main)" "main_"
    echo
} >"$md"
if [ "$PERF" = 1 ] && [ -s "$W/perf.data" ]; then
    # per sample (innermost frame first; an inlined frame's dso is that of the frame it sits in):
    # the library function livevlm's innermost frame called ("-": the allocator itself), that
    # livevlm function, and the next livevlm function out
    perf script -i "$W/perf.data" -F ip,sym,dso 2>/dev/null | awk -v BIN="$(basename "$BUILD/livevlm")" '
        function flush(   i, j, k, lv, lib, up, d) {
            if (n == 0) return
            d = ""
            for (i = n; i >= 1; i--) { if (dso[i] != "(inlined)") d = dso[i]; else dso[i] = d }
            lv = 0
            for (i = 1; i <= n; i++) if (dso[i] ~ ("/" BIN "\\)$") && sym[i] !~ /^__GI_/) { lv = i; break }
            if (lv) {
                lib = "-"
                for (j = lv - 1; j >= 1; j--) if (dso[j] !~ /libc\.so|malloccount/ && sym[j] !~ /^__GI_/) { lib = sym[j]; break }
                up = ""
                for (k = lv + 1; k <= n; k++) if (dso[k] ~ ("/" BIN "\\)$") && sym[k] != sym[lv]) { up = sym[k]; break }
                key = lib " ← " sym[lv] " ← " up
            } else key = "(no livevlm frame) " sym[1] " " dso[1]
            c[key]++; tot++; n = 0
        }
        NF == 0 { flush(); next }
        { n++; sym[n] = $2; dso[n] = $NF }
        END { flush(); for (k in c) printf "%d %.1f %s\n", c[k], 100 * c[k] / tot, k }' | sort -rn | head -30 >"$W/callers"
    {
        echo "Top callers of malloc/calloc/realloc on livevlm's loop (main) thread (perf probe, -t PID, ${PERF_S} s, % of sampled calls):"
        echo
        echo "| calls | % | library call ← livevlm function ← its caller |"
        echo "|---|---|---|"
        awk '{ c = $1; p = $2; $1 = ""; $2 = ""; sub(/^  /, ""); printf "| %s | %s | %s |\n", c, p, $0 }' "$W/callers"
        echo
    } >>"$md"
elif [ "$PERF" != 0 ]; then
    echo "perf probe/record failed: no breakdown by caller." >>"$md"
fi
cat "$md"
