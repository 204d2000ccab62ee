#!/usr/bin/env bash
# bench/scenarios/cluster.sh - cluster mode (docs/internals/cluster.md): frontends
# (`serve --redis`) and workers (`livevlm worker`) around one redis-server, all on this machine.
#   scale     answers/s with 1, 2 and 4 workers when the backends are the limit: 4 fakevlm with few
#             slots and a fixed service time; worker k owns fakevlm k, so every worker added adds
#             one backend's capacity (plus one worker driving all 4); measured next to the
#             backends' theoretical capacity and their busy fraction
#   latency   what the Redis hop costs at CL_LAT_N sessions at 1 frame/s with a backend that is
#             never the limit: the same loadgen run against single-node `serve` and against
#             `serve --redis` + one worker; client p50/p99 and CPU per frame of the frontend, the
#             worker and redis-server (targets: <= 2 ms more p99, <= 50 % more frontend CPU/frame)
#   fairness  Jain's index across users (>= 0.98) with the users' sessions spread over two
#             frontends (one loadgen per frontend, same users and source addresses on both, so
#             one user is one principal on both) and the backends 5x overloaded (lib.sh's overload)
#   failover  pages that reconnect and resume (cluster_pages.mjs) on two frontends, two workers
#             sharing two fakevlm: kill -9 a fakevlm, then a worker, then a frontend; per event,
#             the time until every session answers again, errors seen, sessions resumed
# No haproxy: loadgen and the pages spread sessions over the frontends themselves, which keeps a
# proxy's CPU out of the numbers. Writes $BENCH_OUT/cluster.md and cluster.summary.
#
#   bench/scenarios/cluster.sh                          # every part
#   CL_PARTS="latency" CL_LAT_DUR=10 bench/scenarios/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
PARTS=${CL_PARTS:-"scale latency fairness failover"}
SC_DUR=${CL_SCALE_DUR:-15}      # scale: measured window per row, seconds
SC_WARM=${CL_SCALE_WARM:-4}
SC_ROWS=${CL_SCALE_ROWS:-"1:one 2:one 4:one 1:all"}   # workers:backends each (one = its own, all = all 4)
LAT_N=${CL_LAT_N:-"1000 250"}    # latency: sessions at 1 frame/s (the first is the targets' N)
LAT_DUR=${CL_LAT_DUR:-15}
LAT_WARM=${CL_LAT_WARM:-4}
LAT_REPS=${CL_LAT_REPS:-2}      # single node and cluster alternate this many times
FAIR_DUR=${CL_FAIR_DUR:-30}
FAIR_WARM=${CL_FAIR_WARM:-6}
FO_PRE=${CL_FO_PRE:-4}          # failover: steady answers before the first kill
FO_GAP=${CL_FO_GAP:-7}          # between kills (the worker's loss is declared after 3 s)
FO_AFTER=${CL_FO_AFTER:-6}      # after the last kill
FO_N=${CL_FO_N:-40}             # pages
FO_INTERVAL=${CL_FO_INTERVAL:-500}
JPEG=tests/data/frame-640x480.jpg
W="$BENCH_TMP/cluster"
mkdir -p "$W"
md="$OUT/cluster.md"
sum="$OUT/cluster.summary"
: >"$sum"
ncpu=$(nproc)
src_i=110                        # loadgen source blocks: 127.110-139.x.x, no other scenario's; set per part

command -v redis-server >/dev/null || { echo "cluster.sh needs redis-server" >&2; exit 2; }
command -v redis-cli >/dev/null || { echo "cluster.sh needs redis-cli" >&2; exit 2; }
worker_help=$("$BUILD/livevlm" worker --help 2>&1 || true)
wk_has() { [[ "$worker_help" == *"$1"* ]]; }
if ! lv_has --redis || [[ "$worker_help" != *--redis* ]]; then
    echo "this livevlm has no cluster mode (serve --redis / livevlm worker)" >&2
    exit 2
fi

# ---------- processes ----------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# start_redis NAME: a private redis-server on a free loopback port, no persistence; sets RD_PORT,
# RD_PID, RD_URL
start_redis() {
    local name=$1 i
    local dir="$BENCH_TMP/$name.redis"
    mkdir -p "$dir"
    for _ in 1 2 3; do
        RD_PORT=$(free_port)
        redis-server --port "$RD_PORT" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
            --daemonize no --logfile "$dir/log" >/dev/null 2>&1 &
        RD_PID=$!
        BENCH_PIDS+=("$RD_PID")
        for ((i = 0; i < 50; i++)); do
            if [ "$(redis-cli -p "$RD_PORT" ping 2>/dev/null)" = PONG ]; then
                RD_URL="redis://127.0.0.1:$RD_PORT"
                return 0
            fi
            kill -0 "$RD_PID" 2>/dev/null || break
            sleep 0.1
        done
        stop_pid "$RD_PID"
    done
    echo "redis-server did not start: $(tail -3 "$dir/log" 2>/dev/null)" >&2
    return 1
}

# start_frontend NAME ARGS...: `serve --redis` with the token of the first frontend started
# (every frontend needs the same one) and, in ARGS, the workers' --backend flags (a frontend keeps
# them as the model catalogue, never sends a request through them); sets LV_* as start_livevlm does
CL_TOKEN=
start_frontend() {
    local name=$1; shift
    mkdir -p "$BENCH_TMP/$name.cfg"
    [ -z "$CL_TOKEN" ] || install -m 600 "$CL_TOKEN" "$BENCH_TMP/$name.cfg/token"
    start_livevlm "$name" --no-tls --session-idle 5 --redis "$RD_URL" --node-id "$name" "$@"
    [ -n "$CL_TOKEN" ] || { wait_file "$LV_TOKEN_FILE" 5; CL_TOKEN=$LV_TOKEN_FILE; }
}

# start_worker NAME ARGS...: `livevlm worker`; sets WK_PID, WK_PORT (its /metrics; empty when this
# build has no --port-file for workers)
start_worker() {
    local name=$1; shift
    local pf=()
    if wk_has --port-file; then pf=(--host 127.0.0.1 --port 0 --port-file "$BENCH_TMP/$name.port"); fi
    if wk_has --no-detect; then pf+=(--no-detect); fi
    "$BUILD/livevlm" worker --redis "$RD_URL" --node-id "$name" --log-level warn "${pf[@]}" "$@" \
        >"$BENCH_TMP/$name.out" 2>"$BENCH_TMP/$name.log" &
    WK_PID=$!
    BENCH_PIDS+=("$WK_PID")
    WK_PORT=
    if [ ${#pf[@]} -gt 0 ]; then
        wait_file "$BENCH_TMP/$name.port" 10 "$WK_PID" || { tail -3 "$BENCH_TMP/$name.log" >&2; return 1; }
        WK_PORT=$(cat "$BENCH_TMP/$name.port")
    else
        sleep 0.3
        kill -0 "$WK_PID" 2>/dev/null || { echo "worker $name exited: $(tail -3 "$BENCH_TMP/$name.log")" >&2; return 1; }
    fi
}
# worker backend flags: wk_backend ARRAY ID PORT MAX ADAPTIVE(on|off|"")
wk_backend() {
    local -n _a=$1
    _a+=(--backend "$2=http://127.0.0.1:$3/v1" --backend-max "$2=$4")
    if [ -n "$5" ]; then
        if wk_has --backend-adaptive; then _a+=(--backend-adaptive "$2=$5"); else
            case " ${LV_MISSING[*]} " in *" worker --backend-adaptive "*) ;; *) LV_MISSING+=("worker --backend-adaptive") ;; esac
        fi
    fi
}

