/* lg_main.c - loadgen: N simulated camera pages against a running livevlm, on one libuv loop.
 * Setup (files, address, sessions), the phases (ramp, warmup, measured window, shutdown) and the
 * hard deadline. See docs/loadgen.md. */
#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "lg.h"
#include "lv_common.h"
#include "lv_frame.h"

#define SHUTDOWN_GRACE_MS 3000 /* after the window: how long close handshakes may take */
#define DEADLINE_EXTRA_MS 10000
#define LAUNCH_PER_WAKE 256    /* connections opened per timer callback at most */
#define LAG_PERIOD_MS 100

uint64_t lg_cpu_us(uint64_t *sys_us)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru))
        return 0;
    uint64_t sys = (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    if (sys_us)
        *sys_us = sys;
    return (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec + sys;
}

static uint64_t ms_of(double s) { return (uint64_t)(s * 1000.0 + 0.5); }

/* ---------- phases ---------- */

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void close_timer(uv_timer_t *t)
{
    if (!uv_is_closing((uv_handle_t *)t))
        uv_close((uv_handle_t *)t, on_handle_closed);
}

static void finish(lg_run_t *r)
{
    if (r->finished)
        return;
    r->finished = true;
    close_timer(&r->ramp_timer);
    close_timer(&r->phase_timer);
    close_timer(&r->tick_timer);
    close_timer(&r->push_timer);
    close_timer(&r->ping_timer);
    close_timer(&r->lag_timer);
    close_timer(&r->deadline_timer);
    if (r->o->coalesce_us > 0 && !uv_is_closing((uv_handle_t *)&r->coalesce))
        uv_close((uv_handle_t *)&r->coalesce, NULL);
}

static void window_close(lg_run_t *r)
{
    if (!r->measuring)
        return;
    r->measuring = false;
    r->measure_end_us = lv_now_us();
    r->w_cpu_us = lg_cpu_us(&r->w_sys_us) - r->w_cpu_us_start;
    r->w_sys_us -= r->w_sys_us_start;
}

void lg_run_conn_gone(lg_run_t *r)
{
    if (r->open_conns > 0)
        return;
    if (!r->stopping && r->launched == r->o->sessions) {
        /* every socket is gone before the end (nothing connected, or the server went away):
         * waiting out the window would measure nothing */
        if (!r->o->quiet)
            fprintf(stderr, "loadgen: every session has ended; stopping early\n");
        window_close(r);
        r->stopping = true;
    }
    if (r->stopping)
        finish(r);
}

static void force_close_all(lg_run_t *r)
{
    for (uint32_t i = 0; i < r->o->sessions; i++) {
        lg_sess_t *s = &r->sess[i];
        if (s->state != LG_S_IDLE && s->state != LG_S_DONE)
            lg_conn_close(&s->conn, NULL);
    }
}

static void on_grace_over(uv_timer_t *t)
{
    lg_run_t *r = t->data;
    force_close_all(r);
    lg_run_conn_gone(r);
}

static void begin_shutdown(lg_run_t *r)
{
    if (r->stopping)
        return;
    r->stopping = true;
    uv_timer_stop(&r->ramp_timer);
    uv_timer_stop(&r->push_timer);
    uv_timer_stop(&r->ping_timer);
    for (uint32_t i = 0; i < r->o->sessions; i++)
        lg_session_shutdown(&r->sess[i]);
    uv_timer_start(&r->phase_timer, on_grace_over, SHUTDOWN_GRACE_MS, 0);
    lg_run_conn_gone(r);
}

static void on_measure_end(uv_timer_t *t)
{
    lg_run_t *r = t->data;
    window_close(r);
    begin_shutdown(r);
}

static void on_measure_start(uv_timer_t *t)
{
    lg_run_t *r = t->data;
    r->measure_start_us = lv_now_us();
    r->w_cpu_us_start = lg_cpu_us(&r->w_sys_us_start);
    r->measuring = true;
    uv_timer_start(&r->phase_timer, on_measure_end, ms_of(r->o->duration_s), 0);
}

static void on_deadline(uv_timer_t *t)
{
    lg_run_t *r = t->data;
    fprintf(stderr, "loadgen: hard deadline reached, closing everything\n");
    window_close(r);
    r->stopping = true;
    force_close_all(r);
    finish(r);
}

static void on_ramp(uv_timer_t *t)
{
    lg_run_t *r = t->data;
    uint32_t n = r->o->sessions;
    uint64_t ramp_ms = ms_of(r->o->ramp_s);
    uint64_t due = n;
    if (ramp_ms > 0) {
        uint64_t el_ms = (lv_now_us() - r->t0_us) / 1000;
        due = el_ms >= ramp_ms ? n : (uint64_t)n * el_ms / ramp_ms + 1;
        if (due > n)
            due = n;
    }
    uint32_t budget = LAUNCH_PER_WAKE;
    while (r->launched < due && budget-- > 0 && !r->stopping)
        lg_session_launch(&r->sess[r->launched]);
    if (r->launched >= n)
        uv_timer_stop(t);
    else if (r->launched < due) /* more are due than one wake may open: come back at once */
        uv_timer_start(t, on_ramp, 0, t->repeat ? t->repeat : 1);
}

static void on_push(uv_timer_t *t)
{
    lg_run_t *r = t->data;
    uint64_t now = lv_now_us();
    for (uint32_t i = 0; i < r->launched; i++) {
        lg_sess_t *s = &r->sess[i];
        if (s->state == LG_S_READY && now >= s->next_push_us)
            lg_session_push(s, now);
    }
}

static void on_ping(uv_timer_t *t)
{
    lg_run_t *r = t->data;
    uint64_t now = lv_now_us();
    for (uint32_t i = 0; i < r->launched; i++) {
        lg_sess_t *s = &r->sess[i];
        if (s->state == LG_S_READY && now >= s->next_ping_us)
            lg_session_ping(s, now);
    }
}

/* Wake-up coalescing. At thousands of sessions the server's messages arrive tens of
 * microseconds apart, and waking once per message costs more (a context switch each) than
 * handling it. After each pass of the loop this waits until coalesce_us have gone by since the
 * previous pass, so the next poll collects everything that arrived meanwhile in one wake-up.
 * Nothing else runs on this thread, so the sleep delays no work beyond the coalesce_us that
 * timestamps may be late by. The sleep is itself a wake-up, so it is only taken while reads
 * come often enough (measured over the last 100 ms) for two or more to gather in one wait. */
static void on_loop_pass(uv_check_t *c)
{
    lg_run_t *r = c->data;
    uint64_t now = lv_now_us();
    uint64_t gap = now - r->last_pass_us;
    uint64_t want = (uint64_t)r->o->coalesce_us;
    if (gap < want && r->reads_per_s * want >= 2000000u) {
        struct timespec ts = {0, (long)(want - gap) * 1000L};
        nanosleep(&ts, NULL);
        now = lv_now_us();
    }
    r->last_pass_us = now;
}

static void on_lag(uv_timer_t *t)
{
    lg_run_t *r = t->data;
    uint64_t now = lv_now_us();
    if (r->measuring && now > r->lag_expected_us)
        lg_samples_add(&r->loop_lag, (double)(now - r->lag_expected_us) / 1000.0, &r->rng);
    else if (r->measuring)
        lg_samples_add(&r->loop_lag, 0, &r->rng);
    r->lag_expected_us = lv_now_us() + LAG_PERIOD_MS * 1000u;
    r->reads_per_s = (r->reads - r->reads_at_lag) * (1000u / LAG_PERIOD_MS);
    r->reads_at_lag = r->reads;
    uv_timer_start(t, on_lag, LAG_PERIOD_MS, 0);
}

static void on_tick(uv_timer_t *t)
{
    lg_run_t *r = t->data;
    uint64_t now = lv_now_us();
    for (uint32_t i = 0; i < r->launched; i++) {
        lg_sess_t *s = &r->sess[i];
        if (s->state >= LG_S_CONNECTING && s->state <= LG_S_HELLO &&
            now - s->launch_us > LG_CONNECT_TIMEOUT_MS * 1000ull)
            lg_session_fail(s, "no session within 10 s");
    }
    if (!r->o->quiet)
        fprintf(stderr,
                "loadgen: t=%5.1fs %s ready %u/%u failed %u frames %llu answers %llu errors %llu\n",
                (double)(now - r->t0_us) / 1e6,
                r->stopping ? "closing  " : r->measuring ? "measuring" : r->launched < r->o->sessions ? "ramp     " : "warmup   ",
                r->ready_now, r->o->sessions, r->n_failed, (unsigned long long)r->frames_total,
                (unsigned long long)r->answers_total, (unsigned long long)r->errors.total);
}

/* ---------- setup ---------- */

static int load_jpegs(lg_run_t *r)
{
    size_t max_len = 0;
    for (size_t i = 0; i < r->o->n_jpegs; i++) {
        const char *path = r->o->jpeg_paths[i];
        FILE *f = fopen(path, "rb");
        if (!f) {
            fprintf(stderr, "loadgen: --jpeg: cannot open %s\n", path);
            return LV_EIO;
        }
        lv_buf_t b;
        lv_buf_init(&b, LG_JPEG_MAX);
        char chunk[65536];
        size_t n;
        int rc = 0;
        while (!rc && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            rc = lv_buf_append(&b, chunk, n);
        fclose(f);
        if (rc || b.len < 4 || (unsigned char)b.data[0] != 0xFF || (unsigned char)b.data[1] != 0xD8) {
            fprintf(stderr, "loadgen: --jpeg: %s is %s\n", path, rc ? "over 16 MiB" : "not a JPEG (no FF D8)");
            lv_buf_free(&b);
            return LV_EINVAL;
        }
        r->jpegs[i].data = (unsigned char *)b.data; /* owned from here on */
        r->jpegs[i].len = b.len;
        max_len = LV_MAX(max_len, b.len);
    }
    r->scratch_len = LG_WS_MAX_HDR + LV_FRAME_HDR_LEN + max_len;
    r->scratch = malloc(r->scratch_len);
    return r->scratch ? 0 : LV_ENOMEM;
}

static int resolve(lg_run_t *r)
{
    char port[8];
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", r->o->port);
    int rc = getaddrinfo(r->o->host, port, &hints, &res);
    if (rc || !res) {
        fprintf(stderr, "loadgen: cannot resolve %s: %s\n", r->o->host, gai_strerror(rc));
        return LV_ENOTFOUND;
    }
    /* prefer IPv4: source spreading works over 127/8 */
    struct addrinfo *pick = res;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    }
    memcpy(&r->dst, pick->ai_addr, pick->ai_addrlen);
    freeaddrinfo(res);
    struct in_addr a4;
    struct in6_addr a6;
    bool literal = inet_pton(AF_INET, r->o->host, &a4) == 1 || inet_pton(AF_INET6, r->o->host, &a6) == 1;
    r->sni = literal ? NULL : r->o->host;
    return 0;
}

static uint32_t next_usable(uint32_t a)
{
    do
        a++;
    while ((a & 0xff) == 0 || (a & 0xff) == 0xff);
    return a;
}

/* Users, and per user a block of source addresses filled per_ip sessions at a time. */
static int assign_sessions(lg_run_t *r)
{
    const lg_opts_t *o = r->o;
    uint32_t U = o->users, K = o->heavy_users, M = o->heavy_factor ? o->heavy_factor : 1;
    uint64_t W = (uint64_t)K * M + (U - K);
    r->sess = calloc(o->sessions, sizeof(*r->sess));
    r->users = calloc(U, sizeof(*r->users));
    uint32_t *cur = calloc(U, sizeof(*cur));
    uint32_t *used = calloc(U, sizeof(*used));
    if (!r->sess || !r->users || !cur || !used) {
        free(cur);
        free(used);
        return LV_ENOMEM;
    }
    for (uint32_t i = 0; i < o->sessions; i++) {
        uint64_t w = i % W;
        uint32_t u = w < (uint64_t)K * M ? (uint32_t)(w % K) : (uint32_t)(K + (w - (uint64_t)K * M));
        r->sess[i].idx = i;
        r->sess[i].user = u;
        r->sess[i].run = r;
        r->sess[i].jpeg_next = i; /* files round-robin, and sessions start at different files */
        r->users[u].sessions++;
    }
    int rc = 0;
    if (o->bind_src) {
        uint32_t next = ntohl(o->src_base.s_addr);
        if ((next & 0xff) == 0 || (next & 0xff) == 0xff)
            next = next_usable(next);
        uint32_t first = next;
        for (uint32_t u = 0; u < U; u++) {
            cur[u] = next;
            uint32_t blocks = (r->users[u].sessions + o->per_ip - 1) / o->per_ip;
            for (uint32_t b = 0; b < blocks; b++)
                next = next_usable(next);
        }
        if ((first >> 24) == 127 && (next >> 24) != 127) {
            fprintf(stderr, "loadgen: too many source addresses for 127/8 from --src-base; raise --per-ip\n");
            rc = LV_ELIMIT;
        }
        for (uint32_t i = 0; !rc && i < o->sessions; i++) {
            lg_sess_t *s = &r->sess[i];
            uint32_t u = s->user;
            if (used[u] == o->per_ip) {
                cur[u] = next_usable(cur[u]);
                used[u] = 0;
            }
            used[u]++;
            s->src.sin_family = AF_INET;
            s->src.sin_port = 0;
            s->src.sin_addr.s_addr = htonl(cur[u]);
        }
    }
    free(cur);
    free(used);
    return rc;
}

static void raise_fd_limit(const lg_opts_t *o)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    rlim_t want = (rlim_t)o->sessions + 64;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want)
        fprintf(stderr, "loadgen: warning: open files limit %llu is below %llu sessions + 64\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)o->sessions);
}

