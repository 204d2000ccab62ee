#!/usr/bin/env bash
# bench/scenarios/utilisation.sh - is the backend kept busy under overload, and without a queue
# inside it? fakevlm with 8 slots (the real capacity), livevlm allowed up to 64 in flight, 5×
# overload; once with the adaptive window and once with the window fixed at 64. Busy fraction =
# fakevlm's busy slot-time / (slots × window); queue inside the backend from fakevlm's /stats.
# Writes $BENCH_OUT/utilisation.md and .summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
DUR=${UTIL_DUR:-20}
WARM=${UTIL_WARM:-6}
SLOTS=8 TTFT=100 TOK=20 TOKENS=20 MAXW=64
S_MS=$((TTFT + TOKENS * TOK))
W="$BENCH_TMP/util"
mkdir -p "$W"
declare -A BUSY QWAIT QLEN IDLE WIN TRAJ
src_i=80

{
    echo "## 4. Backend utilisation under overload: adaptive window vs fixed"
    echo
    echo "fakevlm: $SLOTS slots × $S_MS ms ($(calc %.0f "$SLOTS*1000/$S_MS") answers/s), queue up to 256. livevlm: --backend-max fake=$MAXW, no TLS."
    echo "loadgen: 80 sessions in 4 users at 1 frame/s (5× the backend), ${WARM} s warm-up, ${DUR} s measured; fakevlm /stats and"
    echo "/metrics sampled every 0.5 s for queue length and window."
    echo
    echo "| window | busy fraction | answers/s | fakevlm queue: mean / max length, mean wait | livevlm window mean (min–max) | in flight mean | samples with a slot idle | server TTFT p50 / p99 | frame age p50 / p99 | client latency p50 / p99 |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
} >"$OUT/utilisation.md"

for mode in ${UTIL_MODES:-adaptive fixed}; do
    lvargs=(--no-tls --session-idle 5)
    if [ $mode = adaptive ]; then lv_opt lvargs --backend-adaptive fake=on; else lv_opt lvargs --backend-adaptive fake=off; fi
    start_fakevlm fv-$mode --slots $SLOTS --ttft-ms $TTFT --token-ms $TOK --tokens $TOKENS
    fvpid=$FV_PID fvport=$FV_PORT
    start_livevlm util-$mode --backend fake=http://127.0.0.1:$fvport/v1 --backend-max fake=$MAXW "${lvargs[@]}"
    lg="$W/lg-$mode.json"
    "$BUILD/loadgen" --url "$LV_WS" --token-file "$LV_TOKEN_FILE" --sessions 80 --users 4 --per-ip 20 --ramp-s 1 \
        --warmup-s $WARM --duration-s $DUR --src-base 127.$src_i.0.2 --quiet --out "$lg" >"$W/lg-$mode.txt" 2>&1 &
    lgpid=$!
    BENCH_PIDS+=("$lgpid")
    src_i=$((src_i + 1))
    FV_SNAP_PORTS=$fvport
    : >"$W/samples-$mode"
    : >"$W/warm-$mode"
    t0=$(date +%s.%N)
    # bounded: one sample per ~0.5 s from the start (the warm-up shows how the window converges);
    # snapshot a at the start of loadgen's window, b just before its end
    for ((i = 0; i < (1 + WARM + DUR) * 2; i++)); do
        el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
        if awk -v e="$el" -v w=$((1 + WARM)) -v d=$DUR 'BEGIN { exit !(e >= w + d - 0.6) }'; then break; fi
        phase=warm
        if awk -v e="$el" -v w=$((1 + WARM)) 'BEGIN { exit !(e >= w + 0.3) }'; then
            phase=measured
            [ -s "$W/a-$mode.t" ] || snap "$W" a-$mode $LV_PID $fvpid
        fi
        fv_stats $fvport "$W/s.json"; scrape "$W/s.prom"
        line="$(jqn "$W/s.json" .queued) $(jqn "$W/s.json" .active) $(msum "$W/s.prom" livevlm_backend_window) $(msum "$W/s.prom" livevlm_backend_inflight)"
        if [ $phase = measured ]; then echo "$line" >>"$W/samples-$mode"; else echo "$line" >>"$W/warm-$mode"; fi
        sleep 0.42
    done
    snap "$W" b-$mode $LV_PID $fvpid
    FV_SNAP_PORTS=
    wait $lgpid || true
    stop_pid $LV_PID
    stop_pid $fvpid
    A="$W/a-$mode.fv$fvport.json" B="$W/b-$mode.fv$fvport.json"
    busy=$(jq -rn --slurpfile a "$A" --slurpfile b "$B" --argjson k $SLOTS \
        '($b[0].busy_slot_ms - $a[0].busy_slot_ms) / ($k * ($b[0].uptime_ms - $a[0].uptime_ms)) * 100 | . * 10 | round / 10' 2>/dev/null || echo "")
    qwait=$(jq -rn --slurpfile a "$A" --slurpfile b "$B" \
        '(($b[0].queue_wait_ms.total - $a[0].queue_wait_ms.total) / ([($b[0].started - $a[0].started), 1] | max)) | round' 2>/dev/null || echo "")
    read -r qmean qmax wmean wmin wmax imean idle_pct <<<"$(awk -v k=$SLOTS '{ n++; q += $1; if ($1 > qm) qm = $1; if ($2 < k) id++; if ($3 != "") { w += $3; nw++; if (wmin == "" || $3 < wmin) wmin = $3; if ($3 > wmax) wmax = $3; fl += $4 } }
        END { printf "%.1f %d %s %s %s %s %.0f\n", (n ? q / n : 0), qm, (nw ? sprintf("%.1f", w / nw) : "-"), (nw ? wmin : "-"), (nw ? wmax : "-"), (nw ? sprintf("%.1f", fl / nw) : "-"), (n ? 100 * id / n : 0) }' "$W/samples-$mode")"
    TRAJ[$mode]=$(cat "$W/warm-$mode" "$W/samples-$mode" | awk 'NR % 2 == 1 { printf "%s%s", (NR > 1 ? " " : ""), ($3 == "" ? "-" : $3) }')
    BUSY[$mode]=${busy:--} QWAIT[$mode]=${qwait:--} QLEN[$mode]=$qmean IDLE[$mode]=$idle_pct WIN[$mode]="mean $wmean, range $wmin–$wmax"
    t50=$(jqn "$lg" .server_ms.ttft.p50) t99=$(jqn "$lg" .server_ms.ttft.p99)
    f50=$(jqn "$lg" .server_ms.frame_age.p50) f99=$(jqn "$lg" .server_ms.frame_age.p99)
    l50=$(jqn "$lg" .latency_ms.total.p50) l99=$(jqn "$lg" .latency_ms.total.p99)
    ans=$(jqn "$lg" .answers_per_s)
    echo "| $mode | **${busy:--} %** | $(calc %.1f "${ans:-0}") | $qmean / $qmax, ${qwait:--} ms | $wmean ($wmin–$wmax) | $imean | $idle_pct % | $(calc %.0f "${t50:-0}") / $(calc %.0f "${t99:-0}") ms | $(calc %.0f "${f50:-0}") / $(calc %.0f "${f99:-0}") ms | $(calc %.0f "${l50:-0}") / $(calc %.0f "${l99:-0}") ms |" >>"$OUT/utilisation.md"
    echo "utilisation $mode busy=$busy% qwait=${qwait}ms qlen=$qmean window=$wmean" >&2
