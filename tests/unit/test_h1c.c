/* test_h1c.c - the HTTP/1.1 client against a scripted keep-alive server on the same loop, on real
 * sockets on 127.0.0.1: framing, streaming, keep-alive and its retry, connect failures, cancel and
 * destroy, many requests at once, a host name. Every wait is bounded (run_until: 5 s). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_h1c.h"
#include "lv_queue.h"

#define WAIT_MS 5000

/* ---------------------------------------------------------------- the test server */

typedef struct srv srv_t;

typedef struct sconn {
    lv_queue_t link; /* on srv->conns */
    srv_t *s;
    uv_tcp_t tcp;
    uv_timer_t timer; /* plays the planned writes, or closes the connection later */
    int handles;
    bool closing;
    lv_buf_t in;
    int nreq; /* requests seen on this connection */
    char *plan[32];
    size_t plan_len[32];
    size_t n_plan, next_plan;
    bool close_after_plan;
} sconn_t;

/* Answers a request: nreq is its number on its connection (1-based). */
typedef void (*route_fn)(sconn_t *c, int nreq);

struct srv {
    uv_loop_t *loop;
    uv_tcp_t lis;
    int port;
    lv_queue_t conns;
    route_fn route;
    int accepts, requests, client_closes;
    char last_head[4096];
    char last_body[256];
    size_t last_body_len;   /* the whole body: its length and a checksum (FNV-1a) */
    uint32_t last_body_fnv;
};

typedef struct {
    uv_write_t req;
    sconn_t *c;
    bool close_after;
    char data[];
} swrite_t;

static void sc_on_closed(uv_handle_t *hd)
{
    sconn_t *c = hd->data;
    if (--c->handles)
        return;
    for (size_t i = 0; i < c->n_plan; i++)
        free(c->plan[i]);
    lv_buf_free(&c->in);
    free(c);
}

static void sc_close(sconn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    lv_queue_remove(&c->link);
    uv_close((uv_handle_t *)&c->timer, sc_on_closed);
    uv_close((uv_handle_t *)&c->tcp, sc_on_closed);
}

static void sc_on_written(uv_write_t *w, int status)
{
    swrite_t *sw = LV_CONTAINER_OF(w, swrite_t, req);
    if (sw->close_after)
        sc_close(sw->c);
    free(sw);
}

static void sc_write(sconn_t *c, const char *p, size_t n, bool close_after)
{
    if (c->closing)
        return;
    swrite_t *sw = malloc(sizeof *sw + n + 1);
    assert_non_null(sw);
    memcpy(sw->data, p, n);
    sw->c = c;
    sw->close_after = close_after;
    uv_buf_t b = uv_buf_init(sw->data, (unsigned)n);
    assert_int_equal(uv_write(&sw->req, (uv_stream_t *)&c->tcp, &b, 1, sc_on_written), 0);
}

static void sc_say(sconn_t *c, const char *s, bool close_after) { sc_write(c, s, strlen(s), close_after); }

static void sc_plan(sconn_t *c, const char *s)
{
    assert_true(c->n_plan < LV_ARRAY_LEN(c->plan));
    c->plan[c->n_plan] = strdup(s);
    assert_non_null(c->plan[c->n_plan]);
    c->plan_len[c->n_plan++] = strlen(s);
}

static void sc_on_tick(uv_timer_t *t)
{
    sconn_t *c = t->data;
    if (c->next_plan < c->n_plan) {
        size_t i = c->next_plan++;
        sc_write(c, c->plan[i], c->plan_len[i], c->close_after_plan && c->next_plan == c->n_plan);
    }
    if (c->next_plan >= c->n_plan)
        uv_timer_stop(t);
}

/* The planned writes, one every delay_ms. */
static void sc_play(sconn_t *c, unsigned delay_ms, bool close_after)
{
    c->close_after_plan = close_after;
    uv_timer_start(&c->timer, sc_on_tick, delay_ms, delay_ms);
}

static void sc_on_close_timer(uv_timer_t *t) { sc_close(t->data); }

static void sc_close_in(sconn_t *c, unsigned ms) { uv_timer_start(&c->timer, sc_on_close_timer, ms, 0); }

