#!/usr/bin/env bash
# bench/scenarios/failover.sh - two fakevlm backends serve the same model; one is SIGKILLed mid-run
# and restarted on the same port a few seconds later. /metrics is scraped every 100 ms to time:
# kill -> the dead backend out of rotation and nothing in flight there (all traffic on the
# survivor), the errors users saw, and restart -> the backend getting traffic again.
# Target: failover ≤ 1 s. Writes $BENCH_OUT/failover.md and .summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
DEAD_S=${FAIL_DEAD_S:-5}       # how long the killed backend stays down
AFTER_S=${FAIL_AFTER_S:-12}    # how long to watch after the restart
PRE_S=5                         # steady traffic before the kill
DUR=$((PRE_S + DEAD_S + AFTER_S + 1))
W="$BENCH_TMP/fail"
mkdir -p "$W"
FVARGS=(--slots 64 --ttft-ms 50 --token-ms 5 --tokens 20 --quiet)

lvargs=(--no-tls --session-idle 5)
start_fakevlm fva "${FVARGS[@]}"; apid=$FV_PID aport=$FV_PORT
start_fakevlm fvb "${FVARGS[@]}"; bpid=$FV_PID bport=$FV_PORT
start_livevlm fail "${lvargs[@]}" --backend a=http://127.0.0.1:$aport/v1 --backend b=http://127.0.0.1:$bport/v1 \
    --backend-max a=64 --backend-max b=64
lg="$W/lg.json"
"$BUILD/loadgen" --url "$LV_WS" --token-file "$LV_TOKEN_FILE" --sessions 100 --users 5 --per-ip 20 --ramp-s 2 \
    --warmup-s 2 --duration-s $DUR --src-base 127.90.0.2 --quiet --out "$lg" >"$W/lg.txt" 2>&1 &
lgpid=$!
BENCH_PIDS+=("$lgpid")
sleep 4

# one line per 100 ms scrape: t reqA errA inflA stateA healthyA reqB errB inflB answers retries errors
sample() {
    scrape "$W/s.prom"
    has_metrics "$W/s.prom" || return 0
    local f="$W/s.prom" m v line
    line=$(date +%s.%N)
    for m in "livevlm_backend_requests_total backend=a" "livevlm_backend_errors_total backend=a" \
             "livevlm_backend_inflight backend=a" "livevlm_backend_circuit_state backend=a" \
             "livevlm_backend_healthy backend=a" "livevlm_backend_requests_total backend=b" \
             "livevlm_backend_errors_total backend=b" "livevlm_backend_inflight backend=b" \
             livevlm_answers_total livevlm_retries_total livevlm_errors_total \
             "livevlm_backend_window backend=a" "livevlm_backend_window backend=b"; do
        v=$(msum "$f" $m)
        line="$line ${v:-0}"
    done
    echo "$line" >>"$W/series"
}
: >"$W/series"
sampler() { # bounded: at most (DUR + 2) × 10 scrapes
    local i
    for ((i = 0; i < (DUR + 2) * 10; i++)); do sample; sleep 0.085; kill -0 $lgpid 2>/dev/null || break; done
}
sampler &
spid=$!
BENCH_PIDS+=("$spid")
sleep $PRE_S
tkill=$(date +%s.%N)
kill -KILL $apid
wait $apid 2>/dev/null || true
sleep $DEAD_S
trestart=$(date +%s.%N)
"$BUILD/fakevlm" --port $aport --port-file "$W/a2.port" "${FVARGS[@]}" >"$W/a2.log" 2>&1 &
apid2=$!
BENCH_PIDS+=("$apid2")
wait_file "$W/a2.port" 5 || echo "fakevlm a did not come back on port $aport: $(cat "$W/a2.log")" >&2
wait $lgpid || true
kill $spid 2>/dev/null || true; wait $spid 2>/dev/null || true

