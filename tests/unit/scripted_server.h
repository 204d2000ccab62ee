/* scripted_server.h - a tiny HTTP/1.1 server for the backend unit tests (test_chat_live.c,
 * test_wire_formats.c): it listens on 127.0.0.1 on the test's own libuv loop, reads one request per
 * connection, hands it to the test's route(), and plays the answer the route planned as a list of
 * writes, one per timer tick, so a stream arrives in pieces as a real server flushes it. It
 * records what it was sent (path, Authorization, Accept, body) for the test to check.
 *
 * Test-only and header-only: every function is static, and each one is used by both tests (the
 * unit rule in the Makefile builds one .c per test binary, so a shared .c would need a new rule).
 *
 * Lifetimes: a connection is freed when both of its handles have closed (after ss_close, which the
 * server calls itself when the answer is out or the client hangs up). ss_stop closes every
 * connection and the listener; the test then runs the loop until the handles are gone. A test
 * that extends the server or a connection embeds ss_srv_t / ss_conn_t as a member and gets back
 * to its own struct with LV_CONTAINER_OF (ss_ops_t.conn_size says how much to allocate). */
#ifndef SCRIPTED_SERVER_H
#define SCRIPTED_SERVER_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <uv.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_queue.h"

typedef struct ss_srv ss_srv_t;
typedef struct ss_conn ss_conn_t;

/** What a test plugs into the server. Copied by ss_start. */
typedef struct {
    /* A whole request arrived (head and Content-Length body): answer it with ss_write / ss_play,
     * or not at all (a server that never answers). body is NUL-terminated. */
    void (*route)(ss_conn_t *c, const char *method, const char *path, const char *body);
    /* optional: the connection is closing; let go of what route attached to it */
    void (*closing)(ss_conn_t *c);
    /* optional: the last planned write went out (before the connection ends or stays open) */
    void (*played)(ss_conn_t *c);
    /* bytes allocated per connection: a test's struct with ss_conn_t inside; 0 = sizeof(ss_conn_t) */
    size_t conn_size;
} ss_ops_t;

/** One accepted connection. */
struct ss_conn {
    lv_queue_t link; /* on srv->conns */
    ss_srv_t *srv;
    uv_tcp_t tcp;
    uv_timer_t timer; /* plays the planned writes */
    int open_handles;
    int closing;
    int handled; /* the request went to route */
    lv_buf_t in;
    /* the answer after the head, one write per timer tick */
    char **writes;
    size_t *write_lens;
    size_t n_writes, next_write;
    int end_chunked; /* after the last write, in the same tick, send the last chunk "0\r\n\r\n" */
    int keep_open;   /* do not end the response after the plan (a server that hangs on) */
};

/** The server. Fields below "what it saw" are for the test to read. */
struct ss_srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    lv_queue_t conns;
    ss_ops_t ops;
    int listening;        /* the listener is open */
    int listener_closing; /* uv_close() has not called back yet: the handle is not reusable */
    int stopping;         /* ss_stop is closing everything */
    /* what it saw */
    int requests;
    int closed_by_client; /* connections the client closed before we finished */
    char last_auth[256];
    char last_accept[128];
    char last_path[128];
    lv_buf_t last_body;
};

typedef struct {
    uv_write_t req;
    ss_conn_t *conn;
    int close_after;
    char data[];
} ss_wreq_t;

static void ss_on_conn_handle_closed(uv_handle_t *h)
{
    ss_conn_t *c = h->data;
    if (--c->open_handles == 0) {
        for (size_t i = 0; i < c->n_writes; i++)
            free(c->writes[i]);
        free(c->writes);
        free(c->write_lens);
        lv_buf_free(&c->in);
        free(c);
    }
}

/** End the connection (idempotent); ops.closing runs first. */
static void ss_close(ss_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->srv->ops.closing)
        c->srv->ops.closing(c);
    lv_queue_remove(&c->link);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, ss_on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, ss_on_conn_handle_closed);
}