static void sc_try_requests(sconn_t *c)
{
    srv_t *s = c->s;
    while (!c->closing && c->in.len) {
        const char *end = strstr(c->in.data, "\r\n\r\n");
        if (!end)
            return;
        size_t head_len = (size_t)(end - c->in.data) + 4;
        size_t body_len = 0;
        for (const char *p = c->in.data; p && p < end; p = strstr(p + 2, "\r\n"))
            if (strncasecmp(p, "\r\nContent-Length:", 17) == 0)
                body_len = strtoul(p + 17, NULL, 10);
        if (c->in.len < head_len + body_len)
            return;
        snprintf(s->last_head, sizeof s->last_head, "%.*s", (int)head_len, c->in.data);
        snprintf(s->last_body, sizeof s->last_body, "%.*s", (int)body_len, c->in.data + head_len);
        s->last_body_len = body_len;
        s->last_body_fnv = 2166136261u;
        for (size_t i = 0; i < body_len; i++)
            s->last_body_fnv = (s->last_body_fnv ^ (unsigned char)c->in.data[head_len + i]) * 16777619u;
        lv_buf_consume(&c->in, head_len + body_len);
        if (c->in.len == 0)
            lv_buf_reset(&c->in);
        else
            c->in.data[c->in.len] = '\0';
        s->requests++;
        c->nreq++;
        s->route(c, c->nreq);
    }
}

static void sc_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void sc_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    sconn_t *c = st->data;
    if (nread > 0) {
        assert_int_equal(lv_buf_append(&c->in, buf->base, (size_t)nread), 0);
        sc_try_requests(c);
    } else if (nread < 0) {
        if (!c->closing)
            c->s->client_closes++;
        sc_close(c);
    }
    free(buf->base);
}

static void srv_on_connection(uv_stream_t *l, int status)
{
    srv_t *s = l->data;
    assert_int_equal(status, 0);
    sconn_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->s = s;
    lv_buf_init(&c->in, 1 << 20);
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    lv_queue_insert_tail(&s->conns, &c->link);
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    s->accepts++;
    uv_read_start((uv_stream_t *)&c->tcp, sc_on_alloc, sc_on_read);
}

static void srv_start(srv_t *s, uv_loop_t *loop)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    lv_queue_init(&s->conns);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_init(loop, &s->lis), 0);
    s->lis.data = s;
    assert_int_equal(uv_tcp_bind(&s->lis, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->lis, 1024, srv_on_connection), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&s->lis, (struct sockaddr *)&got, &len);
    s->port = ntohs(got.sin_port);
}

static void srv_stop(srv_t *s)
{
    while (!lv_queue_empty(&s->conns))
        sc_close(LV_CONTAINER_OF(lv_queue_head(&s->conns), sconn_t, link));
    uv_close((uv_handle_t *)&s->lis, NULL);
}

/* ---------------------------------------------------------------- routes */

