/* micro.c - per-stage micro-benchmarks of the frame path (issue 11), in ns per operation, so that a
 * regression shows which stage it is in: WebSocket receive, frame header + JPEG check, request
 * build + base64, SSE parse, outgoing message build. Each stage calls the real functions the
 * server calls (no copies of production code) on realistic inputs: tests/data/frame-640x480.jpg
 * behind an LVF1 header in a masked client frame, the chunk formats of tests/data/wire/ and of
 * fakevlm (tools/fakevlm/fv_job.c emit_word).
 *
 * How a number is taken: one op is timed in batches on the thread's CPU clock (see now_ns); the
 * batch size is grown until one batch takes at least BATCH_MIN_NS, then REPS batches are timed,
 * each giving ns/op = batch time / batch size; the table shows the min, median and max of those
 * REPS values (a wide spread means another process disturbed the caches or the core's clock).
 * Allocations are counted by the malloc/calloc/realloc defined below (they forward to glibc's own
 * __libc_* functions, so libraries' allocations count too: jansson, OpenSSL, turbojpeg) over the
 * timed batches, and divided by the ops. Every op checks its result, so a stage that stops
 * working fails the run (exit 1) instead of timing an error path.
 *
 * A second group, the kernel floor (section 6 below), times the socket system calls one frame needs
 * on a loopback TCP connection, on the wall clock, and estimates their sum per frame.
 *
 * Usage: micro [reps (3..51, default 9)]; prints a Markdown table per group and, for
 * bench/scenarios/micro.sh, one "RESULT key median_ns allocs_per_op" line per row (and
 * "RESULT kf_floor_per_frame ns 0.00"). About 5-10 s per group. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "lv_b64.h"
#include "lv_buf.h"
#include "lv_chatreq.h"
#include "lv_chatresp.h"
#include "lv_common.h"
#include "lv_config.h"
#include "lv_frame.h"
#include "lv_jpeg.h"
#include "lv_json_str.h"
#include "lv_net.h"
#include "lv_outmsg.h"
#include "lv_session.h"
#include "lv_settings.h"
#include "lv_sse.h"
#include "lv_wsframe.h"

#define BATCH_MIN_NS 20000000ull /* one timed batch lasts at least 20 ms: clock reads are noise */
#define REPS_DEFAULT 9
#define REPS_MAX 51
#define MAX_ROWS 24
#define JPEG_PATH "tests/data/frame-640x480.jpg"
#define JPEG_MAX (4u << 20)       /* the server's default --max-frame-bytes */
#define WS_TEXT_MAX 65536         /* lv_wsconn.c's MAX_TEXT_BYTES */
#define READ_PIECE 16384          /* one TLS record: what one SSL_read hands the reader at most */
#define SSE_LINE_MAX (256 * 1024) /* lv_chat.h's LV_CHAT_SSE_LINE_MAX */
#define MODEL "Qwen/Qwen2.5-VL-7B-Instruct"

/* ---------- allocation counting ----------
 * glibc 2.34 removed __malloc_hook; defining malloc and friends in the executable interposes them
 * for every shared library too, and glibc exports its own implementation as __libc_*. memalign and
 * posix_memalign are not wrapped (not counted): their blocks are still glibc's, so free() below
 * releases them correctly. The program is single-threaded, so a plain counter is enough. */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static unsigned long long allocs; /* malloc + calloc + realloc calls */

void *malloc(size_t n)
{
    allocs++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    allocs++;
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    allocs++;
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}

/* ---------- the harness ---------- */

typedef int (*op_fn)(void *ctx); /* one operation: 0, or non-zero when its result was wrong */

typedef struct {
    const char *key;   /* short name for RESULT lines */
    const char *stage; /* table label */
    const char *note;  /* e.g. "fast scanner" */
    op_fn op;
    void *ctx;
    size_t bytes;                   /* bytes one op processes, for MB/s; 0: not meaningful */
    uint64_t batch;                 /* ops per timed batch */
    double ns[REPS_MAX];            /* ns/op of each repetition */
    unsigned long long allocs, ops; /* over the timed batches */
} row_t;

static row_t rows[MAX_ROWS];
static size_t n_rows;
static int reps = REPS_DEFAULT;

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Batches are timed on this thread's CPU clock, not the wall clock: on a machine shared with
 * builds and tests the wall clock also counts the time another process held the core, which
 * would be charged to whichever stage was running. (Caches that process evicted still cost.) */
static uint64_t now_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* Time n ops; returns the elapsed ns. Exits when an op failed: a benchmark of a failing path
 * would mislead. */
static uint64_t time_batch(const row_t *r, uint64_t n)
{
    int bad = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        bad |= r->op(r->ctx);
    uint64_t dt = now_ns() - t0;
    if (bad) {
        fprintf(stderr, "micro: %s failed\n", r->stage);
        exit(1);
    }
    return dt ? dt : 1;
}

/* Add a row: warm it up (caches, lazily made state such as turbojpeg's handle and the SSE
 * parser's buffers) and grow its batch until one batch lasts BATCH_MIN_NS. */