done

b=${BUSY[adaptive]:--} q=${QLEN[adaptive]:-0}
verdict=$(awk -v b="$b" -v q="$q" 'BEGIN { if (b == "-") { print "not measured"; exit }
    if (b >= 95 && q <= 1) print "met"; else if (b < 95) printf "missed: %.1f %% busy, %.1f points short\n", b, 95 - b; else printf "missed: busy, but %.1f requests wait inside the backend on average\n", q }')
{
    echo
    echo "Busy fraction: slot-milliseconds fakevlm spent serving requests in the window / ($SLOTS slots × window). Target with the"
    echo "adaptive window: ≥ 95 % busy and no queue building inside the backend (mean fakevlm queue ≤ 1): **$verdict**."
    [ "${BUSY[adaptive]:--}" = - ] || awk -v b="${BUSY[adaptive]}" 'BEGIN { exit !(b < 95) }' && echo "Why: the adaptive window (${WIN[adaptive]}) does not settle at the $SLOTS real slots, and in ${IDLE[adaptive]} % of the 0.5 s samples at least one fakevlm slot was idle."
    echo "The adaptive window, one sample a second from the first connection (warm-up ${WARM} s included): ${TRAJ[adaptive]:-}."
    echo "With the window fixed at $MAXW the backend is just as busy, but the excess waits inside it (the mean wait above),"
    echo "where livevlm can neither reorder it fairly nor drop stale frames — that queue shows up as TTFT and frame age."
    missing_note
} >>"$OUT/utilisation.md"
echo "| utilisation | ≥ 95 % busy, no queue inside the backend (adaptive) | adaptive ${BUSY[adaptive]:--} % busy, queue ${QLEN[adaptive]:--} (wait ${QWAIT[adaptive]:--} ms); fixed ${BUSY[fixed]:--} %, queue ${QLEN[fixed]:--} (wait ${QWAIT[fixed]:--} ms) | $verdict$(awk -v b="${BUSY[adaptive]:--}" 'BEGIN { exit !(b != "-" && b < 95) }' && echo ": the adaptive window (${WIN[adaptive]:-}) does not settle at the $SLOTS slots; a slot was idle in ${IDLE[adaptive]:-} % of samples") |" >"$OUT/utilisation.summary"
cat "$OUT/utilisation.md"
