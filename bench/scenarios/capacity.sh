#!/usr/bin/env bash
# bench/scenarios/capacity.sh - how many sessions at 1 frame/s one livevlm serves on this machine
# when the backend is never the limit (fakevlm with 1024 slots, livevlm window fixed at 1024).
# Steps N up (CAP_STEPS) while every step passes the strict check - all sessions connected, ≥ 98 %
# of the expected answers arrive, client p99 (loadgen: frame sent -> vlm_response) ≤ the backend's
# floor + 100 ms, the gateway's own p99 ≤ 1 ms, loadgen keeping up - and reports the largest step
# that passed; the first failing step (or the time budget per mode) ends the stepping. With and
# without TLS (CAP_MODES). Then RSS per idle session (hello, never start). Writes
# $BENCH_OUT/capacity.md and .summary.
#
#   bench/scenarios/capacity.sh                   # both modes, default steps
#   CAP_MODES=plain CAP_STEPS="250 500" CAP_DUR=5 bench/scenarios/capacity.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
JPEG=tests/data/frame-640x480.jpg
# the list goes past the 5,000 target so that a server that passes it shows how far it goes; the
# time budget ends it first on a slow machine (20,000 file descriptors: 16,000 is the last that fits)
STEPS=${CAP_STEPS:-"250 500 1000 1500 2000 2500 3000 4000 5000 6000 8000 10000 12000 16000"}
MODES=${CAP_MODES:-"tls plain"}
DUR=${CAP_DUR:-8}            # measured window per step, seconds
WARM=${CAP_WARM:-3}
BUDGET=${CAP_BUDGET_S:-240}  # per mode: no new step starts after this many seconds (250..5000 take ~160 s)
IDLE_N=${CAP_IDLE_N:-2000}   # idle sessions for the RSS-per-idle-session figure
CPU_N=${CAP_CPU_N:-1000}     # the step whose CPU per frame the summary reports (issue 11's target)
FV_TTFT=50 FV_TOK=5 FV_TOKENS=20
FLOOR_MS=$((FV_TTFT + FV_TOKENS * FV_TOK))   # fakevlm's service time: the latency floor
# the strict check (issue 11, DESIGN.md "Performance targets")
MIN_ANS_PCT=98
MAX_P99_MS=$((FLOOR_MS + 100))
CPU_TARGET_tls=180 CPU_TARGET_plain=150      # µs per frame at CPU_N sessions
md="$OUT/capacity.md"
sum="$OUT/capacity.summary"
W="$BENCH_TMP/cap"
mkdir -p "$W"

lvargs=(--session-idle 5)
lv_opt lvargs --backend-adaptive fake=off
ncpu=$(nproc)

# machine-wide CPU use between two snapshots, % of all cores

# sleep_until T0 EXPR: sleep until EXPR seconds after the $EPOCHREALTIME value T0 (not at all if past)
sleep_until() {
    local left
    left=$(awk -v t0="$1" -v now="$EPOCHREALTIME" "BEGIN { l = t0 + ($2) - now; printf \"%.3f\", (l > 0 ? l : 0) }")
    sleep "$left"
}