static void route_hello(sconn_t *c, int nreq)
{
    sc_say(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", false);
}

static void route_conn_close(sconn_t *c, int nreq)
{
    sc_say(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", true);
}

/* A chunked stream in pieces 30 ms apart, a chunk-size line and a CRLF split across writes. */
static void route_chunked(sconn_t *c, int nreq)
{
    sc_say(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false);
    sc_plan(c, "5\r\nhello\r\n");
    sc_plan(c, "1");
    sc_plan(c, "\r\n \r");
    sc_plan(c, "\n6\r\nworld!\r\n");
    sc_plan(c, "3\r\n123\r\n0\r\n\r\n");
    sc_play(c, 30, false);
}

/* Answers, then closes the connection 50 ms later (a server's short keep-alive timeout). */
static void route_then_close(sconn_t *c, int nreq)
{
    route_hello(c, nreq);
    sc_close_in(c, 50);
}

/* The second request on a connection finds it closed (the server's keep-alive ran out just as
 * the request came). */
static void route_close_second(sconn_t *c, int nreq)
{
    if (nreq >= 2)
        sc_close(c);
    else
        route_hello(c, nreq);
}

/* The second request on a connection is met by what an idle-timeout server sends first: a 408
 * (and a close), or a stray CRLF and garbage; a new connection is answered normally. */
static void route_408_second(sconn_t *c, int nreq)
{
    if (nreq >= 2)
        sc_say(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", true);
    else
        route_hello(c, nreq);
}

static void route_junk_second(sconn_t *c, int nreq)
{
    if (nreq >= 2)
        sc_say(c, "\r\nJUNK\r\n\r\n", true);
    else
        route_hello(c, nreq);
}

static void route_empty(sconn_t *c, int nreq) { sc_close(c); }

static void route_mid_body(sconn_t *c, int nreq)
{
    sc_say(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabcdefghij", true);
}

static void route_malformed(sconn_t *c, int nreq) { sc_say(c, "HTTP/1.1 OK fine\r\nfoo\r\n\r\n", false); }

/* A stream that never ends: the head and one chunk, then nothing. */
static void route_forever(sconn_t *c, int nreq)
{
    sc_say(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n", false);
}

static void route_silent(sconn_t *c, int nreq) {}

/* A response followed by bytes nobody asked for, in the same write. */
static void route_stray(sconn_t *c, int nreq)
{
    sc_say(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n", false);
}

static void route_204(sconn_t *c, int nreq) { sc_say(c, "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n", false); }

/* ---------------------------------------------------------------- fixture */

typedef struct {
    uv_loop_t loop;
    uv_timer_t guard;
    bool guard_fired;
    srv_t srv;
    lv_h1c_t *h;
    int late_callbacks; /* callbacks of requests the test cancelled or destroyed */
    int hang_fd, fill_fd[2], hang_port; /* a listener whose connects hang (hang_url) */
} fix_t;

typedef struct {
    fix_t *f;
    int heads, dones, bodies;
    lv_h1c_result_t res;
    int status;
    bool head_done;
    lv_buf_t body;
    int abort_body;   /* return non-zero from on_body */
    int abort_head;   /* return non-zero from on_head */
    bool must_not_call;
} rq_t;

static void on_guard(uv_timer_t *t)
{
    fix_t *f = t->data;
    f->guard_fired = true;
}

/* Run the loop until *flag is non-zero or ms pass; the flag's value. */
static int run_until(fix_t *f, const int *flag, unsigned ms)
{
    f->guard_fired = false;
    uv_timer_start(&f->guard, on_guard, ms, 0);
    while (!(flag && *flag) && !f->guard_fired)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->guard);
    return flag ? *flag : 0;
}

static void run_for(fix_t *f, unsigned ms) { run_until(f, NULL, ms); }

/* A URL whose connect hangs: a listener on 127.0.0.1 with backlog 0 whose accept queue is filled
 * and never accepted, so Linux drops the next SYNs. (Not a non-routable address: this sandbox
 * intercepts connections to any address, 10.255.255.1 included, and answers them.) */
static void hang_url(fix_t *f, char *url, size_t size)
{
    if (!f->hang_port) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        f->hang_fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(f->hang_fd >= 0);
        assert_int_equal(bind(f->hang_fd, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(listen(f->hang_fd, 0), 0);
        assert_int_equal(getsockname(f->hang_fd, (struct sockaddr *)&a, &len), 0);
        for (int i = 0; i < 2; i++) {
            f->fill_fd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            assert_true(f->fill_fd[i] >= 0);
            connect(f->fill_fd[i], (struct sockaddr *)&a, sizeof a); /* EINPROGRESS or done */
        }
        f->hang_port = ntohs(a.sin_port);
    }
    snprintf(url, size, "http://127.0.0.1:%d/", f->hang_port);
}

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->guard);
    f->guard.data = f;
    srv_start(&f->srv, &f->loop);
    f->srv.route = route_hello;
    assert_int_equal(lv_h1c_create(&f->loop, &f->h), 0);
    f->hang_fd = f->fill_fd[0] = f->fill_fd[1] = -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    if (f->h)
        lv_h1c_destroy(f->h);
    srv_stop(&f->srv);
    uv_close((uv_handle_t *)&f->guard, NULL);
    for (int i = 0; i < 500 && uv_loop_alive(&f->loop); i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (uv_loop_alive(&f->loop))
            uv_sleep(10);
    }
    assert_int_equal(uv_loop_close(&f->loop), 0);
    assert_int_equal(f->late_callbacks, 0);
    if (f->hang_fd >= 0)
        close(f->hang_fd);
    for (int i = 0; i < 2; i++)
        if (f->fill_fd[i] >= 0)
            close(f->fill_fd[i]);
    free(f);
    return 0;
}

static int on_head(void *ud, const lv_h1resp_t *head)
{
    rq_t *q = ud;
    if (q->must_not_call)
        q->f->late_callbacks++;
    q->heads++;
    q->status = head->status;
    return q->abort_head;
}

static int on_body(void *ud, const char *data, size_t len)
{
    rq_t *q = ud;
    if (q->must_not_call)
        q->f->late_callbacks++;
    assert_int_equal(q->heads, 1); /* the head comes first */
    assert_int_equal(lv_buf_append(&q->body, data, len), 0);
    q->bodies++;
    return q->abort_body;
}

static void on_done(void *ud, const lv_h1c_result_t *res, const lv_h1resp_t *head)
{
    rq_t *q = ud;
    if (q->must_not_call)
        q->f->late_callbacks++;
    q->dones++;
    q->res = *res;
    q->head_done = head->head_done;
    if (head->head_done)
        q->status = head->status;
}

static const lv_h1c_cb_t CB = {on_head, on_body, on_done};

static void rq_init(rq_t *q, fix_t *f)
{
    memset(q, 0, sizeof *q);
    q->f = f;
    lv_buf_init(&q->body, 1 << 20);
}

static const char *rq_body(rq_t *q) { return q->body.len ? q->body.data : ""; }

static lv_h1c_req_t *post_url(fix_t *f, rq_t *q, const char *url, int timeout_ms)
{
    lv_h1c_url_t u;
    assert_int_equal(lv_h1c_url_parse(url, &u), 0);
    static const char *hdrs[] = {"Content-Type: application/json", "Accept: text/event-stream"};
    lv_h1c_post_t p = {.url = &u, .headers = hdrs, .n_headers = 2, .body = "{\"a\":1}", .body_len = 7,
                       .connect_timeout_ms = timeout_ms};
    lv_h1c_req_t *r = NULL;
    assert_int_equal(lv_h1c_post(f->h, &p, &CB, q, &r), 0);
    assert_non_null(r);
    return r;
}

static lv_h1c_req_t *post(fix_t *f, rq_t *q)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat", f->srv.port);
    return post_url(f, q, url, 2000);
}

/* Post and wait for on_done. */
static void post_wait(fix_t *f, rq_t *q)
{
    post(f, q);
    assert_int_equal(q->dones, 0); /* never from inside post */
    assert_int_equal(run_until(f, &q->dones, WAIT_MS), 1);
}

/* One request that must come back 200 "hello" (route_hello's answer). */
static void hello_ok(fix_t *f)
{
    rq_t q;
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_OK);
    assert_string_equal(rq_body(&q), "hello");
    lv_buf_free(&q.body);
}

static void conns_are(fix_t *f, size_t want_open, size_t want_idle)
{
    size_t open = 99, idle = 99;
    lv_h1c_conn_counts(f->h, &open, &idle);
    assert_int_equal(open, want_open);
    assert_int_equal(idle, want_idle);
}

/* ---------------------------------------------------------------- tests */

static void test_url_parse(void **state)
{
    static const struct {
        const char *url;
        const char *host;
        int port;
        const char *authority, *path;
    } good[] = {
        {"http://127.0.0.1:8000/v1/chat/completions", "127.0.0.1", 8000, "127.0.0.1:8000", "/v1/chat/completions"},
        {"HTTP://Example.com", "Example.com", 80, "Example.com", ""},
        {"http://localhost/", "localhost", 80, "localhost", "/"},
        {"http://[::1]:11434/api", "::1", 11434, "[::1]:11434", "/api"},
        {"http://[2001:db8::7]", "2001:db8::7", 80, "[2001:db8::7]", ""},
        {"http://vllm_1.internal:65535/a/b", "vllm_1.internal", 65535, "vllm_1.internal:65535", "/a/b"},
        {"http://h:1", "h", 1, "h:1", ""},
        {"http://h:080/x", "h", 80, "h:080", "/x"},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(good); i++) {
        lv_h1c_url_t u;
        if (lv_h1c_url_parse(good[i].url, &u) != 0)
            fail_msg("rejected %s", good[i].url);
        assert_string_equal(u.host, good[i].host);
        assert_int_equal(u.port, good[i].port);
        assert_string_equal(u.authority, good[i].authority);
        assert_string_equal(u.path, good[i].path);
    }
    char longhost[300], longpath[LV_H1C_PATH_MAX + 32];
    memset(longhost, 'a', sizeof longhost);
    memcpy(longhost, "http://", 7);
    longhost[7 + 256] = '\0'; /* 256 bytes of host */
    memset(longpath, 'p', sizeof longpath);
    memcpy(longpath, "http://h/", 9);
    longpath[8 + LV_H1C_PATH_MAX + 1] = '\0'; /* a path of PATH_MAX + 1 */
    const char *bad[] = {
        "https://h/", "ftp://h/", "http:/h", "http//h", "", "http://", "http:///x", "http://:80/",
        "http://u@h/", "http://u:p@h/", "http://h/x?y=1", "http://h?y", "http://h/#f", "http://h#f",
        "http://h:0/", "http://h:65536/", "http://h:/", "http://h:8a/", "http://h:123456/",
        "http://[::1/", "http://[]/", "http://[::1]x/", "http://[zz::1]/", "http://[127.0.0.1]/",
        "http://h/a b", "http://h/a\x7f", "http://h/\xc3\xa9", "http://h o/", "http://h%41/", "http://-/\t",
        longhost, longpath,
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        lv_h1c_url_t u;
        if (lv_h1c_url_parse(bad[i], &u) != LV_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    /* the limits themselves are fine */
    lv_h1c_url_t u;
    longhost[7 + 255] = '\0';
    assert_int_equal(lv_h1c_url_parse(longhost, &u), 0);
    assert_int_equal(strlen(u.host), 255);
    longpath[8 + LV_H1C_PATH_MAX] = '\0';
    assert_int_equal(lv_h1c_url_parse(longpath, &u), 0);
    assert_int_equal(strlen(u.path), LV_H1C_PATH_MAX);
}

static void test_content_length(void **state)
{
    fix_t *f = *state;
    rq_t q;
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_OK);
    assert_string_equal(q.res.why, "ok");
    assert_false(q.res.connect_failure);
    assert_int_equal(q.status, 200);
    assert_int_equal(q.heads, 1);
    assert_string_equal(rq_body(&q), "hello");
    char want[512];
    snprintf(want, sizeof want,
             "POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: livevlm\r\nContent-Length: 7\r\n"
             "Content-Type: application/json\r\nAccept: text/event-stream\r\n\r\n",
             f->srv.port);
    assert_string_equal(f->srv.last_head, want);
    assert_string_equal(f->srv.last_body, "{\"a\":1}");
    assert_int_equal(lv_h1c_in_flight(f->h), 0);
    lv_buf_free(&q.body);
}

/* A body far bigger than the socket buffers (the server on the same loop cannot read while the
 * client writes): the first write takes part of it, the rest goes out through libuv's write queue,
 * and the server sees every byte in order. */
static void test_big_body(void **state)
{
    fix_t *f = *state;
    enum { BIG = 900 * 1024 };
    char *big = malloc(BIG);
    assert_non_null(big);
    uint32_t fnv = 2166136261u;
    for (size_t i = 0; i < BIG; i++) {
        big[i] = (char)('a' + (i * 7 + i / 1000) % 26);
        fnv = (fnv ^ (unsigned char)big[i]) * 16777619u;
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat", f->srv.port);
    lv_h1c_url_t u;
    assert_int_equal(lv_h1c_url_parse(url, &u), 0);
    for (int round = 0; round < 2; round++) { /* a new connection, then the kept one */
        rq_t q;
        rq_init(&q, f);
        lv_h1c_post_t p = {.url = &u, .body = big, .body_len = BIG, .connect_timeout_ms = 2000};
        lv_h1c_req_t *r = NULL;
        assert_int_equal(lv_h1c_post(f->h, &p, &CB, &q, &r), 0);
        assert_int_equal(run_until(f, &q.dones, WAIT_MS), 1);
        assert_int_equal(q.res.end, LV_H1C_OK);
        assert_string_equal(rq_body(&q), "hello");
        assert_int_equal(f->srv.last_body_len, BIG);
        assert_int_equal(f->srv.last_body_fnv, fnv);
        lv_buf_free(&q.body);
    }
    assert_int_equal(f->srv.accepts, 1);
    free(big);
}

static void test_bad_header_line(void **state)
{
    fix_t *f = *state;
    lv_h1c_url_t u;
    assert_int_equal(lv_h1c_url_parse("http://127.0.0.1:1/", &u), 0);
    const char *hdrs[] = {"Accept: x", "X-Evil: a\r\nHost: b"};
    lv_h1c_post_t p = {.url = &u, .headers = hdrs, .n_headers = 2, .body = "", .connect_timeout_ms = 100};
    lv_h1c_req_t *r = NULL;
    rq_t q;
    rq_init(&q, f);
    assert_int_equal(lv_h1c_post(f->h, &p, &CB, &q, &r), LV_EINVAL);
    hdrs[1] = "X-Evil: a\nb";
    assert_int_equal(lv_h1c_post(f->h, &p, &CB, &q, &r), LV_EINVAL);
    p.n_headers = 1;
    p.connect_timeout_ms = 0;
    assert_int_equal(lv_h1c_post(f->h, &p, &CB, &q, &r), LV_EINVAL);
    assert_int_equal(lv_h1c_in_flight(f->h), 0);
    run_for(f, 50);
    assert_int_equal(q.dones, 0);
}

static void test_chunked_stream(void **state)
{
    fix_t *f = *state;
    f->srv.route = route_chunked;
    rq_t q;
    rq_init(&q, f);
    post(f, &q);
    /* the pieces arrive 30 ms apart: see the body grow before the end */
    int some = 0;
    for (int i = 0; i < 200 && !q.dones; i++) {
        run_for(f, 5);
        if (q.body.len && !q.dones)
            some = 1;
    }
    assert_int_equal(run_until(f, &q.dones, WAIT_MS), 1);
    assert_true(some);
    assert_int_equal(q.res.end, LV_H1C_OK);
    assert_int_equal(q.heads, 1);
    assert_string_equal(rq_body(&q), "hello world!123");
    conns_are(f, 1, 1); /* the chunked answer ended cleanly: kept */
    lv_buf_free(&q.body);
}

static void test_keepalive_reuse(void **state)
{
    fix_t *f = *state;
    for (int i = 0; i < 3; i++) {
        hello_ok(f);
        conns_are(f, 1, 1);
    }
    assert_int_equal(f->srv.accepts, 1);
    assert_int_equal(f->srv.requests, 3);
}

static void test_conn_close_not_reused(void **state)
{
    fix_t *f = *state;
    f->srv.route = route_conn_close;
    for (int i = 0; i < 2; i++) {
        hello_ok(f);
        conns_are(f, 0, 0);
    }
    assert_int_equal(f->srv.accepts, 2);
}

static void test_server_closes_idle(void **state)
{
    fix_t *f = *state;
    f->srv.route = route_then_close;
    rq_t q;
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_OK);
    conns_are(f, 1, 1);
    run_for(f, 200); /* the server closes it after 50 ms: the idle connection sees it and goes */
    conns_are(f, 0, 0);
    lv_buf_free(&q.body);
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_OK);
    assert_string_equal(rq_body(&q), "hello");
    assert_int_equal(f->srv.accepts, 2);
    lv_buf_free(&q.body);
}

static void test_reused_closed_retried(void **state)
{
    fix_t *f = *state;
    f->srv.route = route_close_second;
    rq_t q;
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_OK);
    conns_are(f, 1, 1);
    lv_buf_free(&q.body);
    /* the second request goes on the idle connection, which the server closes on reading it:
     * sent once more on a new connection */
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_OK);
    assert_int_equal(q.heads, 1);
    assert_string_equal(rq_body(&q), "hello");
    assert_int_equal(f->srv.accepts, 2);
    assert_int_equal(f->srv.requests, 3);
    lv_buf_free(&q.body);
}

