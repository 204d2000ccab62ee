#!/usr/bin/env bash
# bench/scenarios/tenants.sh - the two-level fair queue (tenants by weight, users within a tenant,
# a user's sessions) in simulation: bench/fairsim.c drives src/core/lv_drr.c with S slots and
# random service times; no server, a few seconds. Jain's index of weight-normalised service at
# each level. Writes $BENCH_OUT/tenants.md and .summary.   FAIRSIM_TICKS=60000 bench/scenarios/tenants.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
TICKS=${FAIRSIM_TICKS:-60000}
SLOTS=${FAIRSIM_SLOTS:-32}
make -s BUILD="$BUILD" "$BUILD/fairsim" >&2
"$BUILD/fairsim" "$TICKS" "$SLOTS" 1 >"$OUT/tenants.txt"
read -r _ _ tj _ uj _ sj <<<"$(grep '^RESULT' "$OUT/tenants.txt")"
verdict() { awk -v x="$1" 'BEGIN { print (x >= 0.98 ? "met" : "missed") }'; }
{
    echo "## 9. Tenants: two-level fairness"
    echo
    echo "bench/fairsim.c ($TICKS ticks, $SLOTS slots, service 5..50 ticks): tenants of weight 1, 2, 4 with 1, 10"
    echo "and 100 users of 1..8 sessions each, all backlogged, through lv_drr with job tracking and the share bound."
    echo "Jain's index over service (slot time) divided by weight; users and sessions have weight 1."
    echo
    echo '```'
    grep -v '^RESULT' "$OUT/tenants.txt"
    echo '```'
} >"$OUT/tenants.md"
{
    echo "| tenants: Jain among tenants (1:2:4) | ≥ 0.98 | $tj | $(verdict "$tj") |"
    echo "| tenants: lowest Jain among a tenant's users | ≥ 0.98 | $uj | $(verdict "$uj") |"
    echo "| tenants: lowest Jain among a user's sessions | ≥ 0.98 | $sj | $(verdict "$sj") |"
} >"$OUT/tenants.summary"
