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

wait_file() { # wait_file PATH SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done
    echo "timed out waiting for $1" >&2
    return 1
}

# start_fakevlm NAME ARGS... ; sets FV_PORT and FV_PID
start_fakevlm() {
    local name=$1; shift
    "$BUILD/fakevlm" --port 0 --port-file "$BENCH_TMP/$name.port" --quiet "$@" >"$BENCH_TMP/$name.log" 2>&1 &
    FV_PID=$!
    BENCH_PIDS+=("$FV_PID")
    wait_file "$BENCH_TMP/$name.port" 10
    FV_PORT=$(cat "$BENCH_TMP/$name.port")
}

# start_livevlm NAME ARGS... ; sets LV_PORT, LV_PID, LV_TOKEN_FILE
start_livevlm() {
    local name=$1; shift
    mkdir -p "$BENCH_TMP/$name.cfg"
    "$BUILD/livevlm" serve --host 127.0.0.1 --port 0 --port-file "$BENCH_TMP/$name.port" \
        --config-dir "$BENCH_TMP/$name.cfg" --no-detect --max-sessions 100000 \
        --max-sessions-per-ip 100000 --max-sockets-per-ip 100000 --log-level warn "$@" \
        >"$BENCH_TMP/$name.out" 2>"$BENCH_TMP/$name.log" &
    LV_PID=$!
    BENCH_PIDS+=("$LV_PID")
    wait_file "$BENCH_TMP/$name.port" 20
    LV_PORT=$(cat "$BENCH_TMP/$name.port")
    LV_TOKEN_FILE="$BENCH_TMP/$name.cfg/token"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }           # user+system, in clock ticks
cpu_seconds() { echo "$(cpu_ticks "$1") $CLK_TCK" | awk '{printf "%.3f", $1 / $2}'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
json_get() { node -e "const j=require(process.argv[1]); const v=process.argv[2].split('.').reduce((o,k)=>o==null?o:o[k], j); console.log(v==null?'':v)" "$1" "$2"; }
machine_line() {
    echo "$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r)"
}
