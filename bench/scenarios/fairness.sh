#!/usr/bin/env bash
# bench/scenarios/fairness.sh - equal users get equal shares while one user opens 10× more
# sessions and the backend is 5× overloaded (the overload in bench/lib.sh). Reports Jain's index
# over the users' answers, each user's share, and how long frames waited for a slot.
# Writes $BENCH_OUT/fairness.md and .summary.   FAIR_DUR=30 bench/scenarios/fairness.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
DUR=${FAIR_DUR:-30}
WARM=${FAIR_WARM:-6}
W="$BENCH_TMP/fair"
mkdir -p "$W"

lvargs=(--no-tls --session-idle 5)
lv_opt lvargs --backend-adaptive fake=on
start_fakevlm fv "${OVL_FV[@]}"
fvpid=$FV_PID
start_livevlm fair --backend fake=http://127.0.0.1:$FV_PORT/v1 --backend-max fake=$OVL_SLOTS "${lvargs[@]}"
lg="$W/lg.json"
"$BUILD/loadgen" --url "$LV_WS" --token-file "$LV_TOKEN_FILE" "${OVL_LG[@]}" --ramp-s 1 --warmup-s $WARM \
    --duration-s $DUR --src-base 127.60.0.2 --quiet --out "$lg" >"$W/lg.txt" 2>&1 &
lgpid=$!
BENCH_PIDS+=("$lgpid")
FV_SNAP_PORTS=$FV_PORT
sleep $((1 + WARM)).3
snap "$W" a $LV_PID $fvpid
sleep $((DUR - 1)).4
snap "$W" b $LV_PID $fvpid
wait $lgpid || true

offered=$(jqn "$lg" .frames_per_s)
ans=$(jqn "$lg" .answers_per_s)
jain=$(jqn "$lg" .users.jain)
jain_s=$(jqn "$lg" .users.jain_sessions)
read -r tot heavy emin emax <<<"$(jq -r '[.users.per_user[].answers] as $a | [($a|add), $a[0], ($a[1:]|min), ($a[1:]|max)] | @tsv' "$lg")"
read -r hs es <<<"$(jq -r '.users.per_user | [.[0].sessions, .[1].sessions] | @tsv' "$lg")"
share() { calc %.2f "100*$1/($tot>0?$tot:1)"; }
qw99=$(jqn "$lg" .server_ms.queue_wait.p99) qwmax=$(jqn "$lg" .server_ms.queue_wait.max) qw50=$(jqn "$lg" .server_ms.queue_wait.p50)
read -r hq99 hqmean <<<"$(hist "$W/a.prom" "$W/b.prom" livevlm_queue_wait_seconds b99 mean)"
verdict=$(awk -v j="${jain:-0}" 'BEGIN { if (j >= 0.98) print "met"; else printf "missed by %.3f\n", 0.98 - j }')
{
    echo "## 2. Fairness: 20 equal users and one with 10× the sessions, backend 5× overloaded"
    echo
    echo "fakevlm: $OVL_SLOTS slots × $((OVL_TTFT + OVL_TOKENS * OVL_TOK)) ms = $OVL_CAP answers/s. livevlm: --backend-max fake=$OVL_SLOTS, no TLS."
    echo "loadgen: ${OVL_LG[*]} (the heavy user is user 0 with $hs sessions, the others $es each; one source address per user),"
    echo "${WARM} s warm-up, ${DUR} s measured. Offered: $(calc %.1f "$offered") frames/s sent (credits are withheld under overload), answered $(calc %.1f "$ans")/s."
    echo
    echo "| Jain over users (answers) | Jain over sessions | answers in window | equal users min / max | heavy user | share min / max of equal users | heavy user's share (fair: $(calc %.2f "100/21") %) | queue wait p50 / p99 / max (server, per answer) | livevlm_queue_wait_seconds: p99 bucket, mean |"
    echo "|---|---|---|---|---|---|---|---|---|"
    echo "| **$(calc %.4f "${jain:-0}")** | $(calc %.3f "${jain_s:-0}") | $tot | $emin / $emax | $heavy | $(share $emin) % / $(share $emax) % | $(share $heavy) % | $(calc %.0f "$qw50") / $(calc %.0f "$qw99") / $(calc %.0f "$qwmax") ms | ${hq99:--} / ${hqmean:--} ms |"
    echo
    echo "Jain's index is (Σx)²/(n·Σx²) over the 21 users' answer counts in the window: 1 means equal shares; if the"
    echo "server shared per session instead, the heavy user would get 20/60 of the answers and Jain would be about 0.36."
    echo "Target ≥ 0.98: **$verdict**."
    missing_note
} >"$OUT/fairness.md"
echo "| fairness | Jain ≥ 0.98 (one user 10×, 5× overload) | $(calc %.4f "${jain:-0}"); heavy user $(share $heavy) %, equal users $(share $emin)–$(share $emax) % | $verdict |" >"$OUT/fairness.summary"
cat "$OUT/fairness.md"