static void ss_on_written(uv_write_t *req, int status)
{
    ss_wreq_t *w = LV_CONTAINER_OF(req, ss_wreq_t, req);
    (void)status;
    if (w->close_after)
        ss_close(w->conn);
    free(w);
}

/** Write p[0..n) now (copied); close_after: end the connection once it is out. Nothing once
 * the connection is closing. */
static void ss_write(ss_conn_t *c, const char *p, size_t n, int close_after)
{
    if (c->closing)
        return;
    ss_wreq_t *w = malloc(sizeof *w + n);
    assert_non_null(w);
    memcpy(w->data, p, n);
    w->conn = c;
    w->close_after = close_after;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    assert_int_equal(uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, ss_on_written), 0);
}

/** Plan one write of p[0..n) (copied), framed as one HTTP chunk when chunked. */
static void ss_plan_add(ss_conn_t *c, const char *p, size_t n, int chunked)
{
    size_t hl = 0;
    char hdr[32];
    if (chunked)
        hl = (size_t)snprintf(hdr, sizeof hdr, "%zx\r\n", n);
    c->writes = realloc(c->writes, (c->n_writes + 1) * sizeof *c->writes);
    c->write_lens = realloc(c->write_lens, (c->n_writes + 1) * sizeof *c->write_lens);
    assert_non_null(c->writes);
    assert_non_null(c->write_lens);
    char *w = malloc(hl + n + 2);
    assert_non_null(w);
    memcpy(w, hdr, hl);
    memcpy(w + hl, p, n);
    if (chunked) {
        memcpy(w + hl + n, "\r\n", 2);
        n += 2;
    }
    c->writes[c->n_writes] = w;
    c->write_lens[c->n_writes++] = hl + n;
}

/** Plan body[0..len) as writes of `piece` bytes (the last one shorter). */
static void ss_plan_pieces(ss_conn_t *c, const char *body, size_t len, size_t piece, int chunked)
{
    for (size_t off = 0; off < len; off += LV_MIN(piece, len - off))
        ss_plan_add(c, body + off, LV_MIN(piece, len - off), chunked);
}

static void ss_on_tick(uv_timer_t *t)
{
    ss_conn_t *c = t->data;
    if (c->next_write < c->n_writes) {
        size_t i = c->next_write++;
        ss_write(c, c->writes[i], c->write_lens[i], 0);
    }
    if (c->next_write >= c->n_writes) {
        uv_timer_stop(&c->timer);
        if (c->srv->ops.played)
            c->srv->ops.played(c);
        if (c->keep_open)
            return;
        if (c->end_chunked)
            ss_write(c, "0\r\n\r\n", 5, 1);
        else
            ss_write(c, "", 0, 1); /* close once everything is out */
    }
}

/** Send head now, then the planned writes, one every delay_ms (the first after delay_ms), then
 * end the response: the last chunk when end_chunked, and close, unless keep_open. */
static void ss_play(ss_conn_t *c, const char *head, unsigned delay_ms)
{
    ss_write(c, head, strlen(head), 0);
    uv_timer_start(&c->timer, ss_on_tick, delay_ms, delay_ms);
}

/** The value of header `name` (case-insensitive) in a request head, blanks before it skipped,
 * copied into out; "" when absent. */
static void ss_header_value(const char *head, const char *name, char *out, size_t out_size)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r");
            snprintf(out, out_size, "%.*s", (int)vl, v);
            return;
        }
    }
}