/* A reused connection that yields a 408 or bytes that are no response: not this request's answer,
 * sent once more on a new connection (on_head never sees the 408). On a fresh connection the same
 * bytes are the answer: a 408 goes to the caller, junk is a malformed response. */
static void stale_answer_retried(fix_t *f, route_fn route)
{
    f->srv.route = route;
    rq_t q;
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_OK);
    lv_buf_free(&q.body);
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_OK);
    assert_int_equal(q.heads, 1);
    assert_int_equal(q.status, 200);
    assert_string_equal(rq_body(&q), "hello");
    assert_int_equal(f->srv.accepts, 2);
    lv_buf_free(&q.body);
}

static void test_reused_408_retried(void **state) { stale_answer_retried(*state, route_408_second); }
static void test_reused_junk_retried(void **state) { stale_answer_retried(*state, route_junk_second); }

static void test_conn_refused(void **state)
{
    fix_t *f = *state;
    /* a port with nothing listening: bind one, note it, close it */
    uv_tcp_t t;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&f->loop, &t);
    assert_int_equal(uv_tcp_bind(&t, (const struct sockaddr *)&a, 0), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
    int port = ntohs(got.sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    run_for(f, 10);

    rq_t q;
    rq_init(&q, f);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    post_url(f, &q, url, 2000);
    assert_int_equal(run_until(f, &q.dones, WAIT_MS), 1);
    assert_int_equal(q.res.end, LV_H1C_ECONNECT);
    assert_true(q.res.connect_failure);
    assert_int_equal(q.res.sys_errno, ECONNREFUSED);
    assert_string_equal(q.res.why, "connection refused");
    assert_false(q.head_done);
    assert_int_equal(q.heads, 0);
    conns_are(f, 0, 0);
    assert_int_equal(lv_h1c_in_flight(f->h), 0);
}

static void test_connect_timeout(void **state)
{
    fix_t *f = *state;
    rq_t q;
    rq_init(&q, f);
    char url[64];
    hang_url(f, url, sizeof url);
    uv_update_time(&f->loop);
    uint64_t t0 = uv_now(&f->loop);
    post_url(f, &q, url, 200);
    assert_int_equal(run_until(f, &q.dones, WAIT_MS), 1);
    if (!q.res.connect_failure)
        fail_msg("end %d errno %d: %s (status %d)", q.res.end, q.res.sys_errno, q.res.why, q.status);
    assert_true(q.res.connect_failure);
    assert_int_equal(q.res.end, LV_H1C_ECONNECT_TIMEOUT);
    assert_string_equal(q.res.why, "connect timed out");
    assert_int_equal(q.res.sys_errno, 0);
    uv_update_time(&f->loop);
    assert_true(uv_now(&f->loop) - t0 >= 190);
    assert_true(uv_now(&f->loop) - t0 < 900); /* before the SYN's first retry at 1 s */
    conns_are(f, 0, 0);
}

static void test_empty_reply(void **state)
{
    fix_t *f = *state;
    f->srv.route = route_empty;
    rq_t q;
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_EEMPTY);
    assert_string_equal(q.res.why, "empty reply from server");
    assert_false(q.res.connect_failure);
    assert_int_equal(f->srv.accepts, 1); /* a fresh connection: not retried */
    conns_are(f, 0, 0);
}

