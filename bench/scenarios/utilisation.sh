#!/usr/bin/env bash
# bench/scenarios/utilisation.sh - does the window find the backend's capacity, and keep it busy
# under overload without a queue inside it? fakevlm with 8, 64 and 256 slots (the real capacity,
# unknown to livevlm), livevlm allowed up to 1024 in flight (the window starts at 256), 2x
# overload; once with the adaptive window and once with it off (fixed at 1024). Busy fraction =
# fakevlm's busy slot-time / (slots × window); queue inside the backend from fakevlm's /stats.
# Writes $BENCH_OUT/utilisation.md and .summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
DUR=${UTIL_DUR:-12}
WARM=${UTIL_WARM:-8}
TTFT=200 TOK=20 TOKENS=40 MAXW=1024 OVER=2
S_MS=$((TTFT + TOKENS * TOK))
W="$BENCH_TMP/util"
mkdir -p "$W"
declare -A BUSY QWAIT QLEN IDLE WIN TRAJ WMEAN L99
src_i=80

{
    echo "## 4. Backend utilisation under overload: adaptive window vs fixed"
    echo
    echo "fakevlm: K slots × $S_MS ms (K answers/s), queue up to 4096. livevlm: --backend-max fake=$MAXW (adaptive window starts at $((MAXW / 4))), no TLS."
    echo "loadgen: ${OVER}×K sessions in 4 users at 1 frame/s (${OVER}× the backend), ${WARM} s warm-up, ${DUR} s measured; fakevlm /stats and"
    echo "/metrics sampled every 0.5 s for queue length and window."
    echo
    echo "| slots | window | busy fraction | answers/s | fakevlm queue: mean / max length, mean wait | livevlm window mean (min–max) | in flight mean | samples with a slot idle | server TTFT p50 / p99 | frame age p50 / p99 | client latency p50 / p99 |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
} >"$OUT/utilisation.md"

for SLOTS in ${UTIL_SLOTS:-8 64 256}; do
for mode in ${UTIL_MODES:-adaptive fixed}; do
    SESS=$((OVER * SLOTS))
    lvargs=(--no-tls --session-idle 5)
    if [ $mode = adaptive ]; then lv_opt lvargs --backend-adaptive fake=on; else lv_opt lvargs --backend-adaptive fake=off; fi
    start_fakevlm fv-$mode-$SLOTS --slots $SLOTS --ttft-ms $TTFT --token-ms $TOK --tokens $TOKENS --queue-max 4096
    fvpid=$FV_PID fvport=$FV_PORT
    start_livevlm util-$mode-$SLOTS --auth token --backend fake=http://127.0.0.1:$fvport/v1 --backend-max fake=$MAXW \
        --backend-min fake=1 "${lvargs[@]}"
    lg="$W/lg-$mode-$SLOTS.json"
    "$BUILD/loadgen" --url "$LV_WS" --token-file "$LV_TOKEN_FILE" --sessions $SESS --users 4 --per-ip 64 --ramp-s 1 \
        --warmup-s $WARM --duration-s $DUR --src-base 127.$src_i.0.2 --quiet --out "$lg" >"$W/lg-$mode-$SLOTS.txt" 2>&1 &
    lgpid=$!
    BENCH_PIDS+=("$lgpid")
    src_i=$((src_i + 1))
    FV_SNAP_PORTS=$fvport
    : >"$W/samples-$mode-$SLOTS"
    : >"$W/warm-$mode-$SLOTS"
    t0=$(date +%s.%N)
    # bounded: one sample per ~0.5 s from the start (the warm-up shows how the window converges);
    # snapshot a at the start of loadgen's window, b just before its end
    for ((i = 0; i < (1 + WARM + DUR) * 2; i++)); do
        el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
        if awk -v e="$el" -v w=$((1 + WARM)) -v d=$DUR 'BEGIN { exit !(e >= w + d - 0.6) }'; then break; fi
        phase=warm
        if awk -v e="$el" -v w=$((1 + WARM)) 'BEGIN { exit !(e >= w + 0.3) }'; then
            phase=measured
            [ -s "$W/a-$mode-$SLOTS.t" ] || snap "$W" a-$mode-$SLOTS $LV_PID $fvpid
        fi
        fv_stats $fvport "$W/s.json"; scrape "$W/s.prom"
        line="$(jqn "$W/s.json" .queued) $(jqn "$W/s.json" .active) $(msum "$W/s.prom" livevlm_backend_window) $(msum "$W/s.prom" livevlm_backend_inflight)"
        if [ $phase = measured ]; then echo "$line" >>"$W/samples-$mode-$SLOTS"; else echo "$line" >>"$W/warm-$mode-$SLOTS"; fi
        sleep 0.42
    done
    snap "$W" b-$mode-$SLOTS $LV_PID $fvpid
    FV_SNAP_PORTS=
    wait $lgpid || true
    stop_pid $LV_PID
    stop_pid $fvpid
    A="$W/a-$mode-$SLOTS.fv$fvport.json" B="$W/b-$mode-$SLOTS.fv$fvport.json"
    busy=$(jq -rn --slurpfile a "$A" --slurpfile b "$B" --argjson k $SLOTS \
        '($b[0].busy_slot_ms - $a[0].busy_slot_ms) / ($k * ($b[0].uptime_ms - $a[0].uptime_ms)) * 100 | . * 10 | round / 10' 2>/dev/null || echo "")
    qwait=$(jq -rn --slurpfile a "$A" --slurpfile b "$B" \
        '(($b[0].queue_wait_ms.total - $a[0].queue_wait_ms.total) / ([($b[0].started - $a[0].started), 1] | max)) | round' 2>/dev/null || echo "")
    read -r qmean qmax wmean wmin wmax imean idle_pct <<<"$(awk -v k=$SLOTS '{ n++; q += $1; if ($1 > qm) qm = $1; if ($2 < k) id++; if ($3 != "") { w += $3; nw++; if (wmin == "" || $3 < wmin) wmin = $3; if ($3 > wmax) wmax = $3; fl += $4 } }
        END { printf "%.1f %d %s %s %s %s %.0f\n", (n ? q / n : 0), qm, (nw ? sprintf("%.1f", w / nw) : "-"), (nw ? wmin : "-"), (nw ? wmax : "-"), (nw ? sprintf("%.1f", fl / nw) : "-"), (n ? 100 * id / n : 0) }' "$W/samples-$mode-$SLOTS")"
    key=$mode-$SLOTS
    TRAJ[$key]=$(cat "$W/warm-$mode-$SLOTS" "$W/samples-$mode-$SLOTS" | awk 'NR % 2 == 1 { printf "%s%s", (NR > 1 ? " " : ""), ($3 == "" ? "-" : $3) }')
    BUSY[$key]=${busy:--} QWAIT[$key]=${qwait:--} QLEN[$key]=$qmean IDLE[$key]=$idle_pct WIN[$key]="mean $wmean, range $wmin–$wmax"
    WMEAN[$key]=$wmean
    l50=$(jqn "$lg" .latency_ms.total.p50) l99=$(jqn "$lg" .latency_ms.total.p99)
    t50=$(jqn "$lg" .server_ms.ttft.p50) t99=$(jqn "$lg" .server_ms.ttft.p99)
    f50=$(jqn "$lg" .server_ms.frame_age.p50) f99=$(jqn "$lg" .server_ms.frame_age.p99)
    ans=$(jqn "$lg" .answers_per_s)
    L99[$key]=$(calc %.0f "${l99:-0}")
    echo "| $SLOTS | $mode | **${busy:--} %** | $(calc %.1f "${ans:-0}") | $qmean / $qmax, ${qwait:--} ms | $wmean ($wmin–$wmax) | $imean | $idle_pct % | $(calc %.0f "${t50:-0}") / $(calc %.0f "${t99:-0}") ms | $(calc %.0f "${f50:-0}") / $(calc %.0f "${f99:-0}") ms | $(calc %.0f "${l50:-0}") / $(calc %.0f "${l99:-0}") ms |" >>"$OUT/utilisation.md"
    echo "utilisation slots=$SLOTS $mode busy=$busy% qwait=${qwait}ms qlen=$qmean window=$wmean p99=${l99}ms" >&2