# columns: 1 t, 2 reqA, 3 errA, 4 inflA, 5 stateA, 6 healthyA, 7 reqB, 8 errB, 9 inflB, 10 answers, 11 retries, 12 errors,
# 13 windowA, 14 windowB
read -r t_out t_all t_back t_closed gap n_dead_a rate_pre rate_post share_a <<<"$(awk -v tk="$tkill" -v tr="$trestart" '
    NF < 14 { next }
    { t = $1 }
    t < tk { pre_t[++np] = t; pre_a[np] = $10 }
    t >= tk && t_out == "" && $5 != 0 { t_out = t - tk }
    t >= tk && t_all == "" && $4 == 0 && $5 != 0 { t_all = t - tk; a_at_all = $2 + 0 }
    t >= tk && t < tr { if (a0 == "") a0 = $2; a1 = $2; if (d0 == "") { d0 = $10; dt0 = t }; d1 = $10; dt1 = t }
    t >= tk && t < tr && lastans != "" && $10 == lastans { if (gs == "") gs = pt } 
    t >= tk && t < tr && lastans != "" && $10 != lastans { if (gs != "" && t - gs > gap) gap = t - gs; gs = "" }
    { lastans = $10; pt = t; ns++; st[ns] = t; sa[ns] = $2; sb[ns] = $7; wa = $13; wb = $14 }
    t >= tr && t_closed == "" && $5 == 0 { t_closed = t - tr }
    t >= tr && t_back == "" && (($2 - $3) > base_ok || $4 > 0) && $5 == 0 { t_back = t - tr }
    t < tr { base_ok = $2 - $3 }
    END {
        if (np >= 2) rpre = (pre_a[np] - pre_a[1]) / (pre_t[np] - pre_t[1])
        rpost = (dt1 > dt0) ? (d1 - d0) / (dt1 - dt0) : 0
        f = "%.2f"
        # share of the requests that went to a over the last 3 s of the watch (after its restart)
        for (j = ns; j > 1 && st[ns] - st[j - 1] <= 3 && st[j - 1] >= tr; j--) ;
        da = sa[ns] - sa[j]; db = sb[ns] - sb[j]
        shr = (j < ns && da + db > 0) ? sprintf("%.0f %%", 100 * da / (da + db)) : "-"
        shr = shr " (windows a " wa ", b " wb " at the end)"
        printf "%s %s %s %s %s %s %.1f %.1f %s\n", (t_out == "" ? "-" : sprintf(f, t_out)), (t_all == "" ? "-" : sprintf(f, t_all)),
            (t_back == "" ? "-" : sprintf(f, t_back)), (t_closed == "" ? "-" : sprintf(f, t_closed)), sprintf(f, gap + 0),
            (a0 == "" ? "-" : a1 - a0), rpre, rpost, shr
    }' "$W/series")"
nsamp=$(wc -l <"$W/series")
errs=$(jq -r '.errors | to_entries | map("\(.key) \(.value)") | join(", ")' "$lg" 2>/dev/null)
lost=$(jq -r '.sessions.lost_after_connect' "$lg" 2>/dev/null)
ans=$(jqn "$lg" .answers) exp=$(jqn "$lg" .answers_expected)
retries=$(awk 'NF >= 12 { if (r0 == "") r0 = $11; r1 = $11 } END { print (r0 == "" ? "-" : r1 - r0) }' "$W/series")
verdict=$(awk -v t="$t_all" 'BEGIN { if (t == "-") print "not measured"; else if (t <= 1) print "met"; else printf "missed by %.2f s\n", t - 1 }')
{
    echo "## 5. Failover: one of two backends killed (SIGKILL) and restarted"
    echo
    echo "Two fakevlm (64 slots, 150 ms service) behind one livevlm (--backend-max 64 each, no TLS); 100 sessions at 1 frame/s."
    echo "Backend a is killed after ${PRE_S} s of steady traffic, restarted on the same port ${DEAD_S} s later, then watched for ${AFTER_S} s."
    echo "/metrics scraped every ~100 ms ($nsamp scrapes), so times are ±0.1 s."
    echo
    echo "| kill → a out of rotation | kill → all traffic on b (a out, nothing in flight there) | longest stretch without an answer | answers/s before / while a is down | requests a finished while down | retries | errors users saw (whole run) | restart → breaker closed | restart → a gets traffic again | a's share of requests, last 3 s |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    echo "| $t_out s | **$t_all s** | $gap s | $rate_pre / $rate_post | $n_dead_a | $retries | ${errs:-none}; sessions lost: ${lost:-0} | $t_closed s | $t_back s | $share_a; even would be 50 % |"
    echo
    echo "Loadgen: $ans answers of $(calc %.0f "${exp:-0}") expected in its window. Target: failover ≤ 1 s: **$verdict**."
    echo "(\"-\": not seen within the watch. Errors: requests that had already streamed their first token when a died end"
    echo "with backend_error by design; those that had not are retried on b (the retries column).)"
    missing_note
} >"$OUT/failover.md"
echo "| failover | ≤ 1 s to move all traffic to the survivor | $t_all s; errors seen: ${errs:-none}; back in rotation $t_back s after restart | $verdict |" >"$OUT/failover.summary"
cat "$OUT/failover.md"
