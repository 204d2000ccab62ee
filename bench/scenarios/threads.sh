#!/usr/bin/env bash
# bench/scenarios/threads.sh - one loop against the backend I/O thread (--backend-thread off / on,
# docs/internals/threads.md): the same sessions at 1 frame/s with a backend that is never the limit
# (fakevlm 1024 slots, window fixed), both settings run back to back at each step so the machine's
# state is the same for both. Per run: answers (of expected), client latency p50/p99 against the
# 150 ms floor, livevlm CPU per frame (all its threads), the main loop's and the backend thread's
# share of a core (/proc/PID/task), and the whole machine's CPU. Writes $BENCH_OUT/threads.md and
# .summary.
#
#   bench/scenarios/threads.sh
#   THR_MODES=tls THR_STEPS="1000 2000" THR_DUR=8 bench/scenarios/threads.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
JPEG=tests/data/frame-640x480.jpg
STEPS=${THR_STEPS:-"1000 2000"}
MODES=${THR_MODES:-"tls plain"}
DUR=${THR_DUR:-8}
WARM=${THR_WARM:-3}
FV_TTFT=50 FV_TOK=5 FV_TOKENS=20
FLOOR_MS=$((FV_TTFT + FV_TOKENS * FV_TOK))
md="$OUT/threads.md"
sum="$OUT/threads.summary"
W="$BENCH_TMP/thr"
mkdir -p "$W"


if ! lv_has --backend-thread; then
    { echo "## 12. One loop against the backend I/O thread"; echo; echo "This livevlm build has no --backend-thread: skipped."; } >"$md"
    : >"$sum"
    exit 0
fi

{
    echo "## 12. One loop against the backend I/O thread"
    echo
    echo "\`--backend-thread off\` (everything on the main loop) against \`on\` (backend transfers, SSE parsing and request"
    echo "bodies on their own thread; docs/internals/threads.md), back to back at each step. fakevlm: 1024 slots, ${FLOOR_MS} ms"
    echo "service floor; livevlm window fixed at 1024; ${WARM} s warm-up, ${DUR} s measured. The thread columns are each"
    echo "thread's share of one core over the window (the main loop is the process's first thread; the other"
    echo "livevlm threads are the database thread and libuv's pool). All processes share the $(nproc) cores."
    echo
    echo "| mode | sessions | backend thread | answers (of expected) | client p50 / p99 (floor ${FLOOR_MS} ms) | livevlm CPU/frame | main loop | backend thread | machine CPU |"
    echo "|---|---|---|---|---|---|---|---|---|"
} >"$md"

