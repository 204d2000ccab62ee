#!/usr/bin/env bash
# bench/scenarios/micro.sh - per-stage micro-benchmarks of the frame path (bench/micro.c, issue 11):
# ns/op and allocations/op of WebSocket receive, frame header + JPEG check, request build + base64,
# SSE parse and the delta message, on the real functions, no server; then the kernel floor: the
# socket system calls one frame needs, on loopback TCP, and their sum per frame; about 15-20 s. Writes
# $BENCH_OUT/micro.md and .summary.   MICRO_REPS=15 bench/scenarios/micro.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
REPS=${MICRO_REPS:-9}
make -s BUILD="$BUILD" "$BUILD/micro" >&2
"$BUILD/micro" "$REPS" >"$OUT/micro.txt"
# RESULT lines: key, median ns/op, allocations/op
declare -A NS AL
while read -r _ key ns al; do NS[$key]=$ns AL[$key]=$al; done < <(grep '^RESULT ' "$OUT/micro.txt")
for k in ws_bin_16k ws_text accept frame_copy chatreq b64 sse_fakevlm sse_vllm sse_ollama sse_usage credit answer_start delta answer \
    kf_pair150 kf_read150 kf_writev43k_pair kf_read32k kf_epoll kf_null kf_floor_per_frame; do
    [ -n "${NS[$k]:-}" ] || { echo "micro: no result for $k" >&2; exit 1; }
done
us() { awk -v n="$1" 'BEGIN { printf (n >= 10000 ? "%.0f µs" : n >= 1000 ? "%.1f µs" : "%.0f ns"), (n >= 1000 ? n / 1000 : n) }'; }
al() { awk -v a="$1" 'BEGIN { printf "%g alloc%s", a, (a == 1 ? "" : "s") }'; }
{
    echo "## 11. Per-stage micro-benchmarks"
    echo
    echo "\`$BUILD/micro $REPS\` (bench/micro.c; its head comment says how a number is taken). Each row calls the functions"
    echo "the server calls, on one 640x480 camera frame (tests/data/frame-640x480.jpg, $(stat -c %s tests/data/frame-640x480.jpg) bytes) and on the"
    echo "chunk formats of tests/data/wire/ and fakevlm. Times are this thread's CPU time, so time other processes held"
    echo "the core is not counted; what they evict from the caches, and a busy sibling core, still are: on a shared"
    echo "machine medians move between runs, so compare a change before and after in one sitting (the min column"
    echo "is the least disturbed figure). The stages:"
    echo
    echo "1. **WS receive**: \`lv_ws_reader_feed\` on a masked client frame carrying the LVF1 header and the JPEG,"
    echo "   fed in 16 KiB pieces (one TLS record per read) and in one piece; unmasking, the copy into the"
    echo "   message buffer and the frame checks; and a small JSON text message (UTF-8 check included)."
    echo "2. **Frame accept**: what \`handle_frame\` (src/server/lv_engine.c) runs on a binary message:"
    echo "   \`lv_frame_parse\` + \`lv_jpeg_check\` with the default caps (headers only: turbojpeg reads the"
    echo "   markers, no pixels), then \`lv_frame_new\`, the copy of the JPEG into the pipeline's frame."
    echo "3. **Request build**: \`lv_chatreq_build\` of the whole chat/completions body (default prompt, image as"
    echo "   base64) into a body buffer sized as lv_chat does, and \`lv_b64_encode\` of the JPEG alone."
    echo "4. **SSE parse**: one event per op through a long-lived \`lv_sse_t\` whose callback calls"
    echo "   \`lv_chatresp_parse_chunk\` (as lv_chat.c's on_sse_data): fakevlm's token chunk (with \"usage\":null),"
    echo "   vLLM's and Ollama's token chunks, the final usage chunk; \"fast scanner\" means"
    echo "   \`priv_fast\` was set after the parse; otherwise jansson parsed it."
    echo "5. **Delta build**: the hot outgoing messages as src/server/lv_outmsg.c writes them for lv_engine.c, each"
    echo "   straight into the refcounted socket message (frame header included) and dropped: credit,"
    echo "   answer_start, delta (one token) and vlm_response (a 100-byte answer with its metrics)."
    echo "6. **Kernel floor**: the socket system calls one frame needs, alone, on a TCP connection over 127.0.0.1"
    echo "   (TCP_NODELAY, one thread driving both ends, wall-clock time): small write() and read(), the backend"
    echo "   request's writev(), the frame's 32 KB read(), epoll_wait(), and an empty system call for reference;"
    echo "   then their sum for one frame, weighted by the calls livevlm makes per frame. On loopback a write also"
    echo "   runs the receiver's TCP input, so writes cost more than through a NIC; wake-ups are not counted."
    echo
    grep -v '^RESULT' "$OUT/micro.txt"
} >"$OUT/micro.md"
{
    echo "| micro: WS receive (32 KB frame, 16 KiB reads; 38-byte text) | — | $(us "${NS[ws_bin_16k]}"), $(al "${AL[ws_bin_16k]}"); text $(us "${NS[ws_text]}") | measured (no target) |"
    echo "| micro: frame accept (LVF1 + JPEG header check; JPEG copy) | — | $(us "${NS[accept]}"), $(al "${AL[accept]}"); copy $(us "${NS[frame_copy]}") | measured (no target) |"
    echo "| micro: request build + base64 (32 KB JPEG) | — | $(us "${NS[chatreq]}"), $(al "${AL[chatreq]}"); base64 alone $(us "${NS[b64]}") | measured (no target) |"
    echo "| micro: SSE parse per chunk (fakevlm / vLLM / Ollama / usage) | — | $(us "${NS[sse_fakevlm]}") / $(us "${NS[sse_vllm]}") / $(us "${NS[sse_ollama]}") / $(us "${NS[sse_usage]}"); $(al "${AL[sse_fakevlm]}") / $(al "${AL[sse_usage]}") (token / usage) | measured (no target) |"
    echo "| micro: outgoing messages (credit / answer_start / delta / vlm_response) | — | $(us "${NS[credit]}") / $(us "${NS[answer_start]}") / $(us "${NS[delta]}") / $(us "${NS[answer]}"); $(al "${AL[delta]}") per delta | measured (no target) |"
    echo "| micro: kernel floor per frame (socket system calls alone, loopback; read 32 KB / write+read 150 B / writev 43 KB pair / read 150 B / epoll_wait / empty call) | ≤ 150 µs plain, ≤ 180 µs TLS (whole CPU per frame) | $(us "${NS[kf_floor_per_frame]}") ($(us "${NS[kf_read32k]}") / $(us "${NS[kf_pair150]}") / $(us "${NS[kf_writev43k_pair]}") / $(us "${NS[kf_read150]}") / $(us "${NS[kf_epoll]}") / $(us "${NS[kf_null]}")) | estimate: $(awk -v n="${NS[kf_floor_per_frame]}" 'BEGIN { printf "%.0f %%", n / 1500 }') of the plain target |"
} >"$OUT/micro.summary"
cat "$OUT/micro.summary"