# wait_cluster URL WORKERS CAPACITY: until the frontend at URL counts WORKERS live workers with
# CAPACITY slots in all (at most 15 s); prints what it saw last when it gives up
wait_cluster() {
    local url=$1 nw=$2 cap=$3 i w c
    for ((i = 0; i < 150; i++)); do
        curl -sk --max-time 2 -H "Authorization: Bearer $(cat "$CL_TOKEN")" "$url/metrics" >"$W/wc.prom" 2>/dev/null || : >"$W/wc.prom"
        w=$(msum "$W/wc.prom" livevlm_cluster_workers) c=$(msum "$W/wc.prom" livevlm_cluster_capacity)
        if [ "${w:-0}" = "$nw" ] && [ "${c:-0}" -ge "$cap" ] 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "cluster at $url did not come up: workers ${w:-?} (want $nw), capacity ${c:-?} (want $cap)" >&2
    return 1
}

# machine-wide CPU between two snapshots: busy % of all cores
# irq + softirq time between two snapshots, % of a core: the kernel's work for loopback traffic
# that no process is charged for (part of "other load")
stat_soft() {
    awk -v n="$ncpu" 'FNR == 1 { f++; s[f] = $7 + $8; t[f] = 0; for (i = 2; i <= NF; i++) t[f] += $i }
         END { dt = t[2] - t[1]; printf "%.0f", (dt > 0 ? 100 * n * (s[2] - s[1]) / dt : 0) }' "$W/$1.stat" "$W/$2.stat"
}
pct() { awk -v c="$1" -v d="$2" 'BEGIN { printf "%.1f", (d > 0 ? 100 * c / d : 0) }'; }       # CPU_S DT -> % of a core
per_frame() { awk -v c="$1" -v f="$2" 'BEGIN { printf "%.0f", (f > 0 ? c * 1e6 / f : 0) }'; }  # CPU_S FRAMES -> µs
# the bench's processes' share of the machine and what else ran meanwhile (other work on this machine)
others_pct() { # BUSY_PCT_OF_ALL_CORES DT CPU_S...
    local busy=$1 dt=$2; shift 2
    awk -v b="$busy" -v d="$dt" -v n="$ncpu" -v s="$*" 'BEGIN { m = split(s, a, " "); t = 0; for (i = 1; i <= m; i++) t += a[i]
        o = b * n - 100 * t / d; printf "%.0f", (o < 0 ? 0 : o) }'
}
stop_all_of() { local p; for p in "$@"; do stop_pid "$p"; done; }

{
    echo "## 8. Cluster: frontends and workers on one Redis"
    echo
    echo "Every process on this machine's ${ncpu} cores: redis-server ($(redis-server --version | awk '{print $3}' | tr -d v=), no persistence, on loopback TCP),"
    echo "\`livevlm serve --redis\` frontends, \`livevlm worker\` processes, fakevlm backends, and loadgen; no haproxy"
    echo "(each loadgen or page client talks to one frontend directly, so no proxy's CPU is in the figures)."
    echo "CPU is user + system from /proc over the measured window. \"Other load\": the machine's busy time minus the"
    echo "bench's own processes (whatever else ran meanwhile, and kernel time charged to no process), in % of a core;"
    echo "next to it the machine's irq + softirq time (mostly loopback TCP; partly charged to the processes that caused it)."
    echo
} >"$md"