static void add_row(const char *key, const char *stage, const char *note, op_fn op, void *ctx, size_t bytes)
{
    if (n_rows == MAX_ROWS) {
        fprintf(stderr, "micro: more than %d rows\n", MAX_ROWS);
        exit(1);
    }
    row_t *r = &rows[n_rows++];
    *r = (row_t){.key = key, .stage = stage, .note = note, .op = op, .ctx = ctx, .bytes = bytes, .batch = 1};
    uint64_t dt;
    time_batch(r, 16);
    while ((dt = time_batch(r, r->batch)) < BATCH_MIN_NS)
        r->batch = dt < BATCH_MIN_NS / 16 ? r->batch * 16 : r->batch * BATCH_MIN_NS * 5 / 4 / dt + 1;
}

/* The repetitions go round the rows (rep 1 of every row, then rep 2, ...), so that a stretch of
 * heavy load elsewhere spreads over all the rows instead of shifting one row's median. */
static void run_rows(void)
{
    for (int i = 0; i < reps; i++) {
        for (size_t k = 0; k < n_rows; k++) {
            row_t *r = &rows[k];
            unsigned long long a0 = allocs;
            r->ns[i] = (double)time_batch(r, r->batch) / (double)r->batch;
            r->allocs += allocs - a0;
            r->ops += r->batch;
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---------- inputs ---------- */

/* The whole file into a malloc'd buffer; NULL on failure. */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *p = NULL;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) || (*len = (size_t)ftell(f)) == 0 || *len > JPEG_MAX || fseek(f, 0, SEEK_SET))
        goto out;
    p = malloc(*len);
    if (p && fread(p, 1, *len, f) != *len) {
        free(p);
        p = NULL;
    }
out:
    fclose(f);
    return p;
}

/* A masked client frame (RFC 6455 section 5.2) of opcode op carrying p[0..n) into out (at least
 * n + 14 bytes); returns its length. Test data: the server side only reads frames. */