static void run_free(lg_run_t *r)
{
    for (size_t i = 0; i < LG_MAX_JPEGS; i++)
        free(r->jpegs[i].data);
    free(r->scratch);
    free(r->sess);
    free(r->users);
    lg_samples_t *all[] = {&r->lat_total, &r->lat_ttft, &r->srv_queue, &r->srv_age,
                           &r->srv_ttft, &r->srv_latency, &r->connect_ms, &r->loop_lag, &r->ping_rtt};
    for (size_t i = 0; i < LV_ARRAY_LEN(all); i++)
        lg_samples_free(all[i]);
    if (r->tls)
        SSL_CTX_free(r->tls);
}

int main(int argc, char **argv)
{
    lg_opts_t o;
    bool help = false;
    int exit_code = LG_EXIT_USAGE;
    if (lg_opts_parse(&o, argc, argv, &help))
        return help ? LG_EXIT_OK : LG_EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);

    lg_run_t *r = calloc(1, sizeof(*r));
    uv_loop_t loop;
    if (!r || uv_loop_init(&loop)) {
        fprintf(stderr, "loadgen: out of memory\n");
        free(r);
        return LG_EXIT_USAGE;
    }
    r->o = &o;
    r->loop = &loop;
    lg_rng_seed(&r->rng, o.seed);
    lg_samples_t *all[] = {&r->lat_total, &r->lat_ttft, &r->srv_queue, &r->srv_age,
                           &r->srv_ttft, &r->srv_latency, &r->connect_ms, &r->loop_lag, &r->ping_rtt};
    for (size_t i = 0; i < LV_ARRAY_LEN(all); i++)
        lg_samples_init(all[i], LG_SAMPLES_MAX);

    if (load_jpegs(r))
        goto out;
    if (resolve(r)) {
        exit_code = LG_EXIT_NO_CONNECT;
        goto out;
    }
    if (o.src_auto) {
        const struct sockaddr_in *d4 = (const struct sockaddr_in *)&r->dst;
        o.bind_src = r->dst.ss_family == AF_INET && (ntohl(d4->sin_addr.s_addr) >> 24) == 127;
    }
    if (o.bind_src && r->dst.ss_family != AF_INET) {
        fprintf(stderr, "loadgen: --src-base needs an IPv4 target\n");
        goto out;
    }
    if (assign_sessions(r))
        goto out;
    if (o.tls && !(r->tls = lg_conn_tls_ctx())) {
        fprintf(stderr, "loadgen: TLS setup failed\n");
        goto out;
    }
    raise_fd_limit(&o);

    uv_timer_t *timers[] = {&r->ramp_timer, &r->phase_timer, &r->tick_timer, &r->push_timer,
                            &r->ping_timer, &r->lag_timer, &r->deadline_timer};
    for (size_t i = 0; i < LV_ARRAY_LEN(timers); i++) {
        uv_timer_init(&loop, timers[i]);
        timers[i]->data = r;
    }
    r->t0_us = lv_now_us();
    uint64_t ramp_ms = ms_of(o.ramp_s);
    uint64_t every = ramp_ms / o.sessions;
    every = every < 1 ? 1 : every > 10 ? 10 : every;
    uv_timer_start(&r->ramp_timer, on_ramp, 0, every);
    uv_timer_start(&r->phase_timer, on_measure_start, ramp_ms + ms_of(o.warmup_s), 0);
    uv_timer_start(&r->tick_timer, on_tick, 1000, 1000);
    r->lag_expected_us = r->t0_us + LAG_PERIOD_MS * 1000u;
    uv_timer_start(&r->lag_timer, on_lag, LAG_PERIOD_MS, 0);
    uv_timer_start(&r->deadline_timer, on_deadline,
                   ramp_ms + ms_of(o.warmup_s) + ms_of(o.duration_s) + DEADLINE_EXTRA_MS, 0);
    if (o.push_fps > 0) {
        double per = 1000.0 / o.push_fps / 4;
        uint64_t tick = per < 1 ? 1 : per > 5 ? 5 : (uint64_t)per;
        uv_timer_start(&r->push_timer, on_push, tick, tick);
    }
    if (o.ping_ms > 0)
        uv_timer_start(&r->ping_timer, on_ping, 50, 50);

    if (o.coalesce_us > 0) {
        uv_check_init(&loop, &r->coalesce);
        r->coalesce.data = r;
        r->last_pass_us = lv_now_us();
        uv_check_start(&r->coalesce, on_loop_pass);
        uv_unref((uv_handle_t *)&r->coalesce); /* does not keep the loop alive by itself */
    }
    uv_run(&loop, UV_RUN_DEFAULT);

    exit_code = r->n_connected == 0 ? LG_EXIT_NO_CONNECT : LG_EXIT_OK;
    lg_report(r);
    if (r->n_connected == 0)
        fprintf(stderr, "loadgen: no session could connect\n");
out:
    if (uv_loop_close(&loop) == UV_EBUSY) {
        /* only after an early exit with nothing started; nothing to wait for then */
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_loop_close(&loop);
    }
    run_free(r);
    free(r);
    return exit_code;
}