src_i=60
declare -A ROW
for mode in $MODES; do
    if [ "$mode" = tls ]; then tlsarg=(); else tlsarg=(--no-tls); fi
    start_fakevlm thr-fv-$mode --slots 1024 --ttft-ms $FV_TTFT --token-ms $FV_TOK --tokens $FV_TOKENS --queue-max 100000
    fvpid=$FV_PID fvport=$FV_PORT
    for n in $STEPS; do
        for th in off on; do
            tag=$mode-$n-$th
            ramp=$(awk -v n=$n -v t=$mode 'BEGIN { r = n / (t == "tls" ? 600 : 1000); printf "%d", r < 2 ? 2 : r + 0.999 }')
            start_livevlm thr-$tag "${tlsarg[@]}" --auth token --backend fake=http://127.0.0.1:$fvport/v1 \
                --backend-max fake=1024 --backend-adaptive fake=off --session-idle 5 --backend-thread $th
            sleep 1
            lgout="$W/lg-$tag.json"
            "$BUILD/loadgen" --url "$LV_WS" --token-file "$LV_TOKEN_FILE" --sessions $n --ramp-s $ramp \
                --warmup-s $WARM --duration-s $DUR --jpeg $JPEG --src-base "127.$src_i.0.2" --quiet --out "$lgout" \
                >"$W/lg-$tag.txt" 2>&1 &
            lgpid=$!
            BENCH_PIDS+=("$lgpid"); src_i=$((src_i + 1))
            sleep $((ramp + WARM)).4
            scrape "$W/a-$tag.prom"; snap_threads a-$tag $LV_PID; snap_stat a-$tag
            t0=$(date +%s.%N)
            sleep $((DUR - 1)).2
            scrape "$W/b-$tag.prom"; snap_threads b-$tag $LV_PID; snap_stat b-$tag
            t1=$(date +%s.%N)
            wait $lgpid || true
            stop_pid $LV_PID
            dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
            frames=$(mdelta "$W/a-$tag.prom" "$W/b-$tag.prom" livevlm_frames_total)
            # per thread ("tid ticks comm", lib.sh snap_threads): the main loop is the thread whose
            # id is the process id; the backend thread is named lv-backend
            read -r total main back <<<"$(awk -v hz=$CLK_TCK -v dt="$dt" -v pid=$LV_PID '
                FNR == NR { a[$1] = $2; next }
                { d = $2 - ($1 in a ? a[$1] : 0); tot += d; if ($3 == "lv-backend") b += d; else if ($1 == pid) m = d }
                END { printf "%.3f %.0f %.0f", tot / hz, 100 * m / hz / dt, 100 * b / hz / dt }' "$W/a-$tag.thr" "$W/b-$tag.thr")"
            busy=$(stat_busy a-$tag b-$tag)
            per=$(awk -v c="$total" -v f="${frames:-0}" 'BEGIN { printf "%.0f", (f > 0 ? c * 1e6 / f : 0) }')
            if [ -s "$lgout" ]; then
                ans=$(jqn "$lgout" .answers) exp=$(jqn "$lgout" .answers_expected)
                ratio=$(awk -v a="$ans" -v e="$exp" 'BEGIN { printf "%.1f", (e > 0 ? 100 * a / e : 0) }')
                l50=$(calc %.0f "$(jqn "$lgout" .latency_ms.total.p50)") l99=$(calc %.0f "$(jqn "$lgout" .latency_ms.total.p99)")
            else
                ratio="loadgen wrote no result" l50="-" l99="-"
            fi
            [ "$th" = on ] && bt="$back %" || bt="—"
            printf '| %s | %s | %s | %s %% | %s / %s ms | %s µs | %s %% | %s | %s %% |\n' \
                "$mode" "$n" "$th" "$ratio" "$l50" "$l99" "$per" "$main" "$bt" "$busy" >>"$md"
            echo "threads $tag answers=$ratio% lat=$l50/$l99 cpu/frame=${per}us main=$main% backend=$back% machine=$busy%" >&2
            ROW[$tag]="$ratio|$l99|$per|$main"
        done
    done
    stop_pid $fvpid
done

{
    echo
    echo "livevlm CPU/frame counts every thread of the process over livevlm_frames_total's growth; the hand-over between"
    echo "the threads costs some CPU of its own, so the figure to read is how far the main loop's share falls and what"
    echo "that does to answers and latency at the same load."
} >>"$md"

# summary: the largest step per mode, off vs on
{
    for mode in $MODES; do
        n=${STEPS##* }
        IFS='|' read -r r0 p0 c0 m0 <<<"${ROW[$mode-$n-off]:-|||}"
        IFS='|' read -r r1 p1 c1 m1 <<<"${ROW[$mode-$n-on]:-|||}"
        echo "| backend thread ($mode, $n sessions) | main loop below one core, answers and p99 no worse than one loop | off: main ${m0} %, ${r0} % answers, p99 ${p0} ms; on: main ${m1} %, ${r1} % answers, p99 ${p1} ms | $(awk -v m="${m1:-100}" -v r1="${r1:-0}" -v r0="${r0:-0}" 'BEGIN { print (m < 95 && r1 + 0.5 >= r0 ? "met" : "missed") }') |"
    done
} >"$sum"
cat "$md"