{
    echo "## 1. Capacity: sessions at 1 frame/s, backend never the limit"
    echo
    echo "fakevlm: 1024 slots, ${FV_TTFT} ms to first token + ${FV_TOKENS} tokens × ${FV_TOK} ms = ${FLOOR_MS} ms service floor."
    echo "livevlm: --backend-max fake=1024, adaptive window off. Frames: $JPEG ($(stat -c %s $JPEG) bytes)."
    echo "Each step: a fresh livevlm, N sessions ramped in, ${WARM} s warm-up, ${DUR} s measured from outside"
    echo "(/proc CPU and RSS, per thread too, /metrics before and after). All three processes share the ${ncpu} cores."
    echo
    echo "A step **passes** only when all N sessions connected (≥ 99 %), answers ≥ ${MIN_ANS_PCT} % of N × window × 1/s,"
    echo "client p99 (loadgen: frame sent → vlm_response) ≤ floor + 100 = ${MAX_P99_MS} ms, ≥ 99 % of frames took the"
    echo "gateway ≤ 1 ms (livevlm_gateway_seconds), and loadgen kept up (loop lag p99 ≤ 100 ms, ≤ 90 % of a core)."
    echo "The first step that fails ends the stepping; the verdict column names every check it failed."
    echo
    echo "| mode | sessions | answers/s (of expected) | livevlm CPU/frame (process, % of a core) | livevlm busiest thread (% of a core; threads that ran / all) | machine CPU (of all cores; other processes, % of a core) | livevlm RSS | RSS/active session | gateway p50 / p99 | client latency p50 / p99 | loadgen CPU/frame, loop lag p99 | fakevlm CPU | verdict |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} >"$md"

declare -A BEST_N BEST_CPU BEST_G99 BEST_LAT WHY IDLE_KB IDLE_OK CPU_AT CPU_AT_V GW_BAD GW_LAST ENDED
src_i=10

for mode in $MODES; do
    if [ "$mode" = tls ]; then tlsarg=(); else tlsarg=(--no-tls); fi
    mode_t0=$SECONDS
    BEST_N[$mode]=0 WHY[$mode]="every step in the list passed" ENDED[$mode]=list GW_BAD[$mode]="" GW_LAST[$mode]=""
    start_fakevlm fv-$mode --slots 1024 --ttft-ms $FV_TTFT --token-ms $FV_TOK --tokens $FV_TOKENS --queue-max 100000
    fvpid=$FV_PID fvport=$FV_PORT
    for n in $STEPS; do
        if ((SECONDS - mode_t0 > BUDGET)); then
            WHY[$mode]="time budget (${BUDGET} s per mode) spent before the ${n}-session step" ENDED[$mode]=budget
            break
        fi
        ramp=$(awk -v n=$n -v t=$mode 'BEGIN { r = n / (t == "tls" ? 600 : 1000); printf "%d", r < 2 ? 2 : r + 0.999 }')
        start_livevlm cap-$mode-$n "${tlsarg[@]}" --backend fake=http://127.0.0.1:$fvport/v1 --backend-max fake=1024 "${lvargs[@]}"
        sleep 1
        idle_kb=$(rss_kb $LV_PID)
        src="127.$src_i.0.2"; src_i=$((src_i + 1))
        lgout="$W/lg-$mode-$n.json"
        "$BUILD/loadgen" --url "$LV_WS" --token-file "$LV_TOKEN_FILE" --sessions $n --ramp-s $ramp \
            --warmup-s $WARM --duration-s $DUR --jpeg $JPEG --src-base $src --quiet --out "$lgout" \
            >"$W/lg-$mode-$n.txt" 2>&1 &
        lgpid=$!
        BENCH_PIDS+=("$lgpid")
        # snapshots at fixed times after loadgen started, 0.4 s inside both ends of its window: a
        # snapshot takes a while on a busy machine (the scrape waits on the loaded server), and a
        # "sleep DUR" after it would put the end snapshot past the window, where no frames come
        t_lg=$EPOCHREALTIME
        sleep_until "$t_lg" "$ramp + $WARM + 0.4"
        snap "$W" a-$mode-$n $LV_PID $fvpid $lgpid; snap_stat a-$mode-$n; snap_threads a-$mode-$n $LV_PID
        sleep_until "$t_lg" "$ramp + $WARM + $DUR - 0.4"
        snap "$W" b-$mode-$n $LV_PID $fvpid $lgpid; snap_stat b-$mode-$n; snap_threads b-$mode-$n $LV_PID
        wait $lgpid || true
        stop_pid $LV_PID
        A="$W/a-$mode-$n" B="$W/b-$mode-$n"
        dt=$(snap_dt "$W" a-$mode-$n b-$mode-$n)
        lvcpu=$(snap_cpu_s "$W" a-$mode-$n b-$mode-$n $LV_PID)
        fvcpu=$(snap_cpu_s "$W" a-$mode-$n b-$mode-$n $fvpid)
        busy=$(stat_busy a-$mode-$n b-$mode-$n)
        rss=$(snap_rss_kb "$W" b-$mode-$n $LV_PID)
        read -r thr_pct thr_tid thr_comm thr_ran thr_all <<<"$(thread_busiest a-$mode-$n b-$mode-$n $LV_PID "$dt")"
        if [ ! -s "$lgout" ]; then
            row="| $mode | $n | loadgen wrote no result ($(tail -1 "$W/lg-$mode-$n.txt")) | | | | | | | | | | fail: loadgen failed |"
            echo "$row" >>"$md"; WHY[$mode]="loadgen failed at $n sessions" ENDED[$mode]=fail; break
        fi
        conn=$(jqn "$lgout" .sessions.connected)
        ans=$(jqn "$lgout" .answers_per_s) ansn=$(jqn "$lgout" .answers)
        win=$(jqn "$lgout" .window_s) ival=$(jqn "$lgout" .config.interval_ms)
        # expected from the N sessions asked for, not loadgen's answers_expected (which counts only
        # the sessions that connected): a session that never connected is an answer that never came
        exp=$(awk -v n="$n" -v w="${win:-0}" -v i="${ival:-1000}" 'BEGIN { printf "%.1f", n * w * 1000 / i }')
        ratio=$(awk -v a="${ansn:-0}" -v e="$exp" 'BEGIN { printf "%.4f", (e > 0 ? a / e : 0) }')
        # CPU per frame as a ratio of rates: livevlm's CPU over the /proc snapshots (timed to the
        # instant) by loadgen's frames sent per second over its window (exact; every frame answers
        # a credit, so in the steady state it is the rate livevlm takes frames in). Not by
        # livevlm_frames_total's growth: a scrape of a loaded server can take most of a second,
        # which puts ±10 % into a counter's rate over a few seconds (kept in the log line).
        fps=$(jqn "$lgout" .frames_per_s)
        sdt=$(snap_scrape_dt "$W" a-$mode-$n b-$mode-$n)
        sfps=$(awk -v f="$(mdelta "$A.prom" "$B.prom" livevlm_frames_total)" -v d="$sdt" 'BEGIN { printf "%.1f", (d > 0 ? f / d : 0) }')
        per=$(awk -v c="$lvcpu" -v d="$dt" -v f="${fps:-0}" 'BEGIN { printf "%.0f", (f > 0 && d > 0 ? c / d * 1e6 / f : 0) }')
        read -r g50 g99 gle <<<"$(hist "$A.prom" "$B.prom" livevlm_gateway_seconds p50 p99 le=0.001)"
        l50=$(jqn "$lgout" .latency_ms.total.p50) l99=$(jqn "$lgout" .latency_ms.total.p99)
        lgper=$(jqn "$lgout" .loadgen.us_per_frame) lgpct=$(jqn "$lgout" .loadgen.cpu_percent)
        lag99=$(jqn "$lgout" .loadgen.loop_lag_ms.p99)
        fvpct=$(awk -v c="$fvcpu" -v d="$dt" 'BEGIN { printf "%.0f", 100 * c / d }')
        lvpct=$(awk -v c="$lvcpu" -v d="$dt" 'BEGIN { printf "%.0f", 100 * c / d }')
        # what the rest of the machine (not livevlm, loadgen or fakevlm) used, % of a core: on a
        # shared machine this is what makes a step's numbers worse than the server's own
        others=$(awk -v m="$busy" -v nc="$ncpu" -v lv="$lvpct" -v lg="${lgpct:-0}" -v fv="$fvpct" \
            'BEGIN { o = m * nc - lv - lg - fv; printf "%.0f", (o > 0 ? o : 0) }')
        per_sess=$(awk -v r="$rss" -v i="$idle_kb" -v n="$n" 'BEGIN { printf "%.1f", (r - i) / n }')

        # the strict check: every failed part is named, not only the first
        fails=()
        [ "${conn:-0}" -ge $((n * 99 / 100)) ] || fails+=("only ${conn:-0} of $n sessions connected")
        awk -v r="$ratio" -v m=$MIN_ANS_PCT 'BEGIN { exit !(r * 100 < m) }' &&
            fails+=("answers $(calc %.1f "$ratio*100") % < ${MIN_ANS_PCT} %")
        if [ -z "$l99" ]; then fails+=("no client latency (no answers)")
        elif awk -v l="$l99" -v m=$MAX_P99_MS 'BEGIN { exit !(l > m) }'; then fails+=("client p99 $(calc %.0f "$l99") ms > ${MAX_P99_MS} ms"); fi
        if [ -z "$gle" ] || [ "$gle" = - ] || [ "$gle" = "?" ]; then fails+=("gateway p99 not measured (no /metrics)")
        elif awk -v f="$gle" 'BEGIN { exit !(f < 0.99) }'; then fails+=("gateway p99 > 1 ms (only $(calc %.2f "$gle*100") % of frames ≤ 1 ms)"); fi
        awk -v l="${lag99:-0}" -v p="${lgpct:-0}" 'BEGIN { exit !(l > 100 || p > 90) }' &&
            fails+=("loadgen cannot keep up (loop lag p99 $(calc %.0f "${lag99:-0}") ms, $(calc %.0f "${lgpct:-0}") % of a core)")
        verdict=pass
        [ ${#fails[@]} -eq 0 ] || verdict="fail: $(IFS=';'; echo "${fails[*]}" | sed 's/;/; /g')"

        printf '| %s | %s | %s (%s %%) | %s µs (%s %%) | %s %% (%s; %s / %s) | %s %% (others %s %%) | %s MiB | %s KiB | %s / %s ms | %s / %s ms | %s µs, %s ms | %s %% | %s |\n' \
            "$mode" "$n" "$(calc %.0f "${ans:-0}")" "$(calc %.1f "$ratio*100")" "$per" "$lvpct" \
            "$thr_pct" "$([ "$thr_comm" = main ] && echo "main thread" || echo "thread $thr_tid $thr_comm")" "$thr_ran" "$thr_all" \
            "$busy" "$others" "$((rss / 1024))" "$per_sess" \
            "${g50:--}" "${g99:--}" "$(calc %.1f "${l50:-0}")" "$(calc %.1f "${l99:-0}")" "$(calc %.0f "${lgper:-0}")" "$(calc %.1f "${lag99:-0}")" \
            "$fvpct" "$verdict" >>"$md"
        echo "capacity $mode n=$n answers=${ratio} frames/s=$fps (livevlm_frames_total: $sfps) cpu/frame=${per}us lv=${lvpct}% thread=${thr_pct}% busy=${busy}% gw=$g50/$g99 lat=$l50/$l99 $verdict" >&2

        if [ "$n" = "$CPU_N" ]; then CPU_AT[$mode]=$per CPU_AT_V[$mode]=$([ "$verdict" = pass ] && echo passed || echo "failed: ${verdict#fail: }"); fi
        GW_LAST[$mode]="${g99:--} ms at $n"
        # the gateway row of the summary: the first step whose gateway p99 was over 1 ms or unmeasured
        if [ -z "${GW_BAD[$mode]}" ] && { [ -z "$gle" ] || [ "$gle" = - ] || [ "$gle" = "?" ] ||
            awk -v f="$gle" 'BEGIN { exit !(f < 0.99) }'; }; then GW_BAD[$mode]=$n; fi
        if [ "$verdict" != pass ]; then
            # why: which process (or thread) ran out of CPU at this step. A process's % of a core
            # can pass 100 once it runs several threads; a loop is full when its thread is.
            cause=$(awk -v lv="$lvpct" -v th="$thr_pct" -v tn="$([ "$thr_comm" = main ] && echo "its main (event-loop) thread" || echo "its thread $thr_tid ($thr_comm)")" \
                -v ran="$thr_ran" -v m="$busy" -v lg="$(calc %.0f "${lgpct:-0}")" -v fv="$fvpct" -v nc="$ncpu" -v ot="$others" 'BEGIN {
                who = sprintf("livevlm %d %% of a core over %d threads that ran, loadgen %d %%, fakevlm %d %%, other processes %d %%", lv, ran, lg, fv, ot)
                if (th >= 95) printf "livevlm is thread-bound: %s is at %d %% of a core (%s; machine %d %% of %d cores)", tn, th, who, m, nc
                else if (m >= 95) printf "the machine is saturated: all %d cores %d %% busy (%s; livevlm busiest thread %d %%)", nc, m, who, th
                else if (lg >= 90) printf "loadgen at %d %% of a core", lg
                else printf "no process or thread saturated (%s; livevlm busiest thread %d %%; machine %d %%)", who, th, m }')
            WHY[$mode]="the ${n}-session step failed (${verdict#fail: }); $cause" ENDED[$mode]=fail
            break
        fi
        BEST_N[$mode]=$n BEST_CPU[$mode]=$per BEST_G99[$mode]="$g50 / $g99"
        BEST_LAT[$mode]="$(calc %.0f "$l50") / $(calc %.0f "$l99")"
    done
    stop_pid $fvpid
done

# ---- where livevlm's CPU goes: a perf profile of one extra step (not of the measured ones) ----
PROFILE_N=${CAP_PROFILE_N:-1000}
PROFILE_WHY=
profile_md="$W/profile.md"
: >"$profile_md"
if [ "$PROFILE_N" != 0 ] && command -v perf >/dev/null; then
    pmode=${MODES%% *}
    if [ "$pmode" = tls ]; then tlsarg=(); else tlsarg=(--no-tls); fi
    start_fakevlm fvp --slots 1024 --ttft-ms $FV_TTFT --token-ms $FV_TOK --tokens $FV_TOKENS --queue-max 100000
    start_livevlm prof "${tlsarg[@]}" --backend fake=http://127.0.0.1:$FV_PORT/v1 --backend-max fake=1024 "${lvargs[@]}"
    "$BUILD/loadgen" --url "$LV_WS" --token-file "$LV_TOKEN_FILE" --sessions $PROFILE_N --ramp-s 2 --warmup-s 2 \
        --duration-s 6 --jpeg $JPEG --src-base 127.$src_i.0.2 --quiet --out "$W/lg-prof.json" >/dev/null 2>&1 &
    lgpid=$!
    BENCH_PIDS+=("$lgpid"); src_i=$((src_i + 1))
    sleep 4.5
    if perf record -F 499 -g -o "$W/perf.data" -p $LV_PID -- sleep 4 >/dev/null 2>"$W/perf.err"; then
        dsos=$(perf report -i "$W/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null |
            awk '/^ +[0-9.]+%/ { n++; if (n <= 7) s = s (s ? ", " : "") $2 " " $1 } END { print s }')
        syms=$(perf report -i "$W/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
            awk '/^ +[0-9.]+%/ && $2 == "livevlm" { n++; if (n <= 6) s = s (s ? ", " : "") $4 " " $1 } END { print s }')
        PROFILE_WHY="perf: ${dsos:-?}"
        echo "Where livevlm's CPU goes ($pmode, $PROFILE_N sessions, perf, 4 s, separate run): by library: ${dsos:-?}." >>"$profile_md"
        echo "Hottest functions of livevlm itself: ${syms:-?}." >>"$profile_md"
    else
        echo "(perf could not profile here: $(tail -1 "$W/perf.err"))" >>"$profile_md"
    fi
    wait $lgpid || true
    stop_pid $LV_PID
    stop_pid $FV_PID
fi

# ---- RSS per idle session: hello, never start ----
cat >"$W/idle.py" <<'EOF'
# idle.py HOST PORT TLS TOKEN_FILE N SRC_BASE READY_FILE: open N WebSocket sessions that send
# hello and never start; write how many succeeded to READY_FILE; hold them until killed (max 120 s).
import base64, ipaddress, os, socket, ssl, sys, time
host, port, tls, tokf, n, src, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7]
token = open(tokf).read().strip()
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def ws_text(payload):
    m = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + m + bytes(b ^ m[i % 4] for i, b in enumerate(payload))
addr = int(ipaddress.IPv4Address(src)); held = []; ok = 0; err = ""
for i in range(n):
    while (addr & 0xff) in (0, 255): addr += 1
    a = str(ipaddress.IPv4Address(addr))
    if i % 20 == 19: addr += 1
    try:
        s = socket.socket(); s.settimeout(5); s.bind((a, 0)); s.connect((host, port))
        if tls: s = ctx.wrap_socket(s)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: livevlm.v1\r\n"
                   "Authorization: Bearer %s\r\n\r\n" % (host, port, key, token)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(4096)
            if not d: raise OSError("closed during upgrade")
            buf += d
        if b" 101 " not in buf.split(b"\r\n")[0]: raise OSError(buf.split(b"\r\n")[0].decode())
        s.sendall(ws_text(b'{"type":"hello"}'))
        rest = buf.split(b"\r\n\r\n", 1)[1]
        while b'"session"' not in rest:
            d = s.recv(65536)
            if not d: raise OSError("closed after hello")
            rest += d
        held.append(s); ok += 1
    except OSError as e:
        err = str(e)
open(ready, "w").write("%d %s\n" % (ok, err))
deadline = time.time() + 120
while time.time() < deadline: time.sleep(1)
EOF
idle_row() { # mode -> sets IDLE_KB[mode]
    local mode=$1 tlsarg=() tls=0
    if [ "$mode" = tls ]; then tls=1; else tlsarg=(--no-tls); fi
    start_fakevlm fvi-$mode --slots 4
    start_livevlm idle-$mode "${tlsarg[@]}" --backend fake=http://127.0.0.1:$FV_PORT/v1 "${lvargs[@]}"
    sleep 1.5
    local r0 s0 r1 s1 okn
    r0=$(rss_kb $LV_PID); s0=$(awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat)
    python3 "$W/idle.py" 127.0.0.1 "$LV_PORT" $tls "$LV_TOKEN_FILE" "$IDLE_N" "127.$src_i.0.2" "$W/idle-$mode.ready" &
    local pypid=$!
    BENCH_PIDS+=("$pypid"); src_i=$((src_i + 1))
    wait_file "$W/idle-$mode.ready" 90 || true
    sleep 1.5
    r1=$(rss_kb $LV_PID); s1=$(awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat)
    okn=$(awk '{ print $1 }' "$W/idle-$mode.ready" 2>/dev/null || echo 0)
    stop_pid $pypid
    stop_pid $LV_PID
    stop_pid $FV_PID
    local per
    local kern tot
    per=$(awk -v a="$r0" -v b="$r1" -v n="${okn:-0}" 'BEGIN { printf "%.1f", (n > 0 ? (b - a) / n : 0) }')
    kern=$(awk -v a="${s0:-0}" -v b="${s1:-0}" -v n="${okn:-0}" 'BEGIN { printf "%.1f", (n > 0 ? (b - a) * 4 / n : 0) }')
    tot=$(calc %.1f "$per+$kern")
    IDLE_KB[$mode]=$tot IDLE_OK[$mode]=1
    # /proc/net/sockstat counts the whole machine: when other processes closed sockets meanwhile the
    # growth is negative and says nothing about these sessions; then only the RSS part is known
    if awk -v k="$kern" 'BEGIN { exit !(k < 0) }'; then
        IDLE_KB[$mode]=$per IDLE_OK[$mode]=0
        kern="$kern (machine-wide count fell: other processes; not counted)" tot="$per (RSS only)"
    fi
    echo "| $mode | $((r0 / 1024)) MiB | ${okn:-0} of $IDLE_N | $((r1 / 1024)) MiB | $per KiB | $kern KiB | **$tot KiB** |" >>"$W/idle.md"
}
: >"$W/idle.md"
for mode in $MODES; do idle_row $mode; done

{
    echo
    for mode in $MODES; do
        case ${ENDED[$mode]} in
            fail) echo -n "- **$mode**: stepping stopped: ${WHY[$mode]}." ;;
            budget) echo -n "- **$mode**: every step run passed; stepping stopped: ${WHY[$mode]}, so the capacity is at least the last step." ;;
            *) echo -n "- **$mode**: ${WHY[$mode]} (the capacity is at least the last step)." ;;
        esac
        echo " Largest step that passed every check: **${BEST_N[$mode]} sessions**$( [ "${BEST_N[$mode]}" = 0 ] || echo ", livevlm ${BEST_CPU[$mode]} µs CPU per frame, gateway p50 / p99 ${BEST_G99[$mode]} ms, client latency p50 / p99 ${BEST_LAT[$mode]} ms against the ${FLOOR_MS} ms floor")."
    done
    echo
    [ ! -s "$profile_md" ] || { cat "$profile_md"; echo; }
    echo "Memory per idle session ($IDLE_N WebSocket sessions that sent hello and never started): livevlm's RSS growth / N,"
    echo "plus the kernel's TCP memory growth (/proc/net/sockstat) / N. The kernel figure covers both ends of each loopback"
    echo "connection (the client's too), so the total is an upper bound for \"an idle session including its socket\":"
    echo
    echo "| mode | RSS before | sessions opened | RSS after | RSS per session | kernel TCP memory per connection (both ends) | total per idle session |"
    echo "|---|---|---|---|---|---|---|"
    cat "$W/idle.md"
    echo
    echo "Gateway p50/p99 come from livevlm_gateway_seconds (bucket bounds 50, 100, 200, 500 µs, 1, 2 ms …; linear"
    echo "inside a bucket), over the measured window only. Client latency is loadgen's frame sent → vlm_response, which"
    echo "includes fakevlm's ${FLOOR_MS} ms and loadgen's own wake-up coalescing (up to 1 ms). livevlm_gateway_seconds counts"
    echo "the gateway's work per frame, not the time a frame's events wait for the loop: once a livevlm loop thread nears a"
    echo "full core (the busiest-thread column), client latency grows well past the floor while the gateway histogram stays"
    echo "flat; that is why the pass check bounds the client's p99 too. The process column can pass 100 % once livevlm's"
    echo "work runs on several threads; the busiest-thread column is the one that says whether a loop is full."
    missing_note
} >>"$md"