done
done

# verdict per slot count: window within 10 % of K (within one request below K = 10), busy >= 95 %,
# mean fakevlm queue within the same tolerance
verdict=met rows=
for SLOTS in ${UTIL_SLOTS:-8 64 256}; do
    k=adaptive-$SLOTS
    v=$(awk -v k=$SLOTS -v w="${WMEAN[$k]:--}" -v b="${BUSY[$k]:--}" -v q="${QLEN[$k]:--}" 'BEGIN {
        if (w == "-" || b == "-") { print "not measured"; exit }
        tol = k * 0.1; if (tol < 1) tol = 1; d = w - k; if (d < 0) d = -d
        if (d <= tol && b >= 95 && q <= tol) print "met"
        else printf "missed (window %.1f, busy %.1f %%, queue %.1f)\n", w, b, q }')
    [ "$v" = met ] || verdict=missed
    rows="$rows${rows:+; }K=$SLOTS: window ${WMEAN[$k]:--}, ${BUSY[$k]:--} % busy, queue ${QLEN[$k]:--}, p99 ${L99[$k]:--} ms (off: ${L99[fixed-$SLOTS]:--} ms, queue ${QLEN[fixed-$SLOTS]:--}) $v"
done
{
    echo
    echo "Busy fraction: slot-milliseconds fakevlm spent serving requests in the window / (slots × window). Target with the"
    echo "adaptive window: within 10 % of the slots (one request for 8), ≥ 95 % busy and no queue building inside the backend"
    echo "(mean fakevlm queue within the same tolerance): **$verdict**. $rows."
    for SLOTS in ${UTIL_SLOTS:-8 64 256}; do
        echo "The adaptive window against $SLOTS slots, one sample a second from the first connection (warm-up ${WARM} s included): ${TRAJ[adaptive-$SLOTS]:-}."
    done
    echo "With the window off (fixed at $MAXW) the backend is just as busy, but the excess waits inside it (the mean wait above),"
    echo "where livevlm can neither reorder it fairly nor drop stale frames — that queue shows up as TTFT, frame age and client p99."
    missing_note
} >>"$OUT/utilisation.md"
echo "| utilisation | window within 10 % of 8/64/256 slots, ≥ 95 % busy, no queue inside the backend (adaptive) | $rows | $verdict |" >"$OUT/utilisation.summary"
cat "$OUT/utilisation.md"