static void test_closed_mid_body(void **state)
{
    fix_t *f = *state;
    f->srv.route = route_mid_body;
    rq_t q;
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_ERECV);
    assert_string_equal(q.res.why, "connection closed before the response ended");
    assert_int_equal(q.heads, 1);
    assert_true(q.head_done);
    assert_int_equal(q.status, 200);
    assert_string_equal(rq_body(&q), "abcdefghij");
    conns_are(f, 0, 0);
    lv_buf_free(&q.body);
}

static void test_malformed(void **state)
{
    fix_t *f = *state;
    f->srv.route = route_malformed;
    rq_t q;
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_EPARSE);
    assert_int_equal(q.heads, 0);
    assert_false(q.res.connect_failure);
    run_for(f, 50);
    conns_are(f, 0, 0);
    assert_int_equal(f->srv.client_closes, 1);
}

static void test_body_abort(void **state)
{
    fix_t *f = *state;
    f->srv.route = route_chunked;
    rq_t q;
    rq_init(&q, f);
    q.abort_body = 7;
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_EABORTED);
    assert_string_equal(rq_body(&q), "hello"); /* one call, then nothing */
    conns_are(f, 0, 0);
    lv_buf_free(&q.body);
    /* the aborted connection was not reused */
    f->srv.route = route_hello;
    rq_init(&q, f);
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_OK);
    assert_int_equal(f->srv.accepts, 2);
    lv_buf_free(&q.body);
}

