/* test_http_conn.c - lv_http's connection sockets (src/backend/lv_http.c): a keep-alive connection
 * is reused across transfers, one the server closes while it idles in curl's cache neither spins
 * the loop nor breaks the next request (whose new socket usually gets the same descriptor number),
 * and a burst's connections survive the dip after it. Against a tiny keep-alive HTTP server on the
 * same libuv loop (127.0.0.1, port 0). Every test ends with uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <uv.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_http.h"
#include "lv_queue.h"

/* ---------- the server: answers every GET head with "ok", keeping the connection ---------- */

typedef struct {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    lv_queue_t conns;
    int accepted;      /* connections accepted so far */
    int requests;      /* heads answered */
    int close_after;   /* close each connection once its answer is out (without saying so) */
} srv_t;

typedef struct {
    lv_queue_t link;
    srv_t *srv;
    uv_tcp_t tcp;
    lv_buf_t in;
    int closing;
} conn_t;

typedef struct {
    uv_write_t req;
    conn_t *c;
} wreq_t;

static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

static void conn_freed(uv_handle_t *h)
{
    conn_t *c = h->data;
    lv_buf_free(&c->in);
    free(c);
}

static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    lv_queue_remove(&c->link);
    uv_close((uv_handle_t *)&c->tcp, conn_freed);
}

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = LV_CONTAINER_OF(req, wreq_t, req);
    if (status == 0 && w->c->srv->close_after)
        conn_close(w->c);
    free(w);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    static char buf[4096];
    *b = uv_buf_init(buf, sizeof buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    assert_int_equal(lv_buf_append(&c->in, b->base, (size_t)n), 0);
    char *end;
    while (c->in.len && (end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4)) != NULL) {
        lv_buf_consume(&c->in, (size_t)(end + 4 - c->in.data));
        c->srv->requests++;
        wreq_t *w = calloc(1, sizeof *w);
        assert_non_null(w);
        w->c = c;
        uv_buf_t out = uv_buf_init((char *)answer, sizeof answer - 1);
        assert_int_equal(uv_write(&w->req, (uv_stream_t *)&c->tcp, &out, 1, on_written), 0);
    }
}

static void on_connection(uv_stream_t *l, int status)
{
    srv_t *srv = l->data;
    assert_int_equal(status, 0);
    conn_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->srv = srv;
    lv_buf_init(&c->in, 65536);
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    lv_queue_insert_tail(&srv->conns, &c->link);
    srv->accepted++;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void srv_start(srv_t *srv, uv_loop_t *loop)
{
    struct sockaddr_in a;
    struct sockaddr_storage got;
    int len = sizeof got;
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    lv_queue_init(&srv->conns);
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&srv->listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv->listener, 64, on_connection), 0);
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&got, &len);
    srv->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static void srv_stop(srv_t *srv)
{
    while (!lv_queue_empty(&srv->conns))
        conn_close(LV_CONTAINER_OF(lv_queue_head(&srv->conns), conn_t, link));
    uv_close((uv_handle_t *)&srv->listener, NULL);
}

/* ---------- the fixture: a loop, the server, an lv_http_t ---------- */

#define MAX_XFERS 16

typedef struct fx fx_t;

typedef struct {
    fx_t *f;
    int i;
} slot_t;

struct fx {
    uv_loop_t loop;
    srv_t srv;
    lv_http_t *http;
    char url[64];
    CURL *easy[MAX_XFERS];
    slot_t slot[MAX_XFERS];
    long status[MAX_XFERS];
    int n_done;
    uv_check_t check;
    unsigned long turns; /* loop iterations, counted by check */
};

static void on_check(uv_check_t *c)
{
    fx_t *f = c->data;
    f->turns++;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    srv_start(&f->srv, &f->loop);
    assert_int_equal(lv_http_create(&f->loop, &f->http), 0);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/x", f->srv.port);
    uv_check_init(&f->loop, &f->check);
    f->check.data = f;
    uv_check_start(&f->check, on_check);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    lv_http_destroy(f->http); /* with idle connections in curl's cache */
    for (int i = 0; i < MAX_XFERS; i++)
        if (f->easy[i])
            curl_easy_cleanup(f->easy[i]);
    srv_stop(&f->srv);
    uv_close((uv_handle_t *)&f->check, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static void on_done(void *ud, CURL *easy, CURLcode rc)
{
    slot_t *s = ud;
    long st = 0;
    assert_int_equal(rc, CURLE_OK);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &st);
    s->f->status[s->i] = st;
    s->f->n_done++;
}

static void start(fx_t *f, int i)
{
    if (!f->easy[i])
        f->easy[i] = curl_easy_init();
    assert_non_null(f->easy[i]);
    curl_easy_setopt(f->easy[i], CURLOPT_URL, f->url);
    curl_easy_setopt(f->easy[i], CURLOPT_WRITEFUNCTION, discard);
    f->slot[i].f = f;
    f->slot[i].i = i;
    f->status[i] = 0;
    assert_int_equal(lv_http_add(f->http, f->easy[i], on_done, &f->slot[i]), 0);
}

static void run_until_done(fx_t *f, int n_done)
{
    uint64_t end = lv_now_ms() + 5000;
    while (f->n_done < n_done) {
        if (lv_now_ms() > end)
            fail_msg("timed out with %d of %d transfers done", f->n_done, n_done);
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static void on_run_for(uv_timer_t *t) { (void)t; }

/* Run the loop for ms (a one-shot timer is inactive once it has fired). */
static void run_for(fx_t *f, unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    uv_timer_start(&t, on_run_for, ms, 0);
    while (uv_is_active((uv_handle_t *)&t))
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* ---------- tests ---------- */

static void test_keepalive_reused(void **state)
{
    fx_t *f = *state;
    for (int k = 0; k < 20; k++) {
        start(f, 0);
        run_until_done(f, k + 1);
        assert_int_equal(f->status[0], 200);
    }
    assert_int_equal(f->srv.requests, 20);
    assert_int_equal(f->srv.accepted, 1);
    /* idle in the cache with READABLE armed: nothing wakes the loop */
    unsigned long before = f->turns;
    run_for(f, 100);
    assert_true(f->turns - before < 10);
}

/* The server closes each connection right after its answer: the FIN reaches a socket that idles
 * in curl's cache and is still armed for READABLE. It must wake the loop once, not on every turn
 * (a level-triggered EOF), and the next request must go out on a new connection, whose socket
 * mostly gets the closed one's descriptor number back. */
static void test_closed_while_idle(void **state)
{
    fx_t *f = *state;
    f->srv.close_after = 1;
    for (int k = 0; k < 20; k++) {
        start(f, 0);
        run_until_done(f, k + 1);
        assert_int_equal(f->status[0], 200);
        unsigned long before = f->turns;
        run_for(f, 30);
        assert_true(f->turns - before < 10);
    }
    assert_int_equal(f->srv.requests, 20);
    assert_int_equal(f->srv.accepted, 20);
}

/* Eight at once, all done, eight at once again: the second burst finds the first one's
 * connections (curl's own default keeps 4 per transfer in flight when one ends, so the dip
 * closed half of them). */
static void test_burst_connections_kept(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < 8; i++)
        start(f, i);
    run_until_done(f, 8);
    run_for(f, 20);
    for (int i = 0; i < 8; i++)
        start(f, i);
    run_until_done(f, 16);
    for (int i = 0; i < 8; i++)
        assert_int_equal(f->status[i], 200);
    assert_int_equal(f->srv.requests, 16);
    assert_int_equal(f->srv.accepted, 8);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keepalive_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_while_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_connections_kept, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
