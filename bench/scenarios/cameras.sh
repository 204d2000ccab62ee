#!/usr/bin/env bash
# bench/scenarios/cameras.sh - what an RTSP camera costs livevlm, and what sharing it costs.
#   1. CPU and memory per camera sampled at 1 frame/s, H.264 at 640x480 and 1280x720 (30 fps,
#      a keyframe a second: the test camera tests/tools/rtspcam.c), one watcher each. Target:
#      <= 5 % of a core per 720p camera. And 720p at 2 frames/s, where every frame is decoded.
#   2. 1 vs 100 watchers of one 720p camera asking the same question: backend requests per sampled
#      frame (target: one inference per frame however many watch) and livevlm CPU per delivered
#      answer.
# Writes $BENCH_OUT/cameras.md and .summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
DUR=${CAM_DUR:-30}
WARM=${CAM_WARM:-8}
W="$BENCH_TMP/cam"
mkdir -p "$W"
[ -x "$BUILD/rtspcam" ] || { echo "cameras: $BUILD/rtspcam is missing (make)" >&2; exit 1; }

# start_rtspcam NAME SIZE: a test camera on a free loopback port; sets CAM_URL and CAM_PID
start_rtspcam() {
    "$BUILD/rtspcam" --port 0 --size "$2" --fps 30 --gop 30 >"$W/$1.out" 2>"$W/$1.log" &
    CAM_PID=$!
    BENCH_PIDS+=("$CAM_PID")
    local i
    for i in $(seq 1 100); do
        CAM_URL=$(sed -n 's/^rtspcam: ready //p' "$W/$1.out" 2>/dev/null | head -1)
        [ -n "$CAM_URL" ] && return 0
        kill -0 "$CAM_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "cameras: rtspcam did not start: $(tail -2 "$W/$1.log")" >&2
    return 1
}

# fv_requests PORT -> requests fakevlm has seen so far
fv_requests() { curl -s --max-time 3 "http://127.0.0.1:$1/stats" | jq -r '.requests // 0'; }

# One camera, N watchers for DUR s after WARM s. Sets RES (not in a subshell: the cleanup trap must
# see every process it starts): cpu_pct rss_kb answers fv_requests coalesced window_s cpu_s
run_case() { # TAG SIZE WATCHERS INTERVAL_MS [extra livevlm args...]
    local tag=$1 size=$2 n=$3 ival=$4; shift 4
    start_rtspcam "$tag.cam" "$size"
    local campid=$CAM_PID
    start_fakevlm "$tag.fv" --slots 64 --ttft-ms 60 --token-ms 5 --tokens 10
    local fvpid=$FV_PID fvport=$FV_PORT
    start_livevlm "$tag" --no-tls --session-idle 5 --backend fake=http://127.0.0.1:$fvport/v1 \
        --camera "c=$CAM_URL" "$@"
    local rss0
    rss0=$(rss_kb "$LV_PID")
    "$BUILD/loadgen" --url "$LV_WS" --token-file "$LV_TOKEN_FILE" --sessions "$n" --users 1 --per-ip 100 \
        --source camera:c --same-prompt --interval-ms "$ival" --ramp-s 1 --warmup-s "$WARM" --duration-s "$DUR" \
        --src-base 127.71.0.2 --quiet --out "$W/$tag.lg.json" >"$W/$tag.lg.txt" 2>&1 &
    local lgpid=$!
    BENCH_PIDS+=("$lgpid")
    sleep $((1 + WARM)).3
    local r0
    r0=$(fv_requests "$fvport")
    snap "$W" "$tag.a" "$LV_PID"
    sleep $((DUR - 1)).4
    snap "$W" "$tag.b" "$LV_PID"
    DECODE=$(curl -s --max-time 3 -H "Authorization: Bearer $(cat "$LV_TOKEN_FILE")" "$LV_URL/api/v1/cameras" |
        jq -r '.cameras[0].decode // "?"')
    local r1
    r1=$(fv_requests "$fvport")
    wait "$lgpid" || true
    local cpu dt rss coal
    cpu=$(snap_cpu_s "$W" "$tag.a" "$tag.b" "$LV_PID")
    dt=$(snap_dt "$W" "$tag.a" "$tag.b")
    rss=$(snap_rss_kb "$W" "$tag.b" "$LV_PID")
    coal=$(mdelta "$W/$tag.a.prom" "$W/$tag.b.prom" livevlm_answers_coalesced_total 2>/dev/null || echo 0)
    local ans
    ans=$(jqn "$W/$tag.lg.json" .answers)
    stop_pid "$LV_PID"
    stop_pid "$fvpid"
    stop_pid "$campid"
    # answers in the window: loadgen counts the measured window only
    RES="$(calc %.2f "100 * $cpu / $dt") $((rss - rss0)) ${ans:-0} $((r1 - r0)) ${coal:-0} $dt $cpu"
}