static size_t client_frame(uint8_t *out, int op, const void *p, size_t n)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t h = 0;
    out[h++] = (uint8_t)(0x80 | op);
    if (n < 126) {
        out[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    memcpy(out + h, key, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        out[h + i] = ((const uint8_t *)p)[i] ^ key[i % 4];
    return h + n;
}

/* ---------- 1. WebSocket receive ---------- */

typedef struct {
    lv_ws_reader_t rd;
    uint8_t *wire; /* the frame as read from the socket; the reader unmasks it in place */
    size_t wire_len;
    const uint8_t *pristine; /* text frame: the masked bytes, copied back before each op */
    size_t piece;            /* bytes handed to one feed call at most (read size) */
    size_t want_len;         /* the message's expected payload length */
} ws_ctx_t;

/* Feed the frame in pieces of x->piece bytes, as reads deliver it, until its MESSAGE event.
 * Binary: unmasking XORs in place, so the same bytes fed again are masked again (and the next
 * message is the masked bytes): the reader's work is the same, and no copy enters the timing.
 * Text must stay valid UTF-8, so its masked bytes are copied back first (a few ns, included). */
static int op_ws_feed(void *ctx)
{
    ws_ctx_t *x = ctx;
    size_t pos = 0, got = 0;
    if (x->pristine)
        memcpy(x->wire, x->pristine, x->wire_len);
    while (pos < x->wire_len) {
        size_t len = LV_MIN(x->piece, x->wire_len - pos), used;
        lv_ws_event_t ev;
        lv_ws_reader_feed(&x->rd, x->wire + pos, len, &used, &ev);
        if (ev.kind == LV_WS_EV_MESSAGE)
            got = ev.len;
        else if (ev.kind != LV_WS_EV_NONE)
            return 1;
        pos += used;
    }
    return got == x->want_len ? 0 : 1;
}

/* ---------- 2. frame header + JPEG check (lv_engine.c handle_frame) ---------- */

typedef struct {
    const unsigned char *msg; /* the binary message: LVF1 header + JPEG */
    size_t len;
    lv_jpeg_caps_t caps;
} accept_ctx_t;

static int op_accept(void *ctx)
{
    accept_ctx_t *x = ctx;
    lv_frame_hdr_t hdr;
    lv_jpeg_info_t info;
    if (lv_frame_parse(x->msg, x->len, &hdr) != 0)
        return 1;
    return lv_jpeg_check(hdr.jpeg, hdr.jpeg_len, &x->caps, &info, NULL) != 0 || info.width != 640;
}

/* handle_frame's next step: the JPEG copied into a refcounted frame for the pipeline. */
static int op_frame_copy(void *ctx)
{
    accept_ctx_t *x = ctx;
    lv_frame_t *f = lv_frame_new(x->msg + LV_FRAME_HDR_LEN, x->len - LV_FRAME_HDR_LEN);
    if (!f)
        return 1;
    lv_frame_unref(f);
    return 0;
}

/* ---------- 3. request build + base64 (lv_chat.c lv_chat_start) ---------- */

typedef struct {
    lv_chatreq_t req;
    lv_buf_t out; /* base64 alone: reused, as the cost of the encode is what is asked */
} req_ctx_t;

/* What lv_chat_start does: a body buffer sized for the request, the build, and (when the request
 * is over) the free. */
static int op_chatreq(void *ctx)
{
    req_ctx_t *x = ctx;
    lv_buf_t body;
    lv_buf_init(&body, lv_b64_encoded_len(x->req.jpeg_len) + 6 * (strlen(x->req.model) + strlen(x->req.prompt)) + 1024);
    int rc = lv_chatreq_build(&body, &x->req);
    lv_buf_free(&body);
    return rc != 0;
}

static int op_b64(void *ctx)
{
    req_ctx_t *x = ctx;
    lv_buf_reset(&x->out);
    return lv_b64_encode(&x->out, x->req.jpeg, x->req.jpeg_len) != 0;
}

/* ---------- 4. SSE parse (lv_chat.c on_write -> on_sse_data) ---------- */

typedef struct {
    lv_sse_t sse; /* one parser for the whole stream, as lv_chat keeps one per request */
    lv_chatresp_t resp;
    const char *event; /* "data: {...}\n\n" */
    size_t len;
    int events, fast; /* in the last op: events seen, how many the fast scanner took */
    int want_usage;
} sse_ctx_t;

static int on_sse_data(void *ud, const char *data, size_t len)
{
    sse_ctx_t *x = ud;
    int rc = lv_chatresp_parse_chunk(&x->resp, data, len, SSE_LINE_MAX);
    x->events++;
    x->fast += x->resp.priv_fast != NULL; /* the fast scanner keeps its decoded text there */
    if (!rc && x->want_usage != x->resp.has_usage)
        rc = LV_EPARSE;
    if (!rc && !x->want_usage && x->resp.content_len == 0)
        rc = LV_EPARSE;
    lv_chatresp_clear(&x->resp);
    return rc;
}

static int op_sse(void *ctx)
{
    sse_ctx_t *x = ctx;
    x->events = x->fast = 0;
    return lv_sse_feed(&x->sse, x->event, x->len, on_sse_data, x) != 0 || x->events != 1;
}

/* The chunk parser alone on the event's payload (between "data: " and the blank line), so that
 * the SSE row can be split into framing and JSON. */
static int op_chunk(void *ctx)
{
    sse_ctx_t *x = ctx;
    x->events = x->fast = 0;
    return on_sse_data(x, x->event + 6, x->len - 8) != 0;
}

/* The events timed, one per backend format. */
static const struct {
    const char *key, *stage, *event;
    int usage;
} chunks[] = {
    /* tools/fakevlm/fv_job.c emit_word with include_usage (what bench/run's backends send) */
    {"sse_fakevlm", "4. SSE + chunk: fakevlm token",
     "data: {\"id\":\"chatcmpl-fakevlm-1234\",\"object\":\"chat.completion.chunk\",\"created\":1749547231,"
     "\"model\":\"" MODEL "\",\"system_fingerprint\":\"fakevlm-0.1.0\",\"choices\":[{\"index\":0,\"delta\":"
     "{\"content\":\" kitchen\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
     0},
    /* tests/data/wire/vllm-stream.txt, second event */
    {"sse_vllm", "4. SSE + chunk: vLLM token",
     "data: {\"id\":\"chatcmpl-6c0e1f4f2d8a4b0f9d4a3e8b7c1d2e5f\",\"object\":\"chat.completion.chunk\","
     "\"created\":1749547231,\"model\":\"Qwen/Qwen2.5-VL-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":"
     "{\"content\":\"The\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
     0},
    /* tests/data/wire/ollama-stream.txt, second event */
    {"sse_ollama", "4. SSE + chunk: Ollama token",
     "data: {\"id\":\"chatcmpl-611\",\"object\":\"chat.completion.chunk\",\"created\":1749546847,"
     "\"model\":\"gemma3:4b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":"
     "{\"role\":\"assistant\",\"content\":\" red\"},\"finish_reason\":null}]}\n\n",
     0},
    /* tests/data/wire/vllm-stream.txt, the usage chunk before [DONE] */
    {"sse_usage", "4. SSE + chunk: final usage chunk",
     "data: {\"id\":\"chatcmpl-6c0e1f4f2d8a4b0f9d4a3e8b7c1d2e5f\",\"object\":\"chat.completion.chunk\","
     "\"created\":1749547231,\"model\":\"Qwen/Qwen2.5-VL-7B-Instruct\",\"choices\":[],\"usage\":"
     "{\"prompt_tokens\":1347,\"total_tokens\":1363,\"completion_tokens\":16}}\n\n",
     1},
};

/* ---------- 5. outgoing messages (lv_outmsg.c, what lv_engine.c sends) ---------- */

typedef struct {
    lv_job_t job;
    lv_session_t *session;
    lv_dispatch_result_t result;
} out_ctx_t;

/* Each builds the message as the socket gets it (frame header and payload in one lv_msg_t) and
 * drops it, as lv_engine.c's conn_send_msg does once lv_conn_send holds its own reference. */
static int sent(lv_msg_t *m)
{
    lv_msg_unref(m);
    return m == NULL;
}

static int op_credit(void *ctx)
{
    return sent(lv_outmsg_credit(4242));
}

static int op_delta(void *ctx)
{
    return sent(lv_outmsg_delta(123456, " kitchen", 8));
}

static int op_answer_start(void *ctx)
{
    out_ctx_t *x = ctx;
    return sent(lv_outmsg_answer_start(&x->job));
}

static int op_answer(void *ctx)
{
    out_ctx_t *x = ctx;
    return sent(lv_outmsg_answer(x->session, &x->job, &x->result));
}

/* ---------- the report ---------- */

static void cpu_model(char *out, size_t size)
{
    char line[256];
    FILE *f = fopen("/proc/cpuinfo", "r");
    snprintf(out, size, "unknown CPU");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(out, size, "%s", colon + 2);
            out[strcspn(out, "\n")] = '\0';
            break;
        }
    }
    if (f)
        fclose(f);
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static double loadavg_1min(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* The median of a row's nrep repetitions; sorts them (min first, max last) in place. */
static double row_median(row_t *r, int nrep)
{
    qsort(r->ns, (size_t)nrep, sizeof r->ns[0], cmp_double);
    return r->ns[nrep / 2];
}

/* The table of rows rs[0..n), each with nrep repetitions, and their RESULT lines. */
static void print_table(row_t *rs, size_t n, int nrep, const char *first_column)
{
    printf("| %s | ns/op min | ns/op median | ns/op max | MB/s | allocs/op | note |\n", first_column);
    printf("|---|---:|---:|---:|---:|---:|---|\n");
    for (size_t i = 0; i < n; i++) {
        row_t *r = &rs[i];
        double med = row_median(r, nrep);
        char mb[32] = "—";
        if (r->bytes)
            snprintf(mb, sizeof mb, "%.0f", (double)r->bytes / med * 1000.0); /* bytes/ns * 1000 = MB/s */
        printf("| %s | %.0f | %.0f | %.0f | %s | %.2f | %s |\n", r->stage, r->ns[0], med, r->ns[nrep - 1], mb,
               (double)r->allocs / (double)r->ops, r->note ? r->note : "");
    }
    for (size_t i = 0; i < n; i++)
        printf("RESULT %s %.0f %.2f\n", rs[i].key, rs[i].ns[nrep / 2], (double)rs[i].allocs / (double)rs[i].ops);
}

/* ---------- 6. kernel floor: the socket system calls one frame needs (loopback TCP) ----------
 * livevlm spends most of its CPU per frame in the kernel (bench/RESULTS.md: [kernel.kallsyms] is
 * the largest share of its perf samples). These rows time the system calls one frame needs, with no
 * user-space work around them, on a real TCP connection over 127.0.0.1 made here (socket, bind,
 * listen, connect, accept; TCP_NODELAY on both ends; blocking, with KF_TIMEOUT_S send and receive
 * timeouts so that no call can hang). Everything runs on this one thread: the "peer" is the other
 * end of the pair, driven between or after the timed calls, so no thread switch and no wake-up is
 * in a number (in the gateway, a write to a peer asleep in epoll_wait also pays for waking it).
 *
 * Unlike the rows above these are timed on CLOCK_MONOTONIC: on loopback a write runs the
 * receiver's TCP input (and the ACK coming back) in softirq on the writer's CPU, which a kernel
 * with IRQ time accounting does not charge to the thread's CPU clock. So other load on the machine
 * shows here too: the repetitions go round the rows, and the median of KF_REPS is the figure. A
 * repetition runs rounds until it holds KF_MIN_NS of timed calls (or until KF_MAX_WALL_NS of wall
 * time passed, untimed parts included); a round's untimed part (the peer filling or draining the
 * connection) is left out of the time. */
#define KF_REPS 5
#define KF_MIN_NS 200000000ull      /* timed calls per repetition */
#define KF_MAX_WALL_NS 600000000ull /* one repetition's wall time at most */
#define KF_WARM_NS 20000000ull      /* warm-up per row: socket buffers grow, caches fill */
#define KF_TIMEOUT_S 2
#define KF_SMALL 150  /* an SSE chunk or a small outgoing message */
#define KF_BURST 32   /* small calls per round: 4.8 KB, far inside the default receive buffer */
#define KF_HEAD 300   /* the backend request's head ... */
#define KF_BODY 43000 /* ... and its body: JSON with the base64 JPEG */
#define KF_BIG 32768  /* one frame as the front door receives it */
#define KF_RBUF 65536 /* the read buffer */

typedef struct {
    int a, b;         /* the timed pair: a is livevlm's end (connect), b its peer (accept) */
    int ep_a, ep_b;   /* a second pair: ep_b holds one unread byte, for epoll_wait */
    int ep;           /* an epoll set holding ep_b, level-triggered EPOLLIN */
    uint8_t small[KF_SMALL], head[KF_HEAD], burst[KF_BURST * KF_SMALL];
    uint8_t *body, *big, *rbuf;
} kf_ctx_t;

typedef struct {
    uint64_t ns, ops; /* timed ns, calls timed */
    uint64_t reads;   /* read() calls a multi-read op needed (pair and 32 KB rows) */
} kf_tally_t;

typedef int (*kf_round_fn)(kf_ctx_t *x, kf_tally_t *t); /* 0, or non-zero when a call went wrong */

static uint64_t mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

/* Read from fd until exactly n bytes came; counts the read() calls into *reads. Bounded by n and
 * by the socket's receive timeout. */
static int kf_drain(kf_ctx_t *x, int fd, size_t n, uint64_t *reads)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, x->rbuf, KF_RBUF);
        if (r <= 0)
            return 1;
        got += (size_t)r;
        ++*reads;
    }
    return got != n;
}

