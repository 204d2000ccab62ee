# bench/lib.sh - shared helpers for the benchmark scripts: start fakevlm and livevlm on free
# loopback ports in a temp dir, read a process's CPU time and memory from /proc, stop everything.
# Every process started here is stopped by PID on exit.

BUILD=${LIVEVLM_BUILD:-build}
BENCH_TMP=$(mktemp -d /tmp/livevlm-bench.XXXXXX)
BENCH_PIDS=()
CLK_TCK=$(getconf CLK_TCK)

bench_cleanup() {
    for p in "${BENCH_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${BENCH_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    [ -n "${BENCH_KEEP:-}" ] || rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT

wait_file() { # wait_file PATH SECONDS [PID: give up when it exits]
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [ -s "$1" ] && return 0
        if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
            echo "process $3 exited before writing $1" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "timed out waiting for $1" >&2
    return 1
}

# start_fakevlm NAME ARGS... ; sets FV_PORT and FV_PID
start_fakevlm() {
    local name=$1; shift
    "$BUILD/fakevlm" --port 0 --port-file "$BENCH_TMP/$name.port" --quiet "$@" >"$BENCH_TMP/$name.log" 2>&1 &
    FV_PID=$!
    BENCH_PIDS+=("$FV_PID")
    wait_file "$BENCH_TMP/$name.port" 10 "$FV_PID" || { tail -3 "$BENCH_TMP/$name.log" >&2; return 1; }
    FV_PORT=$(cat "$BENCH_TMP/$name.port")
}

# start_livevlm NAME ARGS... ; sets LV_PORT, LV_PID, LV_TOKEN_FILE
# The server defaults to --auth accounts, which writes no token file; loadgen, the idle client and
# `scrape` all send the shared token from <config-dir>/token, so the bench asks for --auth token
# unless the caller names an --auth mode itself.
start_livevlm() {
    local name=$1; shift
    local a autharg=(--auth token)
    for a in "$@"; do case $a in --auth | --auth=*) autharg=() ;; esac; done
    mkdir -p "$BENCH_TMP/$name.cfg"
    "$BUILD/livevlm" serve --host 127.0.0.1 --port 0 --port-file "$BENCH_TMP/$name.port" \
        --config-dir "$BENCH_TMP/$name.cfg" --no-detect --max-sessions 100000 \
        --max-sessions-per-ip 100000 --max-sockets-per-ip 100000 --log-level warn "${autharg[@]}" "$@" \
        >"$BENCH_TMP/$name.out" 2>"$BENCH_TMP/$name.log" &
    LV_PID=$!
    BENCH_PIDS+=("$LV_PID")
    wait_file "$BENCH_TMP/$name.port" 20 "$LV_PID" || { tail -3 "$BENCH_TMP/$name.log" >&2; return 1; }
    LV_PORT=$(cat "$BENCH_TMP/$name.port")
    LV_TOKEN_FILE="$BENCH_TMP/$name.cfg/token"
    LV_SCHEME=https
    for a in "$@"; do [ "$a" = --no-tls ] && LV_SCHEME=http; done
    LV_URL="$LV_SCHEME://127.0.0.1:$LV_PORT"                       # for curl (-k: self-signed)
    LV_WS="${LV_SCHEME/http/ws}://127.0.0.1:$LV_PORT/ws"            # for loadgen
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }           # user+system, in clock ticks
cpu_seconds() { echo "$(cpu_ticks "$1") $CLK_TCK" | awk '{printf "%.3f", $1 / $2}'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
json_get() { node -e "const j=require(process.argv[1]); const v=process.argv[2].split('.').reduce((o,k)=>o==null?o:o[k], j); console.log(v==null?'':v)" "$1" "$2"; }
machine_line() {
    echo "$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r)"
}

# ---------- added for bench/scenarios ----------

# stop_pid PID: SIGTERM, wait up to 3 s, then SIGKILL (only processes this script started).
stop_pid() {
    local i
    kill -TERM "$1" 2>/dev/null || return 0
    for ((i = 0; i < 30; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Flags the server may not have (the features land in steps): lv_opt ARRAY FLAG VALUE appends
# "FLAG VALUE" to the named array when `livevlm serve --help` lists FLAG, else records FLAG in
# LV_MISSING so the scenario can say it ran without it.
LV_MISSING=()
lv_has() { # not `serve --help | grep -q`: with pipefail, grep quitting early makes the pipe fail
    local help
    help=$("$BUILD/livevlm" serve --help 2>&1 || true)
    [[ "$help" == *"$1"* ]]
}
lv_opt() {
    local -n _arr=$1
    if lv_has "$2"; then _arr+=("$2" "$3"); else
        case " ${LV_MISSING[*]} " in *" $2 "*) ;; *) LV_MISSING+=("$2") ;; esac
    fi
}
missing_note() { # one sentence for the report when some flags were not available
    [ ${#LV_MISSING[@]} -eq 0 ] || echo "Note: this livevlm build lacks ${LV_MISSING[*]}; the run went ahead without them."
}

# ---- /metrics (Prometheus text) ----
# scrape FILE: GET /metrics from the livevlm started last (empty file when it fails)
scrape() {
    curl -sk --max-time 3 -H "Authorization: Bearer $(cat "$LV_TOKEN_FILE")" "$LV_URL/metrics" >"$1" 2>/dev/null || : >"$1"
}
has_metrics() { grep -q '^livevlm_' "$1" 2>/dev/null; }
# msum FILE NAME [LABEL=VALUE]: sum of the series of metric NAME (optionally only those with that
# label value); empty output when the metric is absent
msum() {
    awk -v n="$2" -v sel="${3:-}" '
        BEGIN { if (sel != "") { split(sel, kv, "="); pat = kv[1] "=\"" kv[2] "\"" } }
        /^#/ { next }
        { name = $1; sub(/\{.*/, "", name) }
        name == n && (pat == "" || index($1, pat) > 0) { s += $NF; f = 1 }
        END { if (f) printf "%.10g\n", s }' "$1" 2>/dev/null
}
# mdelta BEFORE AFTER NAME [SEL]: change of msum between two scrapes (empty when absent)
mdelta() {
    local a b
    a=$(msum "$1" "$3" "${4:-}"); b=$(msum "$2" "$3" "${4:-}")
    [ -n "$b" ] || return 0
    awk -v a="${a:-0}" -v b="$b" 'BEGIN { printf "%.10g\n", b - a }'
}
# hist BEFORE AFTER NAME WHAT...: the histogram NAME over the interval between two scrapes
# (bucket counts subtracted; BEFORE may be /dev/null). WHAT: count, mean (ms), pQ (e.g. p50, p99:
# ms, linear inside the bucket as Prometheus' histogram_quantile does; ">X" when it falls past the
# last finite bound), bQ (the bucket that quantile falls in, "lo–hi" ms), le=S (fraction of samples <= S seconds, S a bucket bound). Prints the values
# space-separated; "-" when there are no samples.
hist() {
    local before=$1 after=$2 name=$3; shift 3
    awk -v n="$name" -v what="$*" '
        function fmt(ms) { return ms < 1 ? sprintf("%.3f", ms) : (ms < 100 ? sprintf("%.2f", ms) : sprintf("%.0f", ms)) }
        /^#/ { next }
        {
            nm = $1; sub(/\{.*/, "", nm)
            if (nm == n "_bucket") {
                if (!match($1, /le="[^"]*"/)) next
                le = substr($1, RSTART + 4, RLENGTH - 5)
                c[le] += (bf ? -1 : 1) * $NF
                if (!(le in seen)) { seen[le] = 1; les[++nl] = le }
            } else if (nm == n "_sum") sum += (bf ? -1 : 1) * $NF
        }
        END {
            # sort bounds numerically, +Inf last
            for (i = 1; i <= nl; i++) v[i] = (les[i] == "+Inf" ? 1e308 : les[i] + 0)
            for (i = 2; i <= nl; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) {
                t = v[j]; v[j] = v[j-1]; v[j-1] = t; t = les[j]; les[j] = les[j-1]; les[j-1] = t }
            total = nl ? c[les[nl]] : 0     # cumulative buckets: +Inf holds the count
            m = split(what, w, " "); out = ""
            for (k = 1; k <= m; k++) {
                r = "-"
                if (w[k] == "count") r = total + 0
                else if (total > 0 && w[k] == "mean") r = fmt(sum / total * 1000)
                else if (total > 0 && w[k] ~ /^le=/) {
                    b = substr(w[k], 4) + 0; r = "?"
                    for (i = 1; i <= nl; i++) if (v[i] == b) r = sprintf("%.4f", c[les[i]] / total)
                } else if (total > 0 && w[k] ~ /^b[0-9.]+$/) {
                    q = substr(w[k], 2) / 100; rank = q * total; lo = 0
                    for (i = 1; i <= nl; i++) {
                        if (c[les[i]] >= rank) { r = (v[i] == 1e308 ? ">" fmt(lo * 1000) : fmt(lo * 1000) "–" fmt(v[i] * 1000)); break }
                        lo = v[i]
                    }
                } else if (total > 0 && w[k] ~ /^p[0-9.]+$/) {
                    q = substr(w[k], 2) / 100; rank = q * total; lo = 0; prev = 0
                    for (i = 1; i <= nl; i++) {
                        if (c[les[i]] >= rank) {
                            if (v[i] == 1e308) { r = ">" fmt(lo * 1000); break }
                            inb = c[les[i]] - prev
                            x = inb > 0 ? lo + (v[i] - lo) * (rank - prev) / inb : v[i]
                            r = fmt(x * 1000); break
                        }
                        lo = v[i]; prev = c[les[i]]
                    }
                }
                out = out (k > 1 ? " " : "") r
            }
            print out
        }' bf=1 "$before" bf=0 "$after"
}

# ---- fakevlm /stats ----
fv_stats() { curl -s --max-time 3 "http://127.0.0.1:$1/stats" >"$2" 2>/dev/null || : >"$2"; }  # PORT FILE
jqn() { jq -r "$2 // empty" "$1" 2>/dev/null; }   # jqn FILE FILTER: a value or nothing

# ---- a measured window, snapshotted from outside ----
# snap DIR TAG PID...: timestamp, CPU ticks and RSS of each PID, a /metrics scrape, and fakevlm
# /stats for each port in FV_SNAP_PORTS
snap() {
    local dir=$1 tag=$2; shift 2
    date +%s.%N >"$dir/$tag.t"
    local p
    : >"$dir/$tag.cpu"
    for p in "$@"; do echo "$p $(cpu_ticks "$p" 2>/dev/null || echo 0) $(rss_kb "$p" 2>/dev/null || echo 0)" >>"$dir/$tag.cpu"; done
    [ -z "${LV_PID:-}" ] || scrape "$dir/$tag.prom"
    date +%s.%N >"$dir/$tag.ts"   # the scrape ended: the server counted somewhere in between
    for p in ${FV_SNAP_PORTS:-}; do fv_stats "$p" "$dir/$tag.fv$p.json"; done
}
snap_dt() { awk -v a="$(cat "$1/$2.t")" -v b="$(cat "$1/$3.t")" 'BEGIN { printf "%.3f", b - a }'; }  # DIR A B -> seconds
# snap_scrape_dt DIR A B -> seconds between the two scrapes' midpoints. A /metrics counter's growth
# covers this interval, not snap_dt's: on a loaded server one scrape can wait far longer than the
# other, so rates of scraped counters divide by this.
snap_scrape_dt() {
    awk -v a0="$(cat "$1/$2.t")" -v a1="$(cat "$1/$2.ts" 2>/dev/null || cat "$1/$2.t")" \
        -v b0="$(cat "$1/$3.t")" -v b1="$(cat "$1/$3.ts" 2>/dev/null || cat "$1/$3.t")" \
        'BEGIN { printf "%.3f", (b0 + b1) / 2 - (a0 + a1) / 2 }'
}
snap_cpu_s() { # DIR A B PID -> CPU seconds the PID used between the snapshots
    awk -v p="$4" -v hz="$CLK_TCK" 'FNR == 1 { f++ } $1 == p { t[f] = $2 } END { printf "%.3f", (t[2] - t[1]) / hz }' "$1/$2.cpu" "$1/$3.cpu"
}
snap_rss_kb() { awk -v p="$3" '$1 == p { print $3 }' "$1/$2.cpu"; }   # DIR TAG PID

# fmt helpers
calc() { awk "BEGIN { printf \"$1\", $2 }"; }   # calc FORMAT EXPR, e.g. calc %.1f "3/7"

# The overload used by the fairness and freshness scenarios: fakevlm with 10 slots × 500 ms
# (20 answers/s), 20 equal users with 2 sessions each and one user with 20 (10×), 60 sessions
# asking every 600 ms (100 frames/s offered: 5× the backend).
OVL_SLOTS=10 OVL_TTFT=100 OVL_TOK=20 OVL_TOKENS=20 OVL_INTERVAL=600
OVL_FV=(--slots $OVL_SLOTS --ttft-ms $OVL_TTFT --token-ms $OVL_TOK --tokens $OVL_TOKENS)
OVL_LG=(--sessions 60 --users 21 --heavy-user 1:10 --per-ip 20 --interval-ms $OVL_INTERVAL)
OVL_CAP=$(awk -v k=$OVL_SLOTS -v s=$((OVL_TTFT + OVL_TOKENS * OVL_TOK)) 'BEGIN { printf "%.1f", k * 1000 / s }')

# ---- CPU snapshots into the scenario's work directory $W (set by the scenario) ----
# snap_stat TAG: the machine's CPU counters; stat_busy A B: machine CPU use between two, % of all cores
snap_stat() { head -1 /proc/stat >"$W/$1.stat"; }
stat_busy() {
    awk 'FNR == 1 { f++; idle[f] = $5 + $6; t[f] = 0; for (i = 2; i <= NF; i++) t[f] += $i }
         END { dt = t[2] - t[1]; printf "%.0f", (dt > 0 ? 100 * (1 - (idle[2] - idle[1]) / dt) : 0) }' "$W/$1.stat" "$W/$2.stat"
}

# Per-thread CPU: livevlm is not one thread (libuv's pool, the database thread, and perhaps a
# backend I/O loop), so "X % of a core" of the process says nothing about whether one loop is
# full. snap_threads TAG PID writes "tid ticks comm" for each thread; thread_busiest A B PID DT
# prints "pct tid comm ran total": the busiest thread's % of a core between the snapshots, its
# name, how many threads used any CPU and how many there were. Fields are read after the last
# ')' of stat, so a comm with spaces cannot shift them (utime, stime are then fields 12, 13).
# The file path's next-to-last part is the thread id.
snap_threads() { # one awk over every thread's stat: few forks, so the snapshot stays short
    awk '{ c = "?"; if (match($0, /\(.*\)/)) c = substr($0, RSTART + 1, RLENGTH - 2); gsub(/ /, "_", c)
           n = split(FILENAME, p, "/"); line = $0; sub(/.*\) /, "", line); split(line, f, " ")
           print p[n - 1], f[12] + f[13], c }' /proc/$2/task/*/stat >"$W/$1.thr" 2>/dev/null || true
}
thread_busiest() {
    awk -v pid="$3" -v dt="$4" -v hz="$CLK_TCK" '
        FNR == 1 { f++ }
        f == 1 { a[$1] = $2; next }
        { d = $2 - ($1 in a ? a[$1] : 0); n++; if (d > 0) ran++
          if (d > best || bt == "") { best = d; bt = $1; bc = $3 } }
        END { if (bc == "") bc = "?"
              printf "%.0f %s %s %d %d\n", (dt > 0 ? 100 * best / hz / dt : 0), bt, (bt == pid ? "main" : bc), ran, n }' "$W/$1.thr" "$W/$2.thr"
}