static void test_stray_bytes_not_kept(void **state)
{
    fix_t *f = *state;
    f->srv.route = route_stray;
    hello_ok(f);
    conns_are(f, 0, 0);
}

static void test_no_body_kept(void **state)
{
    fix_t *f = *state;
    f->srv.route = route_204;
    for (int i = 0; i < 2; i++) {
        rq_t q;
        rq_init(&q, f);
        post_wait(f, &q);
        assert_int_equal(q.res.end, LV_H1C_OK);
        assert_int_equal(q.heads, 1);
        assert_int_equal(q.status, 204);
        assert_int_equal(q.body.len, 0);
        conns_are(f, 1, 1);
    }
    assert_int_equal(f->srv.accepts, 1);
}

static void test_head_abort(void **state)
{
    fix_t *f = *state;
    rq_t q;
    rq_init(&q, f);
    q.abort_head = 1;
    post_wait(f, &q);
    assert_int_equal(q.res.end, LV_H1C_EABORTED);
    assert_int_equal(q.heads, 1);
    assert_int_equal(q.body.len, 0); /* no body after an aborting on_head */
    assert_true(q.head_done);
    conns_are(f, 0, 0);
}

static void test_cancel_during_connect(void **state)
{
    fix_t *f = *state;
    rq_t q1, q2, q3;
    rq_init(&q1, f);
    rq_init(&q2, f);
    rq_init(&q3, f);
    q1.must_not_call = q2.must_not_call = q3.must_not_call = true;
    /* a connect that hangs, a loopback connect not yet completed, a name being resolved */
    char url[64];
    hang_url(f, url, sizeof url);
    lv_h1c_req_t *r1 = post_url(f, &q1, url, 3000);
    lv_h1c_req_t *r2 = post(f, &q2);
    snprintf(url, sizeof url, "http://localhost:%d/", f->srv.port);
    lv_h1c_req_t *r3 = post_url(f, &q3, url, 3000);
    assert_int_equal(lv_h1c_in_flight(f->h), 3);
    lv_h1c_cancel(r2);
    lv_h1c_cancel(r3);
    run_for(f, 20);
    lv_h1c_cancel(r1);
    assert_int_equal(lv_h1c_in_flight(f->h), 0);
    run_for(f, 300);
    assert_int_equal(q1.dones + q2.dones + q3.dones, 0);
    assert_int_equal(f->late_callbacks, 0);
    conns_are(f, 0, 0);
    assert_int_equal(f->srv.requests, 0);
}