# summary rows: | scenario | target | measured | verdict |, issue 11's targets
{
    for mode in $MODES; do
        n=${BEST_N[$mode]}
        ended=""
        [ "${ENDED[$mode]}" = fail ] || ended=" (no step failed: ${WHY[$mode]})"
        if [ $mode = tls ]; then
            v="met"; [ "$n" -ge 5000 ] || v="missed by $((5000 - n)) sessions: ${WHY[$mode]}"
            echo "| capacity (tls) | ≥ 5000 sessions at 1 frame/s with TLS, ≥ ${MIN_ANS_PCT} % answers, client p99 ≤ ${MAX_P99_MS} ms (floor + 100) | $n sessions passed$ended | $v |"
        else
            echo "| capacity (plain, for comparison) | — (the target is TLS's) | $n sessions passed$ended | —: ${WHY[$mode]} |"
        fi
        tv=CPU_TARGET_$mode; t=${!tv}
        c=${CPU_AT[$mode]:-}
        if [ -n "$c" ]; then
            v="met"; [ "$c" -le "$t" ] || v="missed by $((c - t)) µs ($(calc %.2f "$c/$t")×)${PROFILE_WHY:+: $PROFILE_WHY}"
            echo "| livevlm CPU per frame ($mode, at $CPU_N sessions) | ≤ $t µs | $c µs (that step ${CPU_AT_V[$mode]}) | $v |"
        else
            echo "| livevlm CPU per frame ($mode, at $CPU_N sessions) | ≤ $t µs | no $CPU_N-session step ran | not measured |"
        fi
        if [ -z "${GW_LAST[$mode]}" ]; then
            echo "| gateway p99 ($mode) | ≤ 1 ms | no step measured | not measured |"
        elif [ -n "${GW_BAD[$mode]}" ]; then
            echo "| gateway p99 ($mode) | ≤ 1 ms | over 1 ms (or unmeasured) from ${GW_BAD[$mode]} sessions; ${GW_LAST[$mode]} | missed from ${GW_BAD[$mode]} sessions |"
        else
            echo "| gateway p99 ($mode) | ≤ 1 ms | ≤ 1 ms at every step run (${GW_LAST[$mode]} sessions, the last) | met |"
        fi
        k=${IDLE_KB[$mode]}
        if [ $mode = tls ]; then
            v="met"; awk -v k="$k" 'BEGIN { exit !(k > 62.5) }' && v="missed by $(calc %.1f "$k-62.5") KiB"
            if [ "${IDLE_OK[$mode]}" = 1 ]; then
                echo "| idle session incl. socket (tls) | ≤ 64 KB (62.5 KiB) | $k KiB | $v |"
            else # RSS alone over the target is a miss; under it proves nothing about the socket
                [ "$v" != met ] || v="not measured (the socket's kernel memory could not be told apart on this busy machine)"
                echo "| idle session incl. socket (tls) | ≤ 64 KB (62.5 KiB) | $k KiB RSS; kernel TCP memory not measurable | $v |"
            fi
        else
            echo "| idle session incl. socket (plain, for comparison) | — (the target is TLS's) | $k KiB | — |"
        fi
    done
} >"$sum"
cat "$md"