/* 1. writes of 150 bytes, the writer's side; the peer drains the burst afterwards, untimed */
static int kf_write_small(kf_ctx_t *x, kf_tally_t *t)
{
    uint64_t unused = 0, t0 = mono_ns();
    for (int i = 0; i < KF_BURST; i++)
        if (write(x->a, x->small, KF_SMALL) != KF_SMALL)
            return 1;
    t->ns += mono_ns() - t0;
    t->ops += KF_BURST;
    return kf_drain(x, x->b, (size_t)KF_BURST * KF_SMALL, &unused);
}

/* 1. the pair: write 150 bytes on a, the peer reads them on b with its 64 KB buffer */
static int kf_pair_small(kf_ctx_t *x, kf_tally_t *t)
{
    uint64_t t0 = mono_ns();
    for (int i = 0; i < KF_BURST; i++)
        if (write(x->a, x->small, KF_SMALL) != KF_SMALL || read(x->b, x->rbuf, KF_RBUF) != KF_SMALL)
            return 1;
    t->ns += mono_ns() - t0;
    t->ops += KF_BURST;
    t->reads += KF_BURST;
    return 0;
}

/* 2. reads of 150 bytes already waiting: the peer queues a burst in one write (untimed: 32 writes
 * would double the group's time, and the receiver merges small segments into one buffer anyway),
 * then a reads it one message per call (a 150-byte buffer, since the whole burst is waiting) */