static void test_cancel_during_response(void **state)
{
    fix_t *f = *state;
    f->srv.route = route_forever;
    rq_t q;
    rq_init(&q, f);
    lv_h1c_req_t *r = post(f, &q);
    assert_int_equal(run_until(f, &q.bodies, WAIT_MS), 1);
    assert_string_equal(rq_body(&q), "data");
    q.must_not_call = true;
    lv_h1c_cancel(r);
    run_for(f, 200);
    assert_int_equal(q.dones, 0);
    assert_int_equal(f->srv.client_closes, 1); /* the connection was closed, not kept */
    conns_are(f, 0, 0);
    lv_buf_free(&q.body);
}

static void test_destroy_in_flight(void **state)
{
    fix_t *f = *state;
    rq_t q0, q[4];
    /* one idle connection */
    rq_init(&q0, f);
    post_wait(f, &q0);
    lv_buf_free(&q0.body);
    for (int i = 0; i < 4; i++) {
        rq_init(&q[i], f);
        q[i].must_not_call = true;
    }
    f->srv.route = route_silent;
    char url[64];
    hang_url(f, url, sizeof url);
    post_url(f, &q[0], url, 3000);
    snprintf(url, sizeof url, "http://localhost:%d/", f->srv.port);
    post_url(f, &q[1], url, 3000);
    post(f, &q[2]); /* reuses the idle connection; no answer comes */
    post(f, &q[3]);
    run_for(f, 100);
    assert_true(f->srv.requests >= 3); /* q0, q2, q3 (and q1's once resolved) */
    lv_h1c_destroy(f->h);
    f->h = NULL;
    run_for(f, 300);
    for (int i = 0; i < 4; i++)
        assert_int_equal(q[i].dones, 0);
    assert_int_equal(f->late_callbacks, 0);
    assert_true(f->srv.client_closes >= 2);
}