# =====================================================================================
# scale: answers/s with 1, 2, 4 workers, the backends the limit
# =====================================================================================
part_scale() {
    src_i=110
    local SLOTS=4 TTFT=100 TOK=15 TOKENS=10 SESS=160
    local S_MS=$((TTFT + TOKENS * TOK))
    local per_be
    per_be=$(calc %.1f "$SLOTS*1000/$S_MS")
    local fvpids=() fvports=() i row
    for i in 1 2 3 4; do
        start_fakevlm sc-fv$i --slots $SLOTS --ttft-ms $TTFT --token-ms $TOK --tokens $TOKENS
        fvpids+=("$FV_PID") fvports+=("$FV_PORT")
    done
    {
        echo "### 8.1 Throughput with 1, 2 and 4 workers when the backends are the limit"
        echo
        echo "4 fakevlm, each $SLOTS slots × $S_MS ms (${TTFT} ms + ${TOKENS} tokens × ${TOK} ms) = $per_be answers/s. Worker k owns"
        echo "fakevlm k (--backend-max $SLOTS, adaptive window off), so each worker added adds one backend's capacity;"
        echo "the last row is one worker with all four. One frontend; loadgen: $SESS sessions in 8 users at 1 frame/s"
        echo "(offered $SESS frames/s, more than all four backends together), ${SC_WARM} s warm-up, ${SC_DUR} s measured."
        echo "Fresh Redis, frontend and workers per row. Busy: fakevlm's busy slot-time / (slots × window) over the"
        echo "backends the row uses."
        echo
        echo "| workers | backends | capacity (theoretical) | answers/s | of capacity | backends busy | frontend saw capacity | client latency p50 / p99 | queue wait p50 / p99 (server) | frontend CPU/answer | workers CPU (% of a core) | redis CPU (% of a core) | other load; irq+softirq |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    } >>"$md"
    local worst=100 series="" measured=0
    for row in $SC_ROWS; do
        local nw=${row%%:*} how=${row#*:}
        local nbe=$nw
        [ "$how" = all ] && nbe=4
        local cap_th
        cap_th=$(calc %.1f "$nbe*$SLOTS*1000/$S_MS")
        start_redis "sc-$nw-$how"
        local rdpid=$RD_PID
        local feargs=() k wargs
        for ((i = 1; i <= nbe; i++)); do wk_backend feargs f$i "${fvports[$((i - 1))]}" $SLOTS ""; done
        start_frontend sc-fe-$nw-$how "${feargs[@]}"
        local fepid=$LV_PID feurl=$LV_URL
        local wkpids=()
        for ((k = 1; k <= nw; k++)); do
            wargs=()
            if [ "$how" = all ]; then
                for i in 1 2 3 4; do wk_backend wargs f$i "${fvports[$((i - 1))]}" $SLOTS off; done
            else
                wk_backend wargs f$k "${fvports[$((k - 1))]}" $SLOTS off
            fi
            start_worker "sc-wk$k-$nw-$how" "${wargs[@]}"
            wkpids+=("$WK_PID")
        done
        LV_URL=$feurl
        if ! wait_cluster "$feurl" "$nw" $((nbe * SLOTS)); then
            echo "| $nw | $nbe | $cap_th | cluster did not come up (see the log) | | | | | | | | | |" >>"$md"
            stop_all_of "${wkpids[@]}" "$fepid" "$rdpid"
            continue
        fi
        local lg="$W/sc-$nw-$how.json" tag="sc-$nw-$how"
        "$BUILD/loadgen" --url "$LV_WS" --token-file "$CL_TOKEN" --sessions $SESS --users 8 --per-ip 20 --ramp-s 1 \
            --warmup-s "$SC_WARM" --duration-s "$SC_DUR" --jpeg $JPEG --src-base 127.$src_i.0.2 --quiet --out "$lg" \
            >"$W/$tag.txt" 2>&1 &
        local lgpid=$!
        BENCH_PIDS+=("$lgpid")
        src_i=$((src_i + 1))
        FV_SNAP_PORTS="${fvports[*]}"
        sleep "$((1 + SC_WARM)).3"
        snap "$W" a-$tag "$fepid" "${wkpids[@]}" "$rdpid" "$lgpid" "${fvpids[@]}"; snap_stat a-$tag
        sleep "$((SC_DUR - 1)).4"
        snap "$W" b-$tag "$fepid" "${wkpids[@]}" "$rdpid" "$lgpid" "${fvpids[@]}"; snap_stat b-$tag
        FV_SNAP_PORTS=
        wait $lgpid || true
        local dt fecpu wkcpu=0 rdcpu lgcpu fvcpu=0 busy p c
        dt=$(snap_dt "$W" a-$tag b-$tag)
        fecpu=$(snap_cpu_s "$W" a-$tag b-$tag "$fepid")
        for p in "${wkpids[@]}"; do c=$(snap_cpu_s "$W" a-$tag b-$tag "$p"); wkcpu=$(calc %.3f "$wkcpu+$c"); done
        for p in "${fvpids[@]}"; do c=$(snap_cpu_s "$W" a-$tag b-$tag "$p"); fvcpu=$(calc %.3f "$fvcpu+$c"); done
        rdcpu=$(snap_cpu_s "$W" a-$tag b-$tag "$rdpid")
        lgcpu=$(snap_cpu_s "$W" a-$tag b-$tag "$lgpid")
        busy=$(stat_busy a-$tag b-$tag)
        local others
        others=$(others_pct "$busy" "$dt" "$fecpu" "$wkcpu" "$rdcpu" "$lgcpu" "$fvcpu")
        others="$others %; irq+softirq $(stat_soft a-$tag b-$tag) %"
        # backends busy: over the backends this row uses (1..nbe)
        local bsum=0 usum=0 b0 b1 u0 u1
        for ((i = 0; i < nbe; i++)); do
            b0=$(jqn "$W/a-$tag.fv${fvports[$i]}.json" .busy_slot_ms) b1=$(jqn "$W/b-$tag.fv${fvports[$i]}.json" .busy_slot_ms)
            u0=$(jqn "$W/a-$tag.fv${fvports[$i]}.json" .uptime_ms) u1=$(jqn "$W/b-$tag.fv${fvports[$i]}.json" .uptime_ms)
            bsum=$(calc %.0f "$bsum+${b1:-0}-${b0:-0}") usum=$(calc %.0f "$usum+${u1:-0}-${u0:-0}")
        done
        busy_be=$(awk -v b="$bsum" -v k=$SLOTS -v u="$usum" 'BEGIN { printf "%.1f", (u > 0 ? 100 * b / (k * u) : 0) }')
        local ans ansn l50 l99 q50 q99 ratio fcap
        ans=$(jqn "$lg" .answers_per_s) ansn=$(jqn "$lg" .answers)
        l50=$(jqn "$lg" .latency_ms.total.p50) l99=$(jqn "$lg" .latency_ms.total.p99)
        q50=$(jqn "$lg" .server_ms.queue_wait.p50) q99=$(jqn "$lg" .server_ms.queue_wait.p99)
        ratio=$(awk -v a="${ans:-0}" -v c="$cap_th" 'BEGIN { printf "%.1f", (c > 0 ? 100 * a / c : 0) }')
        fcap=$(msum "$W/b-$tag.prom" livevlm_cluster_capacity)
        printf '| %s | %s (%s) | %s/s | **%s/s** | %s %% | %s %% | %s slots | %s / %s ms | %s / %s ms | %s µs (%s %% of a core) | %s | %s | %s |\n' \
            "$nw" "$nbe" "$([ "$how" = all ] && echo "all 4 each" || echo "one each")" "$cap_th" "$(calc %.1f "${ans:-0}")" "$ratio" "$busy_be" "${fcap:--}" \
            "$(calc %.0f "${l50:-0}")" "$(calc %.0f "${l99:-0}")" "$(calc %.0f "${q50:-0}")" "$(calc %.0f "${q99:-0}")" \
            "$(per_frame "$fecpu" "${ansn:-0}")" "$(pct "$fecpu" "$dt")" "$(pct "$wkcpu" "$dt")" "$(pct "$rdcpu" "$dt")" "$others" >>"$md"
        echo "cluster scale $row: answers/s=$ans of $cap_th ($ratio %) busy=$busy_be % lat=$l50/$l99" >&2
        worst=$(awk -v w="$worst" -v r="$ratio" 'BEGIN { print (r < w ? r : w) }')
        measured=$((measured + 1))
        series="$series${series:+, }$nw$([ "$how" = all ] && echo "×all4" || echo "") $(calc %.1f "${ans:-0}")/$cap_th"
        stop_all_of "${wkpids[@]}" "$fepid" "$rdpid"
    done
    stop_all_of "${fvpids[@]}"
    local verdict
    verdict=$(awk -v w="$worst" 'BEGIN { if (w >= 95) print "met"; else printf "missed: %.1f %% at worst\n", w }')
    [ "$measured" -gt 0 ] || { verdict="not measured"; series="no row ran (see the error output)"; }
    {
        echo
        echo "Target: every row within 5 % of its backends' capacity (answers/s ≥ 95 % of it): **$verdict**."
        echo
    } >>"$md"
    echo "| cluster throughput | answers/s ≥ 95 % of the backends' capacity with 1, 2, 4 workers | $series answers/s (worst $worst %) | $verdict |" >>"$sum"
}

# =====================================================================================
# latency: the Redis hop at LAT_N sessions
# =====================================================================================
part_latency() {
    src_i=120
    local TTFT=50 TOK=5 TOKENS=20
    local FLOOR=$((TTFT + TOKENS * TOK))
    local n0=${LAT_N%% *}
    {
        echo "### 8.2 The Redis hop: single node vs frontend + worker"
        echo
        echo "fakevlm: 1024 slots, ${TTFT} ms + ${TOKENS} tokens × ${TOK} ms = ${FLOOR} ms floor, never the limit (--backend-max 1024,"
        echo "adaptive off). The same loadgen run (N sessions at 1 frame/s, $JPEG, ${LAT_WARM} s warm-up, ${LAT_DUR} s measured,"
        echo "no TLS) against single-node \`serve\` and against \`serve --redis\` + one \`livevlm worker\` (separate processes,"
        echo "fresh Redis each run), alternating, $LAT_REPS runs of each per N. CPU per frame: the process's CPU over the"
        echo "window / the frontend's livevlm_frames_total growth. Stale: frames the frontend dropped as too old"
        echo "(livevlm_frames_dropped_total{reason=\"stale\"}) in the window."
        echo
        echo "| N | run | mode | answers/s (of expected) | client latency p50 / p99 | frontend CPU/frame (% of a core) | worker CPU/frame | redis-server CPU/frame | livevlm + redis CPU/frame | stale | Redis queue depth mean / max, oldest job max; worker jobs in flight mean | loadgen CPU/frame, loop lag p99 | machine busy | other load; irq+softirq |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    } >>"$md"
    local fvpid fvport rep mode n
    start_fakevlm lat-fv --slots 1024 --ttft-ms $TTFT --token-ms $TOK --tokens $TOKENS --queue-max 100000
    fvpid=$FV_PID fvport=$FV_PORT
    declare -A L99 L50 FEPF TOTPF QD FL WKP CANS
    for n in $LAT_N; do
        local ramp
        ramp=$(awk -v n="$n" 'BEGIN { r = n / 1000; printf "%d", r < 2 ? 2 : r + 0.999 }')
        for ((rep = 1; rep <= LAT_REPS; rep++)); do
            for mode in single cluster; do
                local tag="lat-$n-$mode-$rep" pids=() fepid wkpid="" rdpid=""
                if [ $mode = single ]; then
                    local sargs=(--no-tls --session-idle 5)
                    lv_opt sargs --backend-adaptive fake=off
                    start_livevlm "$tag" --backend fake=http://127.0.0.1:$fvport/v1 --backend-max fake=1024 "${sargs[@]}"
                    fepid=$LV_PID
                    [ -n "$CL_TOKEN" ] || CL_TOKEN=$LV_TOKEN_FILE
                    pids=("$fepid")
                else
                    start_redis "$tag"; rdpid=$RD_PID
                    local wargs=()
                    wk_backend wargs fake $fvport 1024 off
                    start_frontend "$tag-fe" "${wargs[@]}"; fepid=$LV_PID
                    start_worker "$tag-wk" "${wargs[@]}"; wkpid=$WK_PID
                    wait_cluster "$LV_URL" 1 1024 || { echo "| $n | $rep | cluster | did not come up | | | | | | | | | |" >>"$md"; stop_all_of "$wkpid" "$fepid" "$rdpid"; continue; }
                    pids=("$fepid" "$wkpid" "$rdpid")
                fi
                local lg="$W/$tag.json"
                "$BUILD/loadgen" --url "$LV_WS" --token-file "$LV_TOKEN_FILE" --sessions "$n" --ramp-s "$ramp" \
                    --warmup-s "$LAT_WARM" --duration-s "$LAT_DUR" --jpeg $JPEG --src-base "127.$src_i.0.2" --quiet --out "$lg" \
                    >"$W/$tag.txt" 2>&1 &
                local lgpid=$!
                BENCH_PIDS+=("$lgpid")
                src_i=$((src_i + 1))
                sleep "$((ramp + LAT_WARM)).4"
                snap "$W" "a-$tag" "${pids[@]}" "$fvpid" "$lgpid"; snap_stat "a-$tag"
                # cluster: the queue in Redis and the worker's jobs in flight, once a second
                local qspid=""
                : >"$W/$tag.queue"
                if [ $mode = cluster ]; then
                    (
                        for ((i = 0; i < LAT_DUR; i++)); do
                            curl -s --max-time 1 -H "Authorization: Bearer $(cat "$CL_TOKEN")" "$LV_URL/metrics" >"$W/$tag.q.prom" 2>/dev/null || :
                            echo "$(msum "$W/$tag.q.prom" livevlm_cluster_queue_depth) $(msum "$W/$tag.q.prom" livevlm_cluster_worker_in_flight) $(msum "$W/$tag.q.prom" livevlm_cluster_oldest_job_seconds)" >>"$W/$tag.queue"
                            sleep 0.9
                        done
                    ) &
                    qspid=$!
                fi
                sleep "$((LAT_DUR - 1)).2"
                snap "$W" "b-$tag" "${pids[@]}" "$fvpid" "$lgpid"; snap_stat "b-$tag"
                [ -z "$qspid" ] || { kill "$qspid" 2>/dev/null || true; wait "$qspid" 2>/dev/null || true; }
                wait $lgpid || true
                stop_all_of "${pids[@]}"
                local dt frames fecpu wkcpu=0 rdcpu=0 lgcpu fvcpu busy others stale
                dt=$(snap_dt "$W" "a-$tag" "b-$tag")
                frames=$(mdelta "$W/a-$tag.prom" "$W/b-$tag.prom" livevlm_frames_total)
                [ -n "$frames" ] || frames=$(awk -v f="$(jqn "$lg" .frames_per_s)" -v d="$dt" 'BEGIN { printf "%.0f", f * d }')
                stale=$(mdelta "$W/a-$tag.prom" "$W/b-$tag.prom" livevlm_frames_dropped_total reason=stale)
                fecpu=$(snap_cpu_s "$W" "a-$tag" "b-$tag" "$fepid")
                [ -z "$wkpid" ] || wkcpu=$(snap_cpu_s "$W" "a-$tag" "b-$tag" "$wkpid")
                [ -z "$rdpid" ] || rdcpu=$(snap_cpu_s "$W" "a-$tag" "b-$tag" "$rdpid")
                lgcpu=$(snap_cpu_s "$W" "a-$tag" "b-$tag" "$lgpid")
                fvcpu=$(snap_cpu_s "$W" "a-$tag" "b-$tag" "$fvpid")
                busy=$(stat_busy "a-$tag" "b-$tag")
                others=$(others_pct "$busy" "$dt" "$fecpu" "$wkcpu" "$rdcpu" "$lgcpu" "$fvcpu")
                others="$others %; irq+softirq $(stat_soft "a-$tag" "b-$tag") %"
                local ans ansn exp ratio l50 l99 lgper lag99 tot wk_col rd_col q_col="–"
                ans=$(jqn "$lg" .answers_per_s) ansn=$(jqn "$lg" .answers) exp=$(jqn "$lg" .answers_expected)
                [ ! -s "$W/$tag.queue" ] || q_col=$(awk 'NF == 3 { n++; q += $1; if ($1 > qm) qm = $1; f += $2; if ($3 > om) om = $3 }
                    END { if (n) printf "%.0f / %d, %.2f s; %.0f", q / n, qm, om, f / n; else printf "–" }' "$W/$tag.queue")
                if [ -s "$W/$tag.queue" ]; then
                    QD[$n]="${QD[$n]:-} $(awk 'NF == 3 { n++; q += $1 } END { printf "%.1f", (n ? q / n : 0) }' "$W/$tag.queue")"
                    FL[$n]="${FL[$n]:-} $(awk 'NF == 3 { n++; f += $2 } END { printf "%.1f", (n ? f / n : 0) }' "$W/$tag.queue")"
                    WKP[$n]="${WKP[$n]:-} $(pct "$wkcpu" "$dt")" CANS[$n]="${CANS[$n]:-} ${ans:-0}"
                fi
                ratio=$(awk -v a="${ansn:-0}" -v e="${exp:-0}" 'BEGIN { printf "%.1f", (e > 0 ? 100 * a / e : 0) }')
                l50=$(jqn "$lg" .latency_ms.total.p50) l99=$(jqn "$lg" .latency_ms.total.p99)
                lgper=$(jqn "$lg" .loadgen.us_per_frame) lag99=$(jqn "$lg" .loadgen.loop_lag_ms.p99)
                tot=$(calc %.3f "$fecpu+$wkcpu+$rdcpu")
                L50[$n$mode]="${L50[$n$mode]:-} ${l50:-0}" L99[$n$mode]="${L99[$n$mode]:-} ${l99:-0}"
                FEPF[$n$mode]="${FEPF[$n$mode]:-} $(per_frame "$fecpu" "$frames")" TOTPF[$n$mode]="${TOTPF[$n$mode]:-} $(per_frame "$tot" "$frames")"
                wk_col="–" rd_col="–"
                if [ $mode = cluster ]; then
                    wk_col="$(per_frame "$wkcpu" "$frames") µs ($(pct "$wkcpu" "$dt") %)"
                    rd_col="$(per_frame "$rdcpu" "$frames") µs ($(pct "$rdcpu" "$dt") %)"
                fi
                printf '| %s | %s | %s | %s (%s %%) | %s / %s ms | %s µs (%s %%) | %s | %s | %s µs | %s | %s | %s µs, %s ms | %s %% | %s |\n' \
                    "$n" "$rep" "$([ $mode = single ] && echo "single node" || echo "frontend + worker + redis")" \
                    "$(calc %.0f "${ans:-0}")" "$ratio" "$(calc %.1f "${l50:-0}")" "$(calc %.1f "${l99:-0}")" \
                    "$(per_frame "$fecpu" "$frames")" "$(pct "$fecpu" "$dt")" "$wk_col" "$rd_col" "$(per_frame "$tot" "$frames")" \
                    "${stale:-–}" "$q_col" "$(calc %.0f "${lgper:-0}")" "$(calc %.1f "${lag99:-0}")" "$busy" "$others" >>"$md"
                echo "cluster latency $tag: answers/s=$ans ($ratio %) lat=$l50/$l99 fe=$(per_frame "$fecpu" "$frames")us total=$(per_frame "$tot" "$frames")us busy=$busy% others=$others" >&2
            done
        done
    done
    stop_pid $fvpid
    mean() { awk -v s="$1" 'BEGIN { n = split(s, a, " "); t = 0; for (i = 1; i <= n; i++) t += a[i]; printf "%.2f", (n ? t / n : 0) }'; }
    local s99 c99 s50 c50 sfe cfe stot ctot add fe_more tot_more v1="" v2="" lines=""
    echo >>"$md"
    for n in $LAT_N; do
        s99=$(mean "${L99[${n}single]:-}") c99=$(mean "${L99[${n}cluster]:-}") s50=$(mean "${L50[${n}single]:-}") c50=$(mean "${L50[${n}cluster]:-}")
        sfe=$(mean "${FEPF[${n}single]:-}") cfe=$(mean "${FEPF[${n}cluster]:-}") stot=$(mean "${TOTPF[${n}single]:-}") ctot=$(mean "${TOTPF[${n}cluster]:-}")
        add=$(calc %.1f "$c99-$s99")
        fe_more=$(awk -v s="$sfe" -v c="$cfe" 'BEGIN { printf "%.0f", (s > 0 ? 100 * (c - s) / s : 0) }')
        tot_more=$(awk -v s="$stot" -v c="$ctot" 'BEGIN { printf "%.0f", (s > 0 ? 100 * (c - s) / s : 0) }')
        echo "- **$n sessions**, means over the runs: client p50 $(calc %.1f "$s50") → $(calc %.1f "$c50") ms, p99 $(calc %.1f "$s99") → $(calc %.1f "$c99") ms (**$add ms** added at p99);" >>"$md"
        echo "  frontend CPU per frame $(calc %.0f "$sfe") → $(calc %.0f "$cfe") µs (**$fe_more %**); livevlm processes and redis-server together $(calc %.0f "$stot") → $(calc %.0f "$ctot") µs per frame ($tot_more %)." >>"$md"
        local qd fl wkp cans
        qd=$(mean "${QD[$n]:-}") fl=$(mean "${FL[$n]:-}") wkp=$(mean "${WKP[$n]:-}") cans=$(mean "${CANS[$n]:-}")
        if awk -v q="$qd" 'BEGIN { exit !(q > 10) }'; then
            echo "  Jobs waited in Redis (mean depth $(calc %.0f "$qd")) while the worker had $(calc %.0f "$fl") of its 1024 slots in use and used $(calc %.0f "$wkp") % of" >>"$md"
            echo "  a core: jobs left the queue more slowly than they came ($(calc %.0f "$cans") answers/s) while the worker had free slots:" >>"$md"
            echo "  its one loop (pops of up to 16 jobs per round trip, each job's events published) did not keep up on cores" >>"$md"
            echo "  the frontend, redis-server, loadgen and fakevlm share (see machine busy), not its slots." >>"$md"
        fi
        if [ "$n" = "$n0" ]; then
            v1=$(awk -v a="$add" 'BEGIN { if (a <= 2) print "met"; else printf "missed by %.1f ms\n", a - 2 }')
            v2=$(awk -v m="$fe_more" 'BEGIN { if (m <= 50) print "met"; else printf "missed by %d points\n", m - 50 }')
            echo "| cluster Redis hop, latency | ≤ 2 ms more client p99 at $n sessions | p99 $(calc %.1f "$s99") → $(calc %.1f "$c99") ms ($add ms) | $v1 |" >>"$sum"
            echo "| cluster Redis hop, CPU | ≤ 50 % more frontend CPU per frame at $n sessions | $(calc %.0f "$sfe") → $(calc %.0f "$cfe") µs ($fe_more %); frontend + worker + redis $(calc %.0f "$ctot") µs/frame ($tot_more % vs single node) | $v2 |" >>"$sum"
        fi
    done
    {
        echo
        echo "Targets at $n0 sessions: ≤ 2 ms added client p99: **$v1**; ≤ 50 % more frontend CPU per frame: **$v2**."
        echo "A frontend no longer talks to the backend (HTTP, SSE parsing) but encodes each job for Redis, runs the"
        echo "enqueue script and reads the job's events from pub/sub; the worker does the backend's half plus the pop and"
        echo "the publishes; redis-server stores and hands over each JPEG and relays the events. On this machine every one"
        echo "of those processes shares the same ${ncpu} cores with loadgen and fakevlm, so wherever \"machine busy\" nears 100 %,"
        echo "client latency includes waiting for a core, not only the hop."
        echo
    } >>"$md"
}

# =====================================================================================
# fairness across users over two frontends
# =====================================================================================
part_fairness() {
    src_i=130
    local half=$((OVL_SLOTS / 2)) mode
    {
        echo "### 8.3 Fairness across users over two frontends, backends 5× overloaded"
        echo
        echo "lib.sh's overload on the cluster: two fakevlm of $half slots × $((OVL_TTFT + OVL_TOKENS * OVL_TOK)) ms ($OVL_CAP answers/s together), each"
        echo "owned by one worker (adaptive window on, --backend-max $half), fresh Redis per run. **two frontends**: two loadgens,"
        echo "one per frontend, each 30 sessions of 21 users every $OVL_INTERVAL ms with user 0 heavy (1:10), from the same"
        echo "source addresses: user u is one principal with sessions on both frontends (the heavy user 20 sessions, the"
        echo "others 2 each), so only a cluster-wide order can share fairly. **one frontend** (reference): one loadgen"
        echo "with all 60 sessions (lib.sh's OVL_LG) on one frontend, same workers. ${FAIR_WARM} s warm-up, ${FAIR_DUR} s measured."
        echo
        echo "| frontends | Jain over users | answers in window | equal users min / max | heavy user's answers (fair: $(calc %.2f "100/21") %), of frames it sent (an equal user's mean) | Jain per loadgen | answers/s | frames sent/s | frontends: frames dropped stale, of them jobs lost stale in Redis; running jobs preempted | workers: jobs taken / answered / stale / cancelled | queue wait p50 / p99 (server) | frontend CPU (% of a core) |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    } >>"$md"
    local JAIN2="" ROW2=""
    for mode in ${CL_FAIR_MODES:-two one}; do
        start_redis fair-$mode; local rdpid=$RD_PID
        local fv1 fv2 p1 p2 wk1 wk2 wargs wk1port wk2port
        start_fakevlm fair-$mode-fv1 --slots $half --ttft-ms $OVL_TTFT --token-ms $OVL_TOK --tokens $OVL_TOKENS; fv1=$FV_PID p1=$FV_PORT
        start_fakevlm fair-$mode-fv2 --slots $((OVL_SLOTS - half)) --ttft-ms $OVL_TTFT --token-ms $OVL_TOK --tokens $OVL_TOKENS; fv2=$FV_PID p2=$FV_PORT
        wargs=(); wk_backend wargs fake1 $p1 $half on; start_worker fair-$mode-wk1 "${wargs[@]}"; wk1=$WK_PID wk1port=$WK_PORT
        wargs=(); wk_backend wargs fake2 $p2 $((OVL_SLOTS - half)) on; start_worker fair-$mode-wk2 "${wargs[@]}"; wk2=$WK_PID wk2port=$WK_PORT
        wargs=(); wk_backend wargs fake1 $p1 $half ""; wk_backend wargs fake2 $p2 $((OVL_SLOTS - half)) ""
        local fes=() urls=() wss=() nfe=2 k
        [ "$mode" = one ] && nfe=1
        for ((k = 1; k <= nfe; k++)); do
            start_frontend fair-$mode-fe$k "${wargs[@]}"; fes+=("$LV_PID") urls+=("$LV_URL") wss+=("$LV_WS")
        done
        for ((k = 0; k < nfe; k++)); do wait_cluster "${urls[$k]}" 2 2; done
        local lgargs lgs=() lgpids=()
        if [ "$mode" = one ]; then
            lgargs=("${OVL_LG[@]}")
        else
            # each frontend gets half of lib.sh's overload: 30 sessions, the heavy user 10 of them;
            # the same source addresses from both loadgens, so each user is one principal on both
            lgargs=(--sessions 30 --users 21 --heavy-user 1:10 --per-ip 20 --interval-ms "$OVL_INTERVAL")
        fi
        lgargs+=(--ramp-s 1 --warmup-s "$FAIR_WARM" --duration-s "$FAIR_DUR" --src-base "127.$src_i.0.2" --quiet)
        src_i=$((src_i + 1))
        for ((k = 0; k < nfe; k++)); do
            "$BUILD/loadgen" --url "${wss[$k]}" --token-file "$CL_TOKEN" "${lgargs[@]}" --seed $((k + 1)) \
                --out "$W/fair-$mode-$k.json" >"$W/fair-$mode-$k.txt" 2>&1 &
            lgpids+=("$!") lgs+=("$W/fair-$mode-$k.json")
            BENCH_PIDS+=("$!")
        done
        sleep "$((1 + FAIR_WARM)).3"
        snap "$W" a-fair-$mode "${fes[@]}" "$wk1" "$wk2" "$rdpid"
        for ((k = 0; k < nfe; k++)); do LV_URL=${urls[$k]}; scrape "$W/a-fair-$mode-fe$k.prom"; done
        curl -s --max-time 2 "http://127.0.0.1:$wk1port/metrics" >"$W/a-fair-$mode-wk1.prom" 2>/dev/null || :
        curl -s --max-time 2 "http://127.0.0.1:$wk2port/metrics" >"$W/a-fair-$mode-wk2.prom" 2>/dev/null || :
        sleep "$((FAIR_DUR - 1)).4"
        snap "$W" b-fair-$mode "${fes[@]}" "$wk1" "$wk2" "$rdpid"
        for ((k = 0; k < nfe; k++)); do LV_URL=${urls[$k]}; scrape "$W/b-fair-$mode-fe$k.prom"; done
        curl -s --max-time 2 "http://127.0.0.1:$wk1port/metrics" >"$W/b-fair-$mode-wk1.prom" 2>/dev/null || :
        curl -s --max-time 2 "http://127.0.0.1:$wk2port/metrics" >"$W/b-fair-$mode-wk2.prom" 2>/dev/null || :
        for k in "${lgpids[@]}"; do wait "$k" || true; done
        stop_all_of "${fes[@]}" "$wk1" "$wk2" "$fv1" "$fv2" "$rdpid"
        for k in "${lgs[@]}"; do [ -s "$k" ] || { echo "fairness $mode: a loadgen wrote no result: $(tail -1 "${k%.json}.txt")" >&2; return 1; }; done
        # per-user answers summed over the loadgens (user u is the same principal on every frontend)
        local jain tot heavy emin emax jl ans sent q50 q99 drops=0 lost=0 pre=0 wstale=0 wtaken=0 wans=0 wcanc=0 d cpu=""
        read -r jain tot heavy emin emax <<<"$(jq -rs '[.[].users.per_user] | transpose
            | map(map(.answers // 0) | add) as $a
            | ($a | add) as $s | ($a | map(. * .) | add) as $q
            | [(if $q > 0 then $s * $s / (($a | length) * $q) else 0 end), $s, $a[0], ($a[1:] | min), ($a[1:] | max)] | @tsv' "${lgs[@]}")"
        jl=$(jq -rs 'map(.users.jain * 1000 | round / 1000 | tostring) | join(" / ")' "${lgs[@]}")
        local hframes eframes
        hframes=$(jq -rs 'map(.users.per_user[0].frames // 0) | add' "${lgs[@]}")
        eframes=$(jq -rs '[.[].users.per_user[1:][] | .frames // 0] | add / 20 | floor' "${lgs[@]}")
        ans=$(jq -rs 'map(.answers_per_s) | add' "${lgs[@]}") sent=$(jq -rs 'map(.frames_per_s) | add' "${lgs[@]}")
        q50=$(jq -rs 'map(.server_ms.queue_wait.p50) | max' "${lgs[@]}") q99=$(jq -rs 'map(.server_ms.queue_wait.p99) | max' "${lgs[@]}")
        local dt c
        dt=$(snap_dt "$W" a-fair-$mode b-fair-$mode)
        for ((k = 0; k < nfe; k++)); do
            d=$(mdelta "$W/a-fair-$mode-fe$k.prom" "$W/b-fair-$mode-fe$k.prom" livevlm_frames_dropped_total reason=stale); drops=$((drops + ${d:-0}))
            d=$(mdelta "$W/a-fair-$mode-fe$k.prom" "$W/b-fair-$mode-fe$k.prom" livevlm_cluster_jobs_lost_total reason=stale); lost=$((lost + ${d:-0}))
            d=$(mdelta "$W/a-fair-$mode-fe$k.prom" "$W/b-fair-$mode-fe$k.prom" livevlm_requests_cancelled_total reason=preempted); pre=$((pre + ${d:-0}))
            c=$(snap_cpu_s "$W" a-fair-$mode b-fair-$mode "${fes[$k]}"); cpu="$cpu${cpu:+ / }$(pct "$c" "$dt")"
        done
        for k in wk1 wk2; do
            d=$(mdelta "$W/a-fair-$mode-$k.prom" "$W/b-fair-$mode-$k.prom" livevlm_worker_jobs_total outcome=stale); wstale=$((wstale + ${d:-0}))
            d=$(mdelta "$W/a-fair-$mode-$k.prom" "$W/b-fair-$mode-$k.prom" livevlm_worker_jobs_total outcome=answered); wans=$((wans + ${d:-0}))
            d=$(mdelta "$W/a-fair-$mode-$k.prom" "$W/b-fair-$mode-$k.prom" livevlm_worker_jobs_total outcome=cancelled); wcanc=$((wcanc + ${d:-0}))
            d=$(mdelta "$W/a-fair-$mode-$k.prom" "$W/b-fair-$mode-$k.prom" livevlm_worker_taken_total); wtaken=$((wtaken + ${d:-0}))
        done
        share() { calc %.2f "100*$1/($tot>0?$tot:1)"; }
        printf '| %s | **%s** | %s | %s / %s | %s (%s %%), of %s frames sent (%s) | %s | %s | %s | %s, %s; %s | %s / %s / %s / %s | %s / %s ms | %s |\n' \
            "$mode" "$(calc %.4f "${jain:-0}")" "$tot" "$emin" "$emax" "$heavy" "$(share "$heavy")" "$hframes" "$eframes" "$jl" \
            "$(calc %.1f "${ans:-0}")" "$(calc %.1f "${sent:-0}")" "$drops" "$lost" "$pre" "$wtaken" "$wans" "$wstale" "$wcanc" \
            "$(calc %.0f "${q50:-0}")" "$(calc %.0f "${q99:-0}")" "$cpu" >>"$md"
        echo "cluster fairness $mode: jain=$jain heavy=$heavy/$tot stale=$drops/$lost preempted=$pre workers taken=$wtaken answered=$wans stale=$wstale cancelled=$wcanc" >&2
        if [ "$mode" = two ]; then
            JAIN2=$jain
            ROW2="$(calc %.4f "${jain:-0}"); heavy user $(share "$heavy") %, equal users $(share "$emin")–$(share "$emax") %; $drops frames dropped stale"
        fi
    done
    [ -n "$JAIN2" ] || return 0
    local verdict
    verdict=$(awk -v j="${JAIN2:-0}" 'BEGIN { if (j >= 0.98) print "met"; else printf "missed by %.3f\n", 0.98 - j }')
    {
        echo
        echo "Jain's index over the 21 users' answer counts summed over the loadgens (as in section 2). Frontends: frames"
        echo "dropped because they were older than the max age (2 s here) when their turn came"
        echo "(livevlm_frames_dropped_total{reason=\"stale\"}), of them jobs that waited in Redis past their deadline"
        echo "(livevlm_cluster_jobs_lost_total{reason=\"stale\"}), and running requests the frontend's pipeline preempted"
        echo "(livevlm_requests_cancelled_total{reason=\"preempted\"}: a user over its share while another waited). Workers:"
        echo "livevlm_worker_taken_total and livevlm_worker_jobs_total by outcome (cancelled: taken back by the frontend)."
        echo "Target ≥ 0.98 with two frontends: **$verdict**."
        echo
    } >>"$md"
    echo "| cluster fairness | Jain ≥ 0.98 over users spread on 2 frontends (one user 10×, 5× overload) | $ROW2 | $verdict |" >>"$sum"
}

# =====================================================================================
# failover: kill -9 a fakevlm, a worker, a frontend
# =====================================================================================
part_failover() {
    src_i=135
    start_redis fo; local rdpid=$RD_PID
    local fv1 fv2 p1 p2 wka wkb wkbport fea feb urlb wsa wsb wargs
    local FV=(--slots 32 --ttft-ms 50 --token-ms 5 --tokens 20)
    start_fakevlm fo-fv1 "${FV[@]}"; fv1=$FV_PID p1=$FV_PORT
    start_fakevlm fo-fv2 "${FV[@]}"; fv2=$FV_PID p2=$FV_PORT
    wargs=(); wk_backend wargs fv1 $p1 16 ""; wk_backend wargs fv2 $p2 16 ""
    start_worker fo-wka "${wargs[@]}"; wka=$WK_PID
    start_worker fo-wkb "${wargs[@]}"; wkb=$WK_PID wkbport=$WK_PORT
    start_frontend fo-fea "${wargs[@]}"; fea=$LV_PID wsa=$LV_WS
    start_frontend fo-feb "${wargs[@]}"; feb=$LV_PID urlb=$LV_URL wsb=$LV_WS
    wait_cluster "$urlb" 2 2 || { echo "failover: the cluster did not come up" >&2; stop_all_of "$fea" "$feb" "$wka" "$wkb" "$fv1" "$fv2" "$rdpid"; return 1; }
    local dur=$((FO_PRE + 2 * FO_GAP + FO_AFTER))
    node bench/scenarios/cluster_pages.mjs run --fe "$wsa,$wsb" --token-file "$CL_TOKEN" --sessions "$FO_N" \
        --interval-ms "$FO_INTERVAL" --duration-s "$dur" --src-base 127.$src_i.0.2 --jpeg $JPEG \
        --ready "$W/fo.ready" --out "$W/fo.json" >"$W/fo-pages.txt" 2>&1 &
    local pgpid=$!
    BENCH_PIDS+=("$pgpid")
    src_i=$((src_i + 1))
    wait_file "$W/fo.ready" 70 "$pgpid" || { echo "failover: the pages never all answered: $(tail -2 "$W/fo-pages.txt")" >&2; stop_all_of "$pgpid" "$fea" "$feb" "$wka" "$wkb" "$fv1" "$fv2" "$rdpid"; return 1; }
    # a 100 ms series from the surviving frontend (b) and the surviving worker (b), for the
    # cluster's own view: t, workers, capacity, lost{worker_lost}, lost{stale}, fv1 inflight,
    # fv1 breaker state, answers (frontend b)
    : >"$W/fo.series"
    # one awk per sample: t workers capacity lost{worker_lost} lost{stale} fv1_inflight fv1_state answers
    # ("-" for what a scrape lacked)
    sample_line() {
        awk -v t="$(date +%s.%N)" '
            /^#/ { next }
            { n = $1; sub(/\{.*/, "", n); fe = (FILENAME == ARGV[1]) }
            fe && n == "livevlm_cluster_workers" { v[1] = $NF }
            fe && n == "livevlm_cluster_capacity" { v[2] = $NF }
            fe && n == "livevlm_cluster_jobs_lost_total" && index($1, "reason=\"worker_lost\"") { v[3] = $NF }
            fe && n == "livevlm_cluster_jobs_lost_total" && index($1, "reason=\"stale\"") { v[4] = $NF }
            !fe && n == "livevlm_backend_inflight" && index($1, "backend=\"fv1\"") { v[5] = $NF }
            !fe && n == "livevlm_backend_circuit_state" && index($1, "backend=\"fv1\"") { v[6] = $NF }
            fe && n == "livevlm_answers_total" { v[7] += $NF; seen7 = 1 }
            END { printf "%s", t; for (i = 1; i <= 7; i++) printf " %s", ((i in v) ? v[i] : "-"); print "" }' "$1" "$2"
    }
    (
        for ((i = 0; i < (dur + 3) * 10; i++)); do
            curl -s --max-time 1 -H "Authorization: Bearer $(cat "$CL_TOKEN")" "$urlb/metrics" >"$W/fo-s.prom" 2>/dev/null || : >"$W/fo-s.prom"
            if [ -n "$wkbport" ]; then curl -s --max-time 1 "http://127.0.0.1:$wkbport/metrics" >"$W/fo-w.prom" 2>/dev/null || : >"$W/fo-w.prom"; else : >"$W/fo-w.prom"; fi
            sample_line "$W/fo-s.prom" "$W/fo-w.prom" >>"$W/fo.series"
            sleep 0.08
            kill -0 $pgpid 2>/dev/null || break
        done
    ) &
    local smpid=$!
    BENCH_PIDS+=("$smpid")
    local ready t_steady t_fv t_wk t_fe
    ready=$(awk '{ print $1 }' "$W/fo.ready")
    sleep "$((FO_PRE / 2))"
    t_steady=$(date +%s.%N)
    sleep "$((FO_PRE - FO_PRE / 2))"
    t_fv=$(date +%s.%N); kill -KILL "$fv1"; wait "$fv1" 2>/dev/null || true
    sleep "$FO_GAP"
    t_wk=$(date +%s.%N); kill -KILL "$wka"; wait "$wka" 2>/dev/null || true
    sleep "$FO_GAP"
    t_fe=$(date +%s.%N); kill -KILL "$fea"; wait "$fea" 2>/dev/null || true
    wait $pgpid || true
    kill $smpid 2>/dev/null || true; wait $smpid 2>/dev/null || true
    stop_all_of "$feb" "$wkb" "$fv2" "$rdpid"
    [ -s "$W/fo.json" ] || { echo "failover: the pages wrote no result: $(tail -2 "$W/fo-pages.txt")" >&2; return 1; }
    node bench/scenarios/cluster_pages.mjs analyze "$W/fo.json" --at steady=$t_steady --at fakevlm=$t_fv \
        --at worker=$t_wk --at frontend=$t_fe >"$W/fo-an.json"
    local A="$W/fo-an.json"
    g() { jqn "$A" "$1"; }
    errs() { jq -r --arg e "$1" '.[$e].errors | to_entries | map("\(.key) \(.value)") | join(", ") | if . == "" then "none" else . end' "$A"; }
    # from the series: kill -> the frontend counts one worker; kill -> fv1 out of rotation on worker b
    local t_wgone t_lost t_fvout nlost
    t_wgone=$(awk -v k="$t_wk" '$1 >= k && $2 == "1" { printf "%.2f", $1 - k; exit }' "$W/fo.series")
    read -r t_lost nlost <<<"$(awk -v k="$t_wk" -v e="$t_fe" '$4 == "-" { next } $1 < k { base = $4 } $1 >= k && $1 < e && $4 > base + 0 { if (t == "") t = $1 - k; last = $4 } END { printf "%s %s\n", (t == "" ? "-" : sprintf("%.2f", t)), (last == "" ? 0 : last - base) }' "$W/fo.series")"
    t_fvout=$(awk -v k="$t_fv" '$1 >= k && $7 != "-" && $7 != 0 && $6 == "0" { printf "%.2f", $1 - k; exit }' "$W/fo.series")
    local nser
    nser=$(wc -l <"$W/fo.series")
    row() { # EVENT LABEL
        printf '| %s | %s / %s / **%s** ms | %s ms | %s | %s | %s |\n' "$2" "$(g ".$1.next_answer_ms.p50")" "$(g ".$1.next_answer_ms.p90")" \
            "$(g ".$1.next_answer_ms.max")" "$(g ".$1.longest_gap_ms")" "$(g ".$1.gaps_over_2_intervals")" \
            "$(g ".$1.never_answered_again")" "$(errs "$1")"
    }
    local fe_moved fe_res fe_lost fe_s50 fe_smax fe_a50 fe_amax
    fe_moved=$(g .frontend.moved) fe_res=$(g .frontend.resumed) fe_lost=$(g .frontend.lost)
    fe_s50=$(g .frontend.session_ms.p50) fe_smax=$(g .frontend.session_ms.max)
    fe_a50=$(g .frontend.moved_answer_ms.p50) fe_amax=$(g .frontend.moved_answer_ms.max)
    local fvmax wkmax femax v
    fvmax=$(g .fakevlm.next_answer_ms.max) wkmax=$(g .worker.next_answer_ms.max) femax=$(g .frontend.next_answer_ms.max)
    v=$(awk -v a="${fvmax:-99999}" -v b="${wkmax:-99999}" -v c="${femax:-99999}" -v r="${fe_res:-0}" -v m="${fe_moved:-0}" -v i="$FO_INTERVAL" 'BEGIN {
        why = ""
        if (a > 1000 + i) why = why sprintf("fakevlm %.1f s > %.1f s; ", a / 1000, (1000 + i) / 1000)
        if (b > 4000 + i) why = why sprintf("worker %.1f s > %.1f s; ", b / 1000, (4000 + i) / 1000)
        if (c > 1000 + i) why = why sprintf("frontend %.1f s > %.1f s; ", c / 1000, (1000 + i) / 1000)
        if (m == 0 || r < m) why = why sprintf("%d of %d moved sessions resumed; ", r, m)
        if (why == "") print "met"; else { sub(/; $/, "", why); print "missed: " why } }')
    {
        echo "### 8.4 Failover: kill -9 a fakevlm, then a worker, then a frontend"
        echo
        echo "Two fakevlm (32 slots, 150 ms), two workers each using both (--backend-max 16 each, default adaptive window),"
        echo "two frontends, $FO_N pages (bench/scenarios/cluster_pages.mjs, interval $FO_INTERVAL ms, half on each frontend) that"
        echo "reconnect at once to the other frontend when their socket closes and resume with their id and secret, as"
        echo "a page behind haproxy would (the real page waits 500 ms before its first reconnect: add that for a user's view)."
        echo "After every page had an answer: ${FO_PRE} s steady, kill -9 fakevlm 1, ${FO_GAP} s later kill -9 worker a, ${FO_GAP} s later"
        echo "kill -9 frontend a, ${FO_AFTER} s more. Per event, over the pages, until the next event: time from the kill to each page's"
        echo "next answer (p50 / p90 / max: with nothing killed the max is about one interval plus the service time), the"
        echo "longest gap between two answers of a page, pages with a gap over two intervals, and what the pages were told."
        echo
        echo "| event | kill → next answer p50 / p90 / max | longest gap | pages with gap > 2 intervals | never answered again | errors and drops the pages saw |"
        echo "|---|---|---|---|---|---|"
        row steady "nothing killed (reference, $(calc %.1f "$t_steady-$ready") s after ready)"
        row fakevlm "kill -9 fakevlm 1 (both workers lose half their backends)"
        row worker "kill -9 worker a"
        row frontend "kill -9 frontend a"
        echo
        echo "- fakevlm: worker b took fv1 out of rotation with nothing in flight there $( [ -n "$t_fvout" ] && echo "**$t_fvout s** after the kill" || echo "(not seen in worker b's /metrics$( [ -n "$wkbport" ] || echo ": this build's worker has no --port-file, so its /metrics was not read"))")."
        echo "- worker: frontend b counted one live worker **${t_wgone:-–} s** after the kill (the heartbeat rule: older than 3 s);"
        echo "  jobs it ended as worker_lost: $nlost (first $t_lost s after the kill)."
        echo "- frontend: $fe_moved pages lost their socket, **$fe_res resumed** on frontend b (resumed: true), $fe_lost had to start a"
        echo "  new session; kill → \`session\` on b p50 / max ${fe_s50:-–} / **${fe_smax:-–} ms**, kill → their first answer there ${fe_a50:-–} / **${fe_amax:-–} ms**"
        echo "  (most reconnect tries of one page: $(g .frontend.reconnect_tries_max))."
        echo "- Answers in all: $(g .total.answers); /metrics series: $nser samples from frontend b and worker b."
        echo
        echo "Target: every page answering again within one second plus an interval after a fakevlm or a frontend dies, within"
        echo "4 s plus an interval after a worker dies (3 s until its heartbeat is stale, then the next frame), every moved page"
        echo "resumed: **$v**."
        echo
    } >>"$md"
    echo "| cluster failover | pages answer again: fakevlm ≤ 1 s + interval, worker ≤ 4 s + interval, frontend ≤ 1 s + interval (resumed) | fakevlm ${fvmax:-–} ms, worker ${wkmax:-–} ms, frontend ${femax:-–} ms ($fe_res of $fe_moved resumed) | $v |" >>"$sum"
}

# Each part runs in a subshell with errexit on: a step that fails ends that part only (its
# processes are stopped by its own trap), and the next part still runs.
part_exit() {
    local p
    for p in "${BENCH_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    [ ${#LV_MISSING[@]} -eq 0 ] || echo "${LV_MISSING[*]}" >>"$W/missing"
}
for part in $PARTS; do
    case $part in
        scale | latency | fairness | failover) ;;
        *) echo "unknown part $part (have: scale latency fairness failover)" >&2; exit 2 ;;
    esac
    echo "=== cluster: $part ===" >&2
    rc=0
    (trap part_exit EXIT; set -e; part_$part) || rc=$?
    if [ $rc != 0 ]; then
        echo "cluster: part $part failed (exit $rc)" >&2
        { echo "### $part: no result (exit $rc; see the error output)"; echo; } >>"$md"
        echo "| cluster $part | | no result (exit $rc) | not measured |" >>"$sum"
    fi
done
if [ -s "$W/missing" ]; then
    echo "Note: this livevlm build lacks $(tr ' ' '\n' <"$W/missing" | sort -u | tr '\n' ' '); the run went ahead without them." >>"$md"
fi
cat "$md"