{
    echo "## 6. Cameras: what an RTSP camera costs, and what sharing it costs"
    echo
    echo "RTSP test camera (tests/tools/rtspcam.c: videotestsrc, x264 ultrafast, 30 fps, a keyframe a"
    echo "second) on loopback; fakevlm 64 slots, 60 ms + 10 x 5 ms; one watcher session per camera at"
    echo "interval 1000 ms unless said; ${DUR} s windows after ${WARM} s warm-up. CPU is livevlm's alone"
    echo "(user + system over the window); RSS is the growth from before the first watcher."
    echo
    echo "| case | decode (GET /api/v1/cameras) | livevlm CPU (% of a core) | RSS growth | answers | backend requests |"
    echo "|---|---|---:|---:|---:|---:|"
} >"$OUT/cameras.md"

summary=""
rps1=""
# At 1 frame/s the camera decodes keyframes only (one a second here); asking for 2 frames/s makes
# it decode every frame: the third row shows what keyframe-only decoding saves.
for c in "640x480 1000" "1280x720 1000" "1280x720 500"; do
    read -r size ival <<<"$c"
    run_case "s$size-$ival" "$size" 1 "$ival"
    read -r pct drss ans req coal dt cpu <<<"$RES"
    echo "| 1 camera $size, 1 watcher at $ival ms | $DECODE | $pct | $((drss / 1024)) MiB | $ans | $req |" >>"$OUT/cameras.md"
    echo "cameras: $size every $ival ms ($DECODE): ${pct} % of a core, RSS +$((drss / 1024)) MiB, $ans answers, $req backend requests" >&2
    if [ "$size" = 1280x720 ] && [ "$ival" = 1000 ]; then
        v=$(awk -v p="$pct" 'BEGIN { if (p <= 5) print "met"; else printf "missed by %.1f points\n", p - 5 }')
        summary="$summary| RTSP camera 720p at 1 frame/s ($DECODE decode) | ≤ 5 % of a core | $pct % | $v |"$'\n'
    fi
done

{
    echo
    echo "| watchers of one 720p camera (same prompt) | livevlm CPU (% of a core) | answers delivered | backend requests | coalesced | requests per sampled second | CPU per answer |"
    echo "|---:|---:|---:|---:|---:|---:|---:|"
} >>"$OUT/cameras.md"
for n in 1 100; do
    run_case "w$n" 1280x720 "$n" 1000
    read -r pct drss ans req coal dt cpu <<<"$RES"
    per_ans=$(calc %.0f "($ans > 0 ? 1e6 * $cpu / $ans : 0)")
    rps=$(calc %.2f "$req / $dt")
    echo "| $n | $pct | $ans | $req | $coal | $rps | $per_ans µs |" >>"$OUT/cameras.md"
    echo "cameras: $n watchers: ${pct} % of a core, $ans answers, $req backend requests ($rps/s), $coal coalesced, $per_ans us CPU per answer" >&2
    [ "$n" = 1 ] && rps1=$rps
    if [ "$n" = 100 ]; then
        # one inference per sampled frame: 100 watchers cause no more backend requests than one
        v=$(awk -v a="$rps" -v b="${rps1:-0}" 'BEGIN { if (b > 0 && a <= 1.1 * b) print "met"; else print "missed" }')
        summary="$summary| 100 watchers of one camera, same prompt | one inference per sampled frame | $rps requests/s (1 watcher: ${rps1:-?}/s), $ans answers | $v |"$'\n'
    fi
done
printf '%s' "$summary" | tee "$OUT/cameras.summary"