static int kf_read_small(kf_ctx_t *x, kf_tally_t *t)
{
    if (write(x->b, x->burst, sizeof x->burst) != (ssize_t)sizeof x->burst)
        return 1;
    uint64_t t0 = mono_ns();
    for (int i = 0; i < KF_BURST; i++)
        if (read(x->a, x->rbuf, KF_SMALL) != KF_SMALL)
            return 1;
    t->ns += mono_ns() - t0;
    t->ops += KF_BURST;
    return 0;
}

/* 3. writev of the backend request (head + body), the writer's side; the peer drains, untimed */
static int kf_writev(kf_ctx_t *x, kf_tally_t *t)
{
    struct iovec iov[2] = {{x->head, KF_HEAD}, {x->body, KF_BODY}};
    uint64_t unused = 0, t0 = mono_ns();
    if (writev(x->a, iov, 2) != KF_HEAD + KF_BODY)
        return 1;
    t->ns += mono_ns() - t0;
    t->ops++;
    return kf_drain(x, x->b, KF_HEAD + KF_BODY, &unused);
}

/* 3. the pair: the writev and the peer's reads until all of it arrived */
static int kf_writev_pair(kf_ctx_t *x, kf_tally_t *t)
{
    struct iovec iov[2] = {{x->head, KF_HEAD}, {x->body, KF_BODY}};
    uint64_t t0 = mono_ns();
    if (writev(x->a, iov, 2) != KF_HEAD + KF_BODY || kf_drain(x, x->b, KF_HEAD + KF_BODY, &t->reads))
        return 1;
    t->ns += mono_ns() - t0;
    t->ops++;
    return 0;
}

/* 4. a read of 32 KB already waiting (the peer wrote it, untimed), 64 KB buffer; should the
 * kernel hand it over in pieces, the further reads are timed too and counted */
static int kf_read_big(kf_ctx_t *x, kf_tally_t *t)
{
    if (write(x->b, x->big, KF_BIG) != KF_BIG)
        return 1;
    uint64_t t0 = mono_ns();
    if (kf_drain(x, x->a, KF_BIG, &t->reads))
        return 1;
    t->ns += mono_ns() - t0;
    t->ops++;
    return 0;
}

/* 5. epoll_wait on a set whose one descriptor is readable, 0 timeout */
static int kf_epoll(kf_ctx_t *x, kf_tally_t *t)
{
    struct epoll_event ev[4];
    uint64_t t0 = mono_ns();
    for (int i = 0; i < KF_BURST; i++)
        if (epoll_wait(x->ep, ev, 4, 0) != 1)
            return 1;
    t->ns += mono_ns() - t0;
    t->ops += KF_BURST;
    return 0;
}

/* the bare cost of entering and leaving the kernel, to read the others against */
static int kf_null(kf_ctx_t *x, kf_tally_t *t)
{
    uint64_t t0 = mono_ns();
    for (int i = 0; i < KF_BURST; i++)
        if (getppid() <= 0)
            return 1;
    t->ns += mono_ns() - t0;
    t->ops += KF_BURST;
    return 0;
}

/* A connected TCP pair over 127.0.0.1: *client from connect, *server from accept; both with
 * TCP_NODELAY and the send/receive timeouts. 0, or -1 with nothing left open. */
static int kf_pair(int *client, int *server)
{
    int l = -1, c = -1, s = -1, one = 1, rc = -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    struct timeval tv = {.tv_sec = KF_TIMEOUT_S};
    if ((l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) || /* bounds accept() */
        bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 1) || getsockname(l, (struct sockaddr *)&sa, &sl))
        goto out;
    if ((c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) || /* bounds connect() */
        connect(c, (struct sockaddr *)&sa, sizeof sa) || (s = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
        goto out;
    int fds[2] = {c, s};
    for (int i = 0; i < 2; i++)
        if (setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ||
            setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) ||
            setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv))
            goto out;
    *client = c;
    *server = s;
    c = s = -1;
    rc = 0;
out:
    if (rc)
        perror("micro: loopback pair");
    if (l >= 0)
        close(l);
    if (c >= 0)
        close(c);
    if (s >= 0)
        close(s);
    return rc;
}

/* One repetition of fn: rounds until min_ns of timed calls or 3 * min_ns of wall time. */
static int kf_rep(kf_ctx_t *x, kf_round_fn fn, uint64_t min_ns, kf_tally_t *t)
{
    uint64_t w0 = mono_ns();
    *t = (kf_tally_t){0};
    while (t->ns < min_ns && mono_ns() - w0 < LV_MIN(3 * min_ns, KF_MAX_WALL_NS))
        if (fn(x, t))
            return 1;
    return t->ops == 0;
}