static void ss_try_handle(ss_conn_t *c)
{
    if (c->handled || !c->in.len)
        return;
    const char *end = strstr(c->in.data, "\r\n\r\n");
    if (!end)
        return;
    size_t head_len = (size_t)(end - c->in.data) + 4;
    char cl[32];
    char *head = strndup(c->in.data, head_len);
    assert_non_null(head);
    ss_header_value(head, "Content-Length", cl, sizeof cl);
    size_t body_len = cl[0] ? (size_t)strtoul(cl, NULL, 10) : 0;
    if (c->in.len < head_len + body_len) {
        free(head);
        return;
    }
    c->handled = 1;
    ss_srv_t *s = c->srv;
    s->requests++;
    char method[16] = "", path[128] = "";
    sscanf(head, "%15s %127s", method, path);
    snprintf(s->last_path, sizeof s->last_path, "%s", path);
    ss_header_value(head, "Authorization", s->last_auth, sizeof s->last_auth);
    ss_header_value(head, "Accept", s->last_accept, sizeof s->last_accept);
    lv_buf_reset(&s->last_body);
    assert_int_equal(lv_buf_append(&s->last_body, c->in.data + head_len, body_len), 0);
    s->ops.route(c, method, path, s->last_body.data ? s->last_body.data : "");
    free(head);
}

static void ss_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void ss_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    ss_conn_t *c = st->data;
    if (nread > 0) {
        assert_int_equal(lv_buf_append(&c->in, buf->base, (size_t)nread), 0);
        ss_try_handle(c);
    } else if (nread < 0) {
        if (!c->closing)
            c->srv->closed_by_client++;
        ss_close(c);
    }
    free(buf->base);
}

static void ss_on_connection(uv_stream_t *server, int status)
{
    ss_srv_t *s = server->data;
    assert_int_equal(status, 0);
    ss_conn_t *c = calloc(1, s->ops.conn_size ? s->ops.conn_size : sizeof *c);
    assert_non_null(c);
    c->srv = s;
    lv_buf_init(&c->in, 16 << 20);
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    lv_queue_insert_tail(&s->conns, &c->link);
    assert_int_equal(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
    uv_read_start((uv_stream_t *)&c->tcp, ss_on_alloc, ss_on_read);
}

static void ss_on_listener_closed(uv_handle_t *h)
{
    ss_srv_t *s = h->data;
    s->listener_closing = 0;
}

/** Open the listener on port (0: any free one; s->port says which). */
static void ss_listen(ss_srv_t *s, int port)
{
    struct sockaddr_in a;
    assert_false(s->listener_closing);
    uv_ip4_addr("127.0.0.1", port, &a);
    assert_int_equal(uv_tcp_init(s->loop, &s->listener), 0);
    s->listener.data = s;
    assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 128, ss_on_connection), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len);
    s->port = ntohs(got.sin_port);
    s->listening = 1;
}

/** Close the listener: new connections are refused; accepted ones carry on. */
static void ss_unlisten(ss_srv_t *s)
{
    if (!s->listening)
        return;
    s->listening = 0;
    s->listener_closing = 1;
    uv_close((uv_handle_t *)&s->listener, ss_on_listener_closed);
}

/** The server process "dies": its listener and every open connection close, as when a backend
 * is killed (ss_unlisten alone leaves kept-alive connections answering). ss_listen revives it. */
static inline void ss_die(ss_srv_t *s)
{
    while (!lv_queue_empty(&s->conns))
        ss_close(LV_CONTAINER_OF(lv_queue_head(&s->conns), ss_conn_t, link));
    ss_unlisten(s);
}

/** Start a server on loop, listening on a free port. ops->route is required. */
static void ss_start(ss_srv_t *s, uv_loop_t *loop, const ss_ops_t *ops)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->ops = *ops;
    assert_non_null(s->ops.route);
    lv_queue_init(&s->conns);
    lv_buf_init(&s->last_body, 16 << 20);
    ss_listen(s, 0);
}

/** Close every connection and the listener; run the loop afterwards to let the handles go. */
static void ss_stop(ss_srv_t *s)
{
    s->stopping = 1;
    while (!lv_queue_empty(&s->conns))
        ss_close(LV_CONTAINER_OF(lv_queue_head(&s->conns), ss_conn_t, link));
    ss_unlisten(s);
    lv_buf_free(&s->last_body);
}

#endif
