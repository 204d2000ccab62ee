#!/usr/bin/env bash
# bench/scenarios/freshness.sh - how old frames are when they reach the backend under the same 5×
# overload as fairness.sh (bench/lib.sh), and how many were dropped as stale. Target: frame age at
# dispatch ≤ one interval. Writes $BENCH_OUT/freshness.md and .summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
DUR=${FRESH_DUR:-20}
WARM=${FRESH_WARM:-6}
W="$BENCH_TMP/fresh"
mkdir -p "$W"

lvargs=(--no-tls --session-idle 5)
lv_opt lvargs --backend-adaptive fake=on
start_fakevlm fv "${OVL_FV[@]}"
fvpid=$FV_PID
start_livevlm fresh --backend fake=http://127.0.0.1:$FV_PORT/v1 --backend-max fake=$OVL_SLOTS "${lvargs[@]}"
lg="$W/lg.json"
"$BUILD/loadgen" --url "$LV_WS" --token-file "$LV_TOKEN_FILE" "${OVL_LG[@]}" --ramp-s 1 --warmup-s $WARM \
    --duration-s $DUR --src-base 127.70.0.2 --quiet --out "$lg" >"$W/lg.txt" 2>&1 &
lgpid=$!
BENCH_PIDS+=("$lgpid")
sleep $((1 + WARM)).3
snap "$W" a $LV_PID $fvpid
sleep $((DUR - 1)).4
snap "$W" b $LV_PID $fvpid
wait $lgpid || true

fa50=$(jqn "$lg" .server_ms.frame_age.p50) fa99=$(jqn "$lg" .server_ms.frame_age.p99) famax=$(jqn "$lg" .server_ms.frame_age.max)
read -r h50 h99 hmean <<<"$(hist "$W/a.prom" "$W/b.prom" livevlm_frame_age_seconds b50 b99 mean)"
stale=$(mdelta "$W/a.prom" "$W/b.prom" livevlm_frames_dropped_total reason=stale)
frames=$(mdelta "$W/a.prom" "$W/b.prom" livevlm_frames_total)
drops=-
has_metrics "$W/b.prom" && drops=$(awk 'FNR == 1 { f++ } /^livevlm_frames_dropped_total\{/ { match($1, /reason="[^"]*"/); r = substr($1, RSTART + 8, RLENGTH - 9); v[r] += (f == 1 ? -1 : 1) * $NF }
             END { for (r in v) if (v[r]) s = s (s ? ", " : "") r " " v[r]; print s ? s : "none" }' "$W/a.prom" "$W/b.prom" 2>/dev/null || echo "-")
sent=$(jqn "$lg" .frames_sent) ans=$(jqn "$lg" .answers) una=$(jqn "$lg" .totals.frames_unanswered)
l50=$(jqn "$lg" .latency_ms.total.p50) l99=$(jqn "$lg" .latency_ms.total.p99)
verdict=$(awk -v a="${fa99:-1e9}" -v i=$OVL_INTERVAL 'BEGIN { if (a <= i) print "met"; else printf "missed by %.0f ms\n", a - i }')
{
    echo "## 3. Freshness: frame age at dispatch under the same 5× overload"
    echo
    echo "Same setup as fairness (fakevlm $OVL_SLOTS slots × $((OVL_TTFT + OVL_TOKENS * OVL_TOK)) ms, 60 sessions in 21 users asking every $OVL_INTERVAL ms),"
    echo "${WARM} s warm-up, ${DUR} s measured. Frame age = frame received → sent to the backend (loadgen's capture age is 0)."
    echo
    echo "| frame age p50 / p99 / max (server, answer_start) | livevlm_frame_age_seconds: p50 bucket, p99 bucket, mean | frames received (metrics) | dropped, by reason | frames sent / answered (loadgen) | client latency p50 / p99 |"
    echo "|---|---|---|---|---|---|"
    echo "| **$(calc %.0f "${fa50:-0}") / $(calc %.0f "${fa99:-0}")** / $(calc %.0f "${famax:-0}") ms | ${h50:--}, ${h99:--}, ${hmean:--} ms | ${frames:--} | ${drops:--} | $sent / $ans | $(calc %.0f "${l50:-0}") / $(calc %.0f "${l99:-0}") ms |"
    echo
    echo "Target: frame age at dispatch ≤ one interval ($OVL_INTERVAL ms): **$verdict**. Stale drops are frames that"
    echo "waited past --max-frame-age-ms (default max(2 intervals, 2 s)) and were never sent; credits being withheld"
    echo "while the backend is full is what keeps them few. For scale: 21 equal users sharing $OVL_CAP answers/s get a"
    if [ "$verdict" = met ]; then
        echo "turn every $(calc %.0f "21*1000/$OVL_CAP") ms, longer than the interval, so frames stay young only because credits are timed"
        echo "to each user's next turn rather than sent as soon as the user has nothing waiting."
    else
        echo "turn every $(calc %.0f "21*1000/$OVL_CAP") ms, and a frame asked for as soon as its user has nothing waiting waits for that"
        echo "user's next turn, so its age is bounded by about one round, not by the interval."
    fi
    missing_note
} >"$OUT/freshness.md"
echo "| freshness | frame age at dispatch ≤ 1 interval ($OVL_INTERVAL ms) under 5× overload | p50 $(calc %.0f "${fa50:-0}") / p99 $(calc %.0f "${fa99:-0}") ms; stale drops ${stale:-n/a} | $verdict$( [ "$verdict" = met ] || echo ": a frame waits about one fair-share round ($(calc %.0f "21*1000/$OVL_CAP") ms for 21 users at $OVL_CAP answers/s), which is longer than the interval") |" >"$OUT/freshness.summary"
cat "$OUT/freshness.md"