/* The kernel-floor rows, their table and the floor-per-frame estimate; 0, or 1 when a socket
 * call failed. */
static int kernel_floor(void)
{
    enum { W150, PAIR150, R150, WV43K, WV43K_PAIR, R32K, EPOLL, NULLSYS, N };
    static const struct {
        const char *key, *stage, *note;
        kf_round_fn fn;
        size_t bytes;
    } defs[N] = {
        {"kf_write150", "6. write() 150 B, writer alone",
         "peer read()s each burst of 32 afterwards, untimed; includes the peer's TCP input (loopback)",
         kf_write_small, KF_SMALL},
        {"kf_pair150", "6. write() 150 B + peer read() (pair)", "same thread; peer's read() with a 64 KB buffer",
         kf_pair_small, KF_SMALL},
        {"kf_read150", "6. read() 150 B already waiting",
         "peer wrote 32 messages before in one write, untimed; 150-byte buffer, one message per call", kf_read_small,
         KF_SMALL},
        {"kf_writev43k", "6. writev() 300 B head + 43 KB body, writer alone",
         "peer drains it afterwards, untimed; includes the peer's TCP input (loopback)", kf_writev, KF_HEAD + KF_BODY},
        {"kf_writev43k_pair", "6. writev() 43 KB + peer read()s until all arrived (pair)",
         "same thread; peer's reads with a 64 KB buffer", kf_writev_pair, KF_HEAD + KF_BODY},
        {"kf_read32k", "6. read() 32 KB already waiting, 64 KB buffer", "peer wrote it before, untimed", kf_read_big,
         KF_BIG},
        {"kf_epoll", "6. epoll_wait(), 1 ready socket, 0 timeout",
         "level-triggered EPOLLIN on a socket with 1 unread byte; 1 descriptor in the set", kf_epoll, 0},
        {"kf_null", "6. getppid(): a system call that does nothing",
         "entry and exit alone (mitigations, virtualisation); not in the floor", kf_null, 0},
    };
    static char notes[N][256];
    row_t kr[N];
    uint64_t reads[N] = {0};
    kf_ctx_t x = {.a = -1, .b = -1, .ep_a = -1, .ep_b = -1, .ep = -1};
    kf_tally_t t;
    uint64_t t_group = mono_ns();
    int rc = 1;
    struct epoll_event ev = {.events = EPOLLIN};

    x.body = malloc(KF_BODY);
    x.big = malloc(KF_BIG);
    x.rbuf = malloc(KF_RBUF);
    if (!x.body || !x.big || !x.rbuf || kf_pair(&x.a, &x.b) || kf_pair(&x.ep_a, &x.ep_b))
        goto out;
    memset(x.small, 'd', sizeof x.small);
    memset(x.head, 'h', sizeof x.head);
    memset(x.burst, 'd', sizeof x.burst);
    memset(x.body, 'b', KF_BODY);
    memset(x.big, 'f', KF_BIG);
    ev.data.fd = x.ep_b;
    if ((x.ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(x.ep, EPOLL_CTL_ADD, x.ep_b, &ev) ||
        write(x.ep_a, "x", 1) != 1) {
        perror("micro: epoll set");
        goto out;
    }

    for (int k = 0; k < N; k++) {
        kr[k] = (row_t){.key = defs[k].key, .stage = defs[k].stage, .note = defs[k].note, .bytes = defs[k].bytes};
        if (kf_rep(&x, defs[k].fn, KF_WARM_NS, &t))
            goto fail;
    }
    /* round the rows, as run_rows does */
    for (int i = 0; i < KF_REPS; i++) {
        for (int k = 0; k < N; k++) {
            unsigned long long a0 = allocs;
            if (kf_rep(&x, defs[k].fn, k == NULLSYS ? KF_MIN_NS / 4 : KF_MIN_NS, &t)) /* a reference only */
                goto fail;
            kr[k].ns[i] = (double)t.ns / (double)t.ops;
            kr[k].allocs += allocs - a0;
            kr[k].ops += t.ops;
            reads[k] += t.reads;
        }
    }
    for (int k = 0; k < N; k++) {
        if (!reads[k])
            continue;
        snprintf(notes[k], sizeof notes[k], "%s; %.2f read() calls per op", defs[k].note,
                 (double)reads[k] / (double)kr[k].ops);
        kr[k].note = notes[k];
    }

    printf("\nKernel floor: the socket system calls one frame needs, on real TCP connections over 127.0.0.1 "
           "(TCP_NODELAY, blocking), all on one thread, no user-space work. Wall time (CLOCK_MONOTONIC), so other "
           "load on the machine counts; %d repetitions of at least %.0f ms of timed calls each (getppid: a quarter); "
           "min, median and max of their ns per call. On loopback a write() also runs the receiver's TCP input "
           "(and its ACK) in the writer's context, so a write costs more here than through a real NIC; a \"pair\" "
           "row is both ends' CPU. Nobody sleeps on the peer, so waking a reader blocked in epoll_wait is not "
           "counted. The group took %.1f s.\n\n",
           KF_REPS, KF_MIN_NS / 1e6, (double)(mono_ns() - t_group) / 1e9);
    print_table(kr, N, KF_REPS, "system call (caller's side)");
    /* per frame at 1 frame/s per session (issue 11's measurements): front door ~2.4 reads of the
     * ~32 KB frame and ~3.7 small writes; backend one writev of the ~43 KB request and ~5 reads
     * of ~150-byte SSE chunks; ~2 epoll_wait returns */
    double med[N];
    for (int k = 0; k < N; k++)
        med[k] = row_median(&kr[k], KF_REPS);
    double floor_ns = 2.4 * med[R32K] + 3.7 * med[PAIR150] + med[WV43K_PAIR] + 5 * med[R150] + 2 * med[EPOLL];
    printf("\nFloor per frame (an estimate of the system-call work one frame needs on this machine, with no "
           "user-space work at all): 2.4 × read() 32 KB + 3.7 × (write() 150 B + peer read()) + 1 × (writev() 43 KB "
           "+ peer reads) + 5 × read() 150 B + 2 × epoll_wait() = %.1f µs, %.0f %% of issue 11's 150 µs plain and "
           "%.0f %% of its 180 µs TLS target per frame (TLS's crypto comes on top). Rough: 2.4 whole 32 KB reads "
           "count the frame's copy 2.4 times, the pairs include the peers' reads (browser, backend), and "
           "wake-ups and TCP over a real NIC are not in it.\n",
           floor_ns / 1000, floor_ns / 1500, floor_ns / 1800);
    printf("RESULT kf_floor_per_frame %.0f 0.00\n", floor_ns);
    rc = 0;
    goto out;
fail:
    perror("micro: kernel floor");
out:
    if (x.ep >= 0)
        close(x.ep);
    int fds[] = {x.a, x.b, x.ep_a, x.ep_b};
    for (size_t i = 0; i < LV_ARRAY_LEN(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(x.rbuf);
    free(x.big);
    free(x.body);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 1;
    size_t jpeg_len = 0;
    unsigned char *jpeg = NULL, *msg = NULL;
    uint8_t *wire = NULL;
    lv_session_t *session = NULL; /* for the vlm_response row */
    if (argc > 1) {
        char *end;
        long v = strtol(argv[1], &end, 10);
        if (*end || v < 3 || v > REPS_MAX) {
            fprintf(stderr, "usage: micro [reps (3..%d)]\n", REPS_MAX);
            return 2;
        }
        reps = (int)v;
    }
    jpeg = read_file(JPEG_PATH, &jpeg_len);
    if (!jpeg) {
        fprintf(stderr, "micro: cannot read %s (run from the repository root)\n", JPEG_PATH);
        goto out;
    }
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double load0 = loadavg_1min();
    uint64_t t_start = clock_ns(CLOCK_MONOTONIC);

    /* the page's binary message: LVF1 header (credit 7, captured 12 ms ago) + the JPEG */
    size_t msg_len = LV_FRAME_HDR_LEN + jpeg_len;
    msg = malloc(msg_len);
    wire = malloc(msg_len + 14);
    if (!msg || !wire)
        goto out;
    lv_frame_encode_header(msg, 7, 12);
    memcpy(msg + LV_FRAME_HDR_LEN, jpeg, jpeg_len);

    /* 1. WebSocket receive: readers made as lv_wsconn.c makes them */
    lv_config_t cfg;
    lv_config_defaults(&cfg);
    ws_ctx_t ws16 = {.wire = wire, .want_len = msg_len, .piece = READ_PIECE}, ws1, wst;
    ws16.wire_len = client_frame(wire, LV_WS_OP_BINARY, msg, msg_len);
    ws1 = ws16; /* both unmask the same bytes in turn: see op_ws_feed */
    ws1.piece = ws1.wire_len;
    /* a ping as web/ws.js sends it ("t" is performance.now()) */
    static const char ctl[] = "{\"type\":\"ping\",\"t\":183457.29999999702}";
    uint8_t ctl_wire[sizeof ctl + 14], ctl_pristine[sizeof ctl + 14];
    wst = (ws_ctx_t){.wire = ctl_wire, .pristine = ctl_pristine, .want_len = strlen(ctl)};
    wst.wire_len = wst.piece = client_frame(ctl_pristine, LV_WS_OP_TEXT, ctl, strlen(ctl));
    ws_ctx_t *readers[] = {&ws16, &ws1, &wst};
    for (size_t i = 0; i < LV_ARRAY_LEN(readers); i++)
        lv_ws_reader_init(&readers[i]->rd, cfg.max_frame_bytes + LV_FRAME_HDR_LEN, WS_TEXT_MAX);
    add_row("ws_bin_16k", "1. WS receive: 32 KB binary frame, 16 KiB reads", NULL, op_ws_feed, &ws16, ws16.wire_len);
    add_row("ws_bin_1", "1. WS receive: 32 KB binary frame, one read", NULL, op_ws_feed, &ws1, ws1.wire_len);
    add_row("ws_text", "1. WS receive: 38-byte text frame (JSON ping)", "incl. restoring 44 masked bytes", op_ws_feed,
            &wst, wst.wire_len);

    /* 2. what handle_frame runs on a received binary message */
    accept_ctx_t acc = {msg, msg_len, {cfg.max_frame_bytes, cfg.max_frame_side, cfg.max_frame_pixels}};
    add_row("accept", "2. lv_frame_parse + lv_jpeg_check",
            "headers only; the alloc: libjpeg's 16 KB pool in tjDecompressHeader3", op_accept, &acc, 0);
    add_row("frame_copy", "2. lv_frame_new + unref (the JPEG copy)", "cache-hot copy", op_frame_copy, &acc, jpeg_len);

    /* 3. request build, with the default prompt and sampling settings */
    lv_settings_t st;
    lv_settings_defaults(&st);
    req_ctx_t rq = {.req = {.model = MODEL,
                            .prompt = st.prompt,
                            .max_tokens = st.max_tokens,
                            .temperature = st.temperature,
                            .jpeg = jpeg,
                            .jpeg_len = jpeg_len,
                            .stream = 1,
                            .include_usage = 1}};
    lv_buf_init(&rq.out, 2 * jpeg_len + 16);
    add_row("chatreq", "3. lv_chatreq_build (fresh body buffer)", "MB/s of JPEG", op_chatreq, &rq, jpeg_len);
    add_row("b64", "3. lv_b64_encode alone (reused buffer)", "MB/s of JPEG", op_b64, &rq, jpeg_len);

    /* 4. SSE parse: one event per op through a long-lived parser per format */
    sse_ctx_t sse[LV_ARRAY_LEN(chunks)];
    for (size_t i = 0; i < LV_ARRAY_LEN(chunks); i++) {
        sse_ctx_t *x = &sse[i];
        *x = (sse_ctx_t){.event = chunks[i].event, .len = strlen(chunks[i].event), .want_usage = chunks[i].usage};
        lv_sse_init(&x->sse, SSE_LINE_MAX);
        lv_chatresp_init(&x->resp);
        op_sse(x); /* once before, to see which path the parser takes */
        const char *path = x->fast ? "fast scanner" : "jansson (not fast path)";
        add_row(chunks[i].key, chunks[i].stage, path, op_sse, x, x->len);
        if (i == 0)
            add_row("chunk_fakevlm", "4. lv_chatresp_parse_chunk alone: fakevlm token", path, op_chunk, x, x->len - 8);
    }

    /* 5. outgoing messages: a job and a finished answer as the pipeline hands them over */
    static const char answer_text[] = "A person in a blue shirt is sitting at a kitchen table, reading a newspaper "
                                      "next to a cup of coffee.";
    session = calloc(1, sizeof *session);
    out_ctx_t ox = {
        .session = session,
        .result = {
            .text = answer_text, .text_len = sizeof answer_text - 1, .tokens = 24, .ttft_us = 50500, .streamed = true}};
    if (!session)
        goto out;
    ox.job.answer_id = 123456;
    lv_settings_defaults(&ox.job.settings);
    snprintf(ox.job.backend_id, sizeof ox.job.backend_id, "vllm-1");
    snprintf(ox.job.model, sizeof ox.job.model, "%s", MODEL);
    ox.job.queue_wait_ms = 1.25;
    ox.job.frame_age_ms = 40.5;
    ox.session->last_latency_ms = 151.5;
    ox.session->rec.avg_latency_ms = 150.25;
    ox.session->rec.total_inferences = 300;
    ox.session->frames_received = 310;
    add_row("credit", "5. lv_outmsg_credit", NULL, op_credit, NULL, 0);
    add_row("answer_start", "5. lv_outmsg_answer_start", NULL, op_answer_start, &ox, 0);
    add_row("delta", "5. lv_outmsg_delta (one token)", NULL, op_delta, NULL, 0);
    add_row("answer", "5. lv_outmsg_answer (vlm_response, 100-byte text)", NULL, op_answer, &ox, 0);

    run_rows();

    for (size_t i = 0; i < LV_ARRAY_LEN(readers); i++)
        lv_ws_reader_free(&readers[i]->rd);
    lv_buf_free(&rq.out);
    for (size_t i = 0; i < LV_ARRAY_LEN(chunks); i++) {
        lv_chatresp_clear(&sse[i].resp);
        lv_sse_free(&sse[i].sse);
    }

    getrusage(RUSAGE_SELF, &ru1);
    double load1 = loadavg_1min();
    double secs = (double)(clock_ns(CLOCK_MONOTONIC) - t_start) / 1e9;
    double cpu = tv_s(ru1.ru_utime) + tv_s(ru1.ru_stime) - tv_s(ru0.ru_utime) - tv_s(ru0.ru_stime);
    char model[160];
    cpu_model(model, sizeof model);

    printf("Machine: %ld cores (%s); 1-min load average %.2f at start, %.2f at end; this process had %.1f s of CPU "
           "in %.1f s and was preempted %ld times%s.\n\n",
           sysconf(_SC_NPROCESSORS_ONLN), model, load0, load1, cpu, secs, ru1.ru_nivcsw - ru0.ru_nivcsw,
           load0 > 1.0 || load1 > 1.0 || cpu < 0.9 * secs ? ": other work shared the machine, so medians are "
                                                            "the figures to compare and maxima are noisy"
                                                          : "");
    printf("%d repetitions of a batch of at least %llu ms of this thread's CPU time per row; min, median and max of "
           "their ns per op.\n\n",
           reps, BATCH_MIN_NS / 1000000);
    print_table(rows, n_rows, reps, "stage");
    if (kernel_floor())
        goto out;
    rc = 0;
out:
    free(session);
    lv_jpeg_thread_cleanup();
    free(wire);
    free(msg);
    free(jpeg);
    return rc;
}
