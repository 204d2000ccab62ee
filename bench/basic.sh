#!/usr/bin/env bash
# bench/basic.sh - the single-node baseline: idle RSS, RSS with 100 sessions, and livevlm's CPU
# per frame at 50 sessions x 1 frame/s with fakevlm, with and without TLS. Prints a table and
# appends it to bench/out/basic.md. Not a test: numbers, no pass/fail.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
mkdir -p bench/out
JPEG=tests/data/frame-640x480.jpg
DUR=${DUR:-30}

start_fakevlm fv --slots 128 --ttft-ms 50 --token-ms 5 --tokens 20
row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$@"; }
out="bench/out/basic.md"
{
echo "## basic ($(date -u +%FT%TZ))"
echo "Machine: $(machine_line)"
echo "fakevlm: 128 slots, 50 ms to first token, 5 ms per token, 20 tokens; frames: $JPEG ($(stat -c %s $JPEG) bytes)"
echo
echo "| mode | idle RSS | RSS, 100 sessions at 1 frame/s | frames in ${DUR} s (50 sessions) | livevlm CPU per frame | loadgen CPU per frame |"
echo "|---|---|---|---|---|---|"
} | tee -a "$out"
for mode in tls plain; do
    if [ $mode = tls ]; then extra=(); scheme=wss; else extra=(--no-tls); scheme=ws; fi
    start_livevlm lv-$mode --backend fake=http://127.0.0.1:$FV_PORT/v1 --backend-max fake=128 "${extra[@]}"
    sleep 2
    idle=$(rss_kb $LV_PID)
    url="$scheme://127.0.0.1:$LV_PORT/ws"
    "$BUILD/loadgen" --url "$url" --token-file "$LV_TOKEN_FILE" --sessions 100 --ramp-s 1 --warmup-s 1 \
        --duration-s 5 --jpeg $JPEG --src-base 127.2.0.2 --quiet --out "$BENCH_TMP/l100.json" >/dev/null
    rss100=$(hwm_kb $LV_PID)
    c0=$(cpu_ticks $LV_PID)
    "$BUILD/loadgen" --url "$url" --token-file "$LV_TOKEN_FILE" --sessions 50 --ramp-s 1 --warmup-s 0 \
        --duration-s "$DUR" --jpeg $JPEG --src-base 127.3.0.2 --quiet --out "$BENCH_TMP/l50.json" >/dev/null
    c1=$(cpu_ticks $LV_PID)
    frames=$(json_get "$BENCH_TMP/l50.json" frames_sent)
    lgcpu=$(json_get "$BENCH_TMP/l50.json" loadgen.us_per_frame)
    per=$(echo "$c0 $c1 $CLK_TCK $frames" | awk '{printf "%.0f", ($2-$1)/$3*1e6/$4}')
    row "$mode" "$((idle / 1024)) MiB" "$((rss100 / 1024)) MiB" "$frames" "$per µs" "${lgcpu%.*} µs" | tee -a "$out"
    kill -TERM $LV_PID; wait $LV_PID 2>/dev/null || true
done
echo | tee -a "$out"
echo "(livevlm CPU per frame = its user+system CPU time over the 50-session run / frames sent; it includes the whole"
echo " run: credits, WebSocket receive, JPEG header check, request build with base64, SSE parse, deltas out.)"