#define MANY 200
static void test_many_concurrent(void **state)
{
    fix_t *f = *state;
    static rq_t q[MANY];
    int done = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < MANY; i++) {
            rq_init(&q[i], f);
            post(f, &q[i]);
        }
        assert_int_equal(lv_h1c_in_flight(f->h), MANY);
        for (int i = 0; i < 500 && lv_h1c_in_flight(f->h); i++)
            run_for(f, 10);
        assert_int_equal(lv_h1c_in_flight(f->h), 0);
        for (int i = 0; i < MANY; i++) {
            assert_int_equal(q[i].dones, 1);
            if (q[i].res.end != LV_H1C_OK)
                fail_msg("request %d: %d %s", i, q[i].res.end, q[i].res.why);
            assert_string_equal(rq_body(&q[i]), "hello");
            lv_buf_free(&q[i].body);
            done++;
        }
        conns_are(f, MANY, MANY);
    }
    assert_int_equal(done, 2 * MANY);
    assert_int_equal(f->srv.accepts, MANY); /* the second round went on the kept connections */
    assert_int_equal(f->srv.requests, 2 * MANY);
}

static void test_localhost(void **state)
{
    fix_t *f = *state;
    rq_t q;
    rq_init(&q, f);
    char url[64];
    snprintf(url, sizeof url, "http://localhost:%d/v1/x", f->srv.port);
    post_url(f, &q, url, 2000);
    assert_int_equal(run_until(f, &q.dones, WAIT_MS), 1);
    if (q.res.end != LV_H1C_OK)
        fail_msg("%d %s", q.res.end, q.res.why);
    assert_string_equal(rq_body(&q), "hello");
    assert_non_null(strstr(f->srv.last_head, "\r\nHost: localhost:"));
    lv_buf_free(&q.body);
}

static void test_resolve_failure(void **state)
{
    fix_t *f = *state;
    rq_t q;
    rq_init(&q, f);
    post_url(f, &q, "http://no-such-host.invalid/", 3000);
    assert_int_equal(run_until(f, &q.dones, WAIT_MS), 1);
    assert_true(q.res.connect_failure);
    assert_true(q.res.end == LV_H1C_ERESOLVE || q.res.end == LV_H1C_ECONNECT_TIMEOUT);
    if (q.res.end == LV_H1C_ERESOLVE)
        assert_string_equal(q.res.why, "cannot resolve host");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test_setup_teardown(test_content_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reused_408_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reused_junk_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_header_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_close_not_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_closes_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reused_closed_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_mid_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stray_bytes_not_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_body_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_during_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_during_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_localhost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
