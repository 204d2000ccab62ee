/* lv_h1c.c - a small HTTP/1.1 client on one libuv loop: POST, stream the answer, keep-alive per origin.
 *
 * Objects: a request (lv_h1c_req_t, one allocation with its request head inline), a connection
 * (conn_t: a uv_tcp_t and a uv_timer_t, freed once both have closed), an origin (host and port,
 * with its LIFO list of idle connections; kept until destroy: a process talks to a handful of
 * backends). A request is on at most one connection and a busy connection carries one request.
 *
 * A new connection is made per request that finds no idle one: it resolves (names only), connects
 * under the connection's timer (connect_timeout_ms, resolution included), then sends. Failures found
 * while starting (a synchronous uv error) are reported from that same timer at zero delay, so no
 * callback runs inside lv_h1c_post. A name's addresses are tried in order on any connect failure
 * (the rest of the list moves to a fresh connection: a socket whose connect failed is not reusable),
 * so "localhost" reaches a server listening on 127.0.0.1 only even when ::1 comes first.
 *
 * Reading: every connection reads into the one 64 KiB buffer of its client (read callbacks run
 * one at a time and libuv hands the bytes over before the next alloc), and libuv stops after a
 * partial read, so a readable event is one recv. Idle connections keep reading: a server close or
 * stray bytes close them at once instead of at the next request. */
#include "lv_h1c.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lv_common.h"
#include "lv_log.h"
#include "lv_queue.h"

#define H1C_RBUF_SIZE (64 * 1024)
#define H1C_SWEEP_MS (LV_H1C_IDLE_MS / 6) /* idle connections close 60..70 s after their last use */
#define H1C_ABORT 1000                    /* the body callback's "the caller aborted" (not an LV_E*) */
#define H1C_STALE 1001                    /* what came on a reused connection was not this answer */

typedef struct h1c_origin {
    lv_queue_t link; /* on h->origins */
    lv_queue_t idle; /* conn_t.idle_link: head = most recently used, tail = oldest */
    size_t n_idle;
    uint16_t port;
    char host[LV_H1C_HOST_MAX + 1];
} h1c_origin_t;

typedef enum {
    C_RESOLVING,  /* uv_getaddrinfo in flight (the tcp handle is not initialised yet) */
    C_CONNECTING, /* uv_tcp_connect in flight, connect timer running */
    C_BUSY,       /* carries conn->req */
    C_IDLE,       /* on its origin's idle list */
    C_CLOSING,    /* uv_close called; freed when its handles have closed */
} conn_state_t;

typedef struct h1c_gai h1c_gai_t;

typedef struct h1c_conn {
    lv_queue_t link;      /* on h->conns while not closing */
    lv_queue_t idle_link; /* on origin->idle while C_IDLE */
    lv_h1c_t *h;
    h1c_origin_t *o;
    lv_h1c_req_t *req; /* C_RESOLVING..C_BUSY: the request it is for; NULL otherwise */
    conn_state_t state;
    uv_tcp_t tcp;
    uv_timer_t timer; /* connect timeout, or a zero-delay report of a failure found while starting */
    uv_connect_t connect;
    uv_write_t write;
    h1c_gai_t *gai;           /* C_RESOLVING */
    struct addrinfo *ai_head; /* resolved addresses, until connected (freed then) */
    struct addrinfo *ai_next; /* the next one to try when this connect fails */
    int handles;              /* open handles: freed at 0 once closing */
    bool tcp_inited;
    bool reused;              /* carried a request before the current one */
    bool writing;             /* the request's uv_write has not called back */
    int pending_err;          /* a failure to report from the timer (negative uv code) */
    lv_h1c_end_t pending_end;
    uint64_t idle_since;      /* uv_now when it went idle */
} conn_t;

/* A uv_getaddrinfo in flight: it cannot be closed, only cancelled (which may come too late), so
 * it outlives a connection closed meanwhile; its callback then just frees it. */
struct h1c_gai {
    uv_getaddrinfo_t req;
    conn_t *conn; /* NULL once the connection let go of it */
};

struct lv_h1c_req {
    lv_queue_t link; /* on h->reqs */
    lv_h1c_t *h;
    h1c_origin_t *o;
    conn_t *conn; /* the connection carrying or making it; NULL between connections */
    lv_h1c_cb_t cb;
    void *ud;
    const char *body;
    size_t body_len;
    int connect_timeout_ms;
    uint64_t connect_deadline; /* uv_now by which the current new connection must be up */
    lv_h1resp_t resp;
    bool got_bytes;     /* a response byte arrived on the current connection */
    bool retried;       /* already sent again after a reused connection failed */
    bool written;       /* the whole request went out on the current connection */
    bool head_reported; /* on_head ran */
    bool aborted;       /* on_head or on_body returned non-zero */
    size_t head_len;
    char head[]; /* the request head, built once at post */
};

struct lv_h1c {
    uv_loop_t *loop;
    lv_queue_t origins;
    lv_queue_t conns; /* every connection not closing */
    lv_queue_t reqs;  /* every request in flight */
    size_t n_reqs, n_conns, n_idle;
    uv_timer_t sweep; /* closes idle connections past LV_H1C_IDLE_MS; runs while any is idle */
    int handles;      /* the sweep timer and every connection not yet freed */
    bool destroying;
    char rbuf[H1C_RBUF_SIZE];
};

static void conn_start(lv_h1c_req_t *r);
static void req_fail(lv_h1c_req_t *r, lv_h1c_end_t end, int uv_err, const char *why);

/* ---------------------------------------------------------------- URL */

static bool host_char_ok(char ch)
{
    /* RFC 3986 reg-name without percent-encoding or sub-delims: what DNS names and IPv4 use */
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '.' || ch == '_';
}

int lv_h1c_url_parse(const char *url, lv_h1c_url_t *out)
{
    if (!url || !out)
        return LV_EINVAL;
    memset(out, 0, sizeof *out);
    if (strncasecmp(url, "http://", 7) != 0)
        return LV_EINVAL;
    const char *a = url + 7;
    size_t alen = strcspn(a, "/?#");
    if (a[alen] == '?' || a[alen] == '#')
        return LV_EINVAL;
    const char *path = a + alen;
    if (memchr(a, '@', alen))
        return LV_EINVAL;

    const char *host, *port_s = NULL;
    size_t hlen, plen = 0;
    if (alen && a[0] == '[') {
        const char *rb = memchr(a, ']', alen);
        if (!rb)
            return LV_EINVAL;
        host = a + 1;
        hlen = (size_t)(rb - host);
        const char *after = rb + 1;
        size_t rest = alen - (size_t)(after - a);
        if (rest) {
            if (after[0] != ':')
                return LV_EINVAL;
            port_s = after + 1;
            plen = rest - 1;
        }
        char tmp[64];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof tmp)
            return LV_EINVAL;
        memcpy(tmp, host, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return LV_EINVAL;
    } else {
        const char *colon = memchr(a, ':', alen);
        host = a;
        hlen = colon ? (size_t)(colon - a) : alen;
        if (colon) {
            port_s = colon + 1;
            plen = alen - hlen - 1;
        }
        for (size_t i = 0; i < hlen; i++)
            if (!host_char_ok(host[i]))
                return LV_EINVAL;
    }
    if (hlen == 0 || hlen > LV_H1C_HOST_MAX)
        return LV_EINVAL;

    unsigned port = 80;
    if (port_s) {
        if (plen == 0 || plen > 5)
            return LV_EINVAL;
        port = 0;
        for (size_t i = 0; i < plen; i++) {
            if (port_s[i] < '0' || port_s[i] > '9')
                return LV_EINVAL;
            port = port * 10 + (unsigned)(port_s[i] - '0');
        }
        if (port < 1 || port > 65535)
            return LV_EINVAL;
    }

    size_t pathlen = strlen(path);
    if (pathlen > LV_H1C_PATH_MAX)
        return LV_EINVAL;
    for (size_t i = 0; i < pathlen; i++)
        if ((unsigned char)path[i] < 0x21 || (unsigned char)path[i] > 0x7e || path[i] == '?' || path[i] == '#')
            return LV_EINVAL;

    /* host <= 255 and port <= 5 digits: authority is at most 255 + 1 + 5 (a bracketed host is an
     * IPv6 literal, 45 at most), which the field holds with its NUL */
    if (alen >= sizeof out->authority)
        return LV_EINVAL;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = (uint16_t)port;
    memcpy(out->authority, a, alen);
    out->authority[alen] = '\0';
    memcpy(out->path, path, pathlen + 1);
    return 0;
}

/* ---------------------------------------------------------------- results */

const char *lv_connect_why(int uv_err, char *buf, size_t size)
{
    switch (uv_err) {
    case 0:
        return "cannot connect";
    case UV_ECONNREFUSED:
        return "connection refused";
    case UV_ETIMEDOUT:
        return "connect timed out";
    case UV_EHOSTUNREACH:
    case UV_ENETUNREACH:
        return "no route to host";
    default:
        snprintf(buf, size, "cannot connect: %s", uv_strerror(uv_err));
        return buf;
    }
}

/* ---------------------------------------------------------------- connections */

static void h1c_maybe_free(lv_h1c_t *h)
{
    if (h->destroying && h->handles == 0)
        free(h);
}

static void conn_on_handle_closed(uv_handle_t *hd)
{
    conn_t *c = hd->data;
    if (--c->handles > 0)
        return;
    lv_h1c_t *h = c->h;
    free(c);
    h->handles--;
    h1c_maybe_free(h);
}

/* Close a connection (idempotent). Its request, if any, is detached first: the caller has already
 * finished, retried or freed it. */
static void conn_close(conn_t *c)
{
    if (c->state == C_CLOSING)
        return;
    lv_h1c_t *h = c->h;
    if (c->state == C_IDLE) {
        lv_queue_remove(&c->idle_link);
        c->o->n_idle--;
        h->n_idle--;
    }
    if (c->req && c->req->conn == c)
        c->req->conn = NULL;
    c->req = NULL;
    if (c->gai) {
        c->gai->conn = NULL;
        uv_cancel((uv_req_t *)&c->gai->req); /* best effort: its callback frees it either way */
        c->gai = NULL;
    }
    if (c->ai_head) {
        uv_freeaddrinfo(c->ai_head);
        c->ai_head = c->ai_next = NULL;
    }
    c->state = C_CLOSING;
    lv_queue_remove(&c->link);
    h->n_conns--;
    /* pending connect and write requests call back with UV_ECANCELED before the close callback */
    uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
    if (c->tcp_inited)
        uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
}

static conn_t *conn_new(lv_h1c_t *h, h1c_origin_t *o)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->h = h;
    c->o = o;
    lv_queue_init(&c->idle_link);
    uv_timer_init(h->loop, &c->timer); /* cannot fail on unix */
    c->timer.data = c;
    c->handles = 1;
    h->handles++;
    lv_queue_insert_tail(&h->conns, &c->link);
    h->n_conns++;
    return c;
}

static bool conn_try_next(conn_t *c);

static void conn_on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    lv_h1c_req_t *r = c->req;
    if (!r || (c->state != C_RESOLVING && c->state != C_CONNECTING))
        return;
    if (c->pending_err) {
        char buf[128];
        if (c->pending_end == LV_H1C_ECONNECT && conn_try_next(c))
            return;
        const char *why = c->pending_end == LV_H1C_ERESOLVE  ? "cannot resolve host"
                          : c->pending_end == LV_H1C_ENOMEM ? "out of memory"
                                                             : lv_connect_why(c->pending_err, buf, sizeof buf);
        conn_close(c);
        req_fail(r, c->pending_end, c->pending_err, why);
        return;
    }
    conn_close(c);
    req_fail(r, LV_H1C_ECONNECT_TIMEOUT, 0, "connect timed out");
}

/* Report a failure found while starting a connection from its timer, on the next loop turn. */
static void conn_defer_fail(conn_t *c, lv_h1c_end_t end, int uv_err)
{
    c->pending_end = end;
    c->pending_err = uv_err ? uv_err : UV_EINVAL;
    uv_timer_start(&c->timer, conn_on_timer, 0, 0);
}

/* ---------------------------------------------------------------- sending */

static void conn_on_written(uv_write_t *w, int status);

/* Put the request on c (connected): one write of the head and the body in place. */
static int conn_send(conn_t *c, lv_h1c_req_t *r)
{
    c->req = r;
    r->conn = c;
    c->state = C_BUSY;
    r->got_bytes = false;
    r->written = false;
    uv_buf_t bufs[2]; /* libuv copies the array; the bytes stay in r and the caller's body */
    bufs[0].base = r->head;
    bufs[0].len = r->head_len;
    bufs[1].base = (char *)(uintptr_t)r->body;
    bufs[1].len = r->body_len;
    unsigned nbufs = r->body_len ? 2 : 1;
    /* A write that goes out whole needs no write request: libuv ends every uv_write by dropping
     * the stream's POLLOUT interest, and its epoll backend turns that into an epoll_ctl even when
     * POLLOUT was never armed (one per request, measured). Only what the socket did not take goes
     * through uv_write. */
    ssize_t n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
    if (n < 0 && n != UV_EAGAIN)
        return (int)n;
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == r->head_len + r->body_len) {
        r->written = true;
        return 0;
    }
    uv_buf_t *rest = bufs;
    if (done >= rest->len) {
        done -= rest->len;
        rest++;
        nbufs--;
    }
    rest->base += done;
    rest->len -= done;
    int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, rest, nbufs, conn_on_written);
    if (rc == 0)
        c->writing = true;
    return rc;
}

static void conn_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void conn_on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = hd->data;
    buf->base = c->h->rbuf;
    buf->len = sizeof c->h->rbuf;
}

static void conn_on_connect(uv_connect_t *cr, int status)
{
    conn_t *c = cr->handle->data;
    if (status == UV_ECANCELED || c->state != C_CONNECTING)
        return;
    lv_h1c_req_t *r = c->req;
    if (status < 0) {
        char buf[128];
        if (conn_try_next(c))
            return;
        const char *why = lv_connect_why(status, buf, sizeof buf);
        conn_close(c);
        req_fail(r, LV_H1C_ECONNECT, status, why); /* a kernel ETIMEDOUT too: our own deadline is conn_on_timer's */
        return;
    }
    uv_timer_stop(&c->timer);
    if (c->ai_head) {
        uv_freeaddrinfo(c->ai_head);
        c->ai_head = c->ai_next = NULL;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_on_alloc, conn_on_read);
    if (rc == 0)
        rc = conn_send(c, r);
    if (rc < 0) {
        conn_close(c);
        req_fail(r, LV_H1C_ESEND, rc, "cannot send");
    }
}

/* c failed to connect to one of a name's addresses: go on with the next one on a fresh connection
 * (a socket whose connect failed is not reused), under the same deadline. false when none is left. */
static bool conn_try_next(conn_t *c)
{
    lv_h1c_req_t *r = c->req;
    if (!c->ai_next || !r)
        return false;
    conn_t *n = conn_new(c->h, c->o);
    if (!n)
        return false;
    n->ai_head = c->ai_head;
    n->ai_next = c->ai_next;
    c->ai_head = c->ai_next = NULL;
    c->req = NULL;
    conn_close(c);
    n->req = r;
    r->conn = n;
    n->state = C_CONNECTING;
    uint64_t now = uv_now(n->h->loop);
    uv_timer_start(&n->timer, conn_on_timer, r->connect_deadline > now ? r->connect_deadline - now : 0, 0);
    conn_start(r);
    return true;
}

/* Begin connecting c (C_CONNECTING, timer armed) to addr. Failures are deferred to the timer. */
static void conn_connect(conn_t *c, const struct sockaddr *addr)
{
    int rc = uv_tcp_init(c->h->loop, &c->tcp);
    if (rc == 0) {
        c->tcp_inited = true;
        c->tcp.data = c;
        c->handles++;
        rc = uv_tcp_connect(&c->connect, &c->tcp, addr, conn_on_connect);
    }
    if (rc < 0)
        conn_defer_fail(c, LV_H1C_ECONNECT, rc);
}

static void conn_on_resolved(uv_getaddrinfo_t *gr, int status, struct addrinfo *res)
{
    h1c_gai_t *g = LV_CONTAINER_OF(gr, h1c_gai_t, req);
    conn_t *c = g->conn;
    free(g);
    if (!c) { /* the connection closed meanwhile */
        if (res)
            uv_freeaddrinfo(res);
        return;
    }
    c->gai = NULL;
    lv_h1c_req_t *r = c->req;
    if (status < 0 || !res) {
        if (res)
            uv_freeaddrinfo(res);
        conn_close(c);
        req_fail(r, LV_H1C_ERESOLVE, 0, "cannot resolve host");
        return;
    }
    c->ai_head = res;
    c->ai_next = res;
    c->state = C_CONNECTING;
    conn_start(r);
}

/* Start (or go on with) the new connection r->conn: resolve when needed, else connect to the
 * next address. Never calls back: failures are deferred to the connection's timer. */
static void conn_start(lv_h1c_req_t *r)
{
    conn_t *c = r->conn;
    if (c->ai_next) {
        struct addrinfo *ai = c->ai_next;
        while (ai && ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            ai = ai->ai_next;
        if (!ai) {
            conn_defer_fail(c, LV_H1C_ERESOLVE, UV_EAI_FAMILY);
            return;
        }
        c->ai_next = ai->ai_next;
        conn_connect(c, ai->ai_addr);
        return;
    }
    struct sockaddr_storage ss;
    if (uv_ip4_addr(c->o->host, c->o->port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(c->o->host, c->o->port, (struct sockaddr_in6 *)&ss) == 0) {
        c->state = C_CONNECTING;
        conn_connect(c, (const struct sockaddr *)&ss);
        return;
    }
    h1c_gai_t *g = calloc(1, sizeof *g);
    if (!g) {
        conn_defer_fail(c, LV_H1C_ENOMEM, UV_ENOMEM);
        return;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)c->o->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    g->conn = c;
    c->state = C_RESOLVING;
    int rc = uv_getaddrinfo(c->h->loop, &g->req, conn_on_resolved, c->o->host, port, &hints);
    if (rc < 0) {
        free(g);
        conn_defer_fail(c, LV_H1C_ERESOLVE, rc);
        return;
    }
    c->gai = g;
}

/* Send r on an idle connection to its origin, else on a new one (fresh_only: always a new one).
 * LV_ENOMEM when there is no connection for it; never calls back. */
static int req_start(lv_h1c_req_t *r, bool fresh_only)
{
    lv_h1c_t *h = r->h;
    h1c_origin_t *o = r->o;
    while (!fresh_only && o->n_idle) {
        conn_t *c = LV_CONTAINER_OF(lv_queue_head(&o->idle), conn_t, idle_link);
        lv_queue_remove(&c->idle_link);
        o->n_idle--;
        h->n_idle--;
        c->reused = true;
        if (conn_send(c, r) == 0)
            return 0;
        conn_close(c); /* detaches r too */
    }
    conn_t *c = conn_new(h, o);
    if (!c)
        return LV_ENOMEM;
    c->req = r;
    r->conn = c;
    c->state = C_CONNECTING;
    r->connect_deadline = uv_now(h->loop) + (uint64_t)r->connect_timeout_ms;
    uv_timer_start(&c->timer, conn_on_timer, (uint64_t)r->connect_timeout_ms, 0);
    conn_start(r);
    return 0;
}

/* ---------------------------------------------------------------- requests ending */

static void req_free(lv_h1c_req_t *r)
{
    if (lv_queue_linked(&r->link)) {
        lv_queue_remove(&r->link);
        r->h->n_reqs--;
    }
    lv_h1resp_free(&r->resp);
    explicit_bzero(r->head, r->head_len); /* it holds the Authorization line */
    free(r);
}

/* End r with a result: on_done, then free. r->conn was closed or idled by the caller. r leaves
 * the in-flight list first, so an on_done that destroys the client does not free it as well. */
static void req_end(lv_h1c_req_t *r, const lv_h1c_result_t *res)
{
    if (r->conn) /* not expected: the caller let go of the connection */
        conn_close(r->conn);
    lv_queue_remove(&r->link);
    r->h->n_reqs--;
    if (r->cb.on_done)
        r->cb.on_done(r->ud, res, &r->resp);
    req_free(r);
}

static void req_fail(lv_h1c_req_t *r, lv_h1c_end_t end, int uv_err, const char *why)
{
    /* the errno behind it only where the header promises one */
    bool has_errno = end == LV_H1C_ECONNECT || end == LV_H1C_ESEND || end == LV_H1C_ERECV;
    lv_h1c_result_t res = {.end = end, .sys_errno = has_errno && uv_err < 0 ? -uv_err : 0};
    res.connect_failure = end == LV_H1C_ERESOLVE || end == LV_H1C_ECONNECT || end == LV_H1C_ECONNECT_TIMEOUT;
    snprintf(res.why, sizeof res.why, "%s", why);
    req_end(r, &res);
}

/* The connection under r failed before any response byte. A reused connection the server had
 * closed meanwhile: send once more on a new one. true when r was retried. */
static bool req_retry(lv_h1c_req_t *r, conn_t *c)
{
    if (!c->reused || r->got_bytes || r->retried || r->aborted)
        return false;
    r->retried = true;
    conn_close(c); /* detaches r too */
    lv_h1resp_free(&r->resp);
    lv_h1resp_init(&r->resp);
    if (req_start(r, true) < 0)
        req_fail(r, LV_H1C_ENOMEM, 0, "out of memory");
    return true;
}

/* The connection under r failed (uv_err < 0, UV_EOF included). */
static void conn_failed(conn_t *c, int uv_err)
{
    lv_h1c_req_t *r = c->req;
    if (req_retry(r, c))
        return;
    bool empty = !r->got_bytes, written = r->written;
    conn_close(c); /* detaches r too */
    char buf[128];
    if (uv_err == UV_EOF) {
        if (empty && !c->reused) {
            req_fail(r, LV_H1C_EEMPTY, 0, "empty reply from server");
        } else if (lv_h1resp_eof(&r->resp) == 0 && r->resp.done) {
            lv_h1c_result_t res = {.end = LV_H1C_OK};
            snprintf(res.why, sizeof res.why, "ok");
            req_end(r, &res);
        } else {
            req_fail(r, LV_H1C_ERECV, 0, "connection closed before the response ended");
        }
        return;
    }
    const char *why;
    if (uv_err == UV_ECONNRESET)
        why = "connection reset by peer";
    else if (uv_err == UV_EPIPE)
        why = "broken pipe";
    else {
        snprintf(buf, sizeof buf, "%s: %s", written ? "cannot receive" : "cannot send", uv_strerror(uv_err));
        why = buf;
    }
    req_fail(r, written || !empty ? LV_H1C_ERECV : LV_H1C_ESEND, uv_err, why);
}

static void conn_on_written(uv_write_t *w, int status)
{
    conn_t *c = LV_CONTAINER_OF(w, conn_t, write);
    c->writing = false;
    if (status == UV_ECANCELED || c->state != C_BUSY || !c->req)
        return;
    if (status < 0) {
        conn_failed(c, status);
        return;
    }
    c->req->written = true;
}

/* The sweep: close idle connections unused for LV_H1C_IDLE_MS, oldest first (the list tails). */
static void h1c_on_sweep(uv_timer_t *t)
{
    lv_h1c_t *h = t->data;
    uint64_t now = uv_now(h->loop);
    lv_queue_t *q;
    LV_QUEUE_FOREACH(q, &h->origins)
    {
        h1c_origin_t *o = LV_CONTAINER_OF(q, h1c_origin_t, link);
        while (o->n_idle) {
            conn_t *c = LV_CONTAINER_OF(o->idle.prev, conn_t, idle_link);
            if (now - c->idle_since < LV_H1C_IDLE_MS)
                break;
            conn_close(c);
        }
    }
    if (!h->n_idle)
        uv_timer_stop(&h->sweep);
}

/* The response on c is complete: idle the connection when it may carry another request, else
 * close it; then on_done. */
static void conn_response_done(conn_t *c, bool stray_bytes)
{
    lv_h1c_req_t *r = c->req;
    lv_h1c_t *h = c->h;
    c->req = NULL;
    r->conn = NULL;
    if (!stray_bytes && r->written && !c->writing && lv_h1resp_reusable(&r->resp) && !h->destroying &&
        c->o->n_idle < LV_H1C_IDLE_PER_ORIGIN) {
        c->state = C_IDLE;
        c->idle_since = uv_now(h->loop);
        lv_queue_insert_head(&c->o->idle, &c->idle_link);
        c->o->n_idle++;
        if (h->n_idle++ == 0 && !uv_is_active((uv_handle_t *)&h->sweep))
            uv_timer_start(&h->sweep, h1c_on_sweep, H1C_SWEEP_MS, H1C_SWEEP_MS);
    } else {
        conn_close(c);
    }
    lv_h1c_result_t res = {.end = LV_H1C_OK};
    snprintf(res.why, sizeof res.why, "ok");
    req_end(r, &res);
}

/* The parser's body callback: on_head first (once), then the body bytes. */
static int req_on_body(void *ud, const char *data, size_t len)
{
    lv_h1c_req_t *r = ud;
    if (r->aborted)
        return H1C_ABORT;
    if (!r->head_reported && r->resp.head_done) {
        /* A server that times an idle connection out may send 408 first and close it; what we sent
         * meanwhile was never read. Not this request's answer: sent again on a new connection. */
        if (r->resp.status == 408 && r->conn && r->conn->reused && !r->retried)
            return H1C_STALE;
        r->head_reported = true;
        if (r->cb.on_head && r->cb.on_head(r->ud, &r->resp) != 0) {
            r->aborted = true;
            return H1C_ABORT;
        }
    }
    if (len && r->cb.on_body && r->cb.on_body(r->ud, data, len) != 0) {
        r->aborted = true;
        return H1C_ABORT;
    }
    return 0;
}

static void conn_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = st->data;
    if (nread == 0 || c->state == C_CLOSING)
        return;
    if (c->state != C_BUSY || !c->req) {
        conn_close(c); /* an idle connection: the server closed it or sent bytes nobody asked for */
        return;
    }
    if (nread < 0) {
        conn_failed(c, (int)nread);
        return;
    }
    lv_h1c_req_t *r = c->req;
    r->got_bytes = true;
    size_t used = 0;
    int rc = lv_h1resp_feed(&r->resp, buf->base, (size_t)nread, &used, req_on_body, r);
    if (rc == 0 && !r->head_reported && r->resp.head_done)
        rc = req_on_body(r, NULL, 0); /* a head with no body bytes in this read */
    /* On a reused connection, bytes that do not start a response (a stray CRLF or a late answer
     * the server sent after the last one ended, read before its close) are the stale connection's,
     * not this request's: the same one retry as for a close (req_retry) */
    if ((rc == H1C_STALE || (rc == LV_EPARSE && !r->resp.head_done)) && c->reused && !r->retried && !r->aborted) {
        r->got_bytes = false;
        if (req_retry(r, c))
            return;
    }
    if (rc != 0) {
        conn_close(c); /* detaches r too */
        if (rc == H1C_ABORT || r->aborted)
            req_fail(r, LV_H1C_EABORTED, 0, "aborted");
        else if (rc == H1C_STALE)
            req_fail(r, LV_H1C_EPARSE, 0, "backend answered 408 on a reused connection");
        else if (rc == LV_ELIMIT)
            req_fail(r, LV_H1C_EPARSE, 0, "response head or chunk line too big");
        else if (rc == LV_ENOMEM)
            req_fail(r, LV_H1C_ENOMEM, 0, "out of memory");
        else
            req_fail(r, LV_H1C_EPARSE, 0, "malformed response");
        return;
    }
    if (r->resp.done)
        conn_response_done(c, used < (size_t)nread);
}

/* ---------------------------------------------------------------- API */

int lv_h1c_create(uv_loop_t *loop, lv_h1c_t **out)
{
    lv_h1c_t *h = calloc(1, sizeof *h);
    if (!h)
        return LV_ENOMEM;
    h->loop = loop;
    lv_queue_init(&h->origins);
    lv_queue_init(&h->conns);
    lv_queue_init(&h->reqs);
    uv_timer_init(loop, &h->sweep);
    h->sweep.data = h;
    uv_unref((uv_handle_t *)&h->sweep); /* idle connections alone need not keep a loop running */
    h->handles = 1;
    *out = h;
    return 0;
}

static void h1c_on_sweep_closed(uv_handle_t *hd)
{
    lv_h1c_t *h = hd->data;
    h->handles--;
    h1c_maybe_free(h);
}

void lv_h1c_destroy(lv_h1c_t *h)
{
    if (!h || h->destroying)
        return;
    h->destroying = true;
    /* the lane cancels every chat first: a request still here is a caller that will wait forever */
    if (h->n_reqs)
        LV_WARN("backend client closed with %zu request(s) in flight: they end without an answer", h->n_reqs);
    while (!lv_queue_empty(&h->reqs))
        lv_h1c_cancel(LV_CONTAINER_OF(lv_queue_head(&h->reqs), lv_h1c_req_t, link));
    while (!lv_queue_empty(&h->conns))
        conn_close(LV_CONTAINER_OF(lv_queue_head(&h->conns), conn_t, link));
    while (!lv_queue_empty(&h->origins)) {
        lv_queue_t *q = lv_queue_head(&h->origins);
        lv_queue_remove(q);
        free(LV_CONTAINER_OF(q, h1c_origin_t, link));
    }
    uv_close((uv_handle_t *)&h->sweep, h1c_on_sweep_closed);
}

static h1c_origin_t *origin_get(lv_h1c_t *h, const char *host, uint16_t port)
{
    lv_queue_t *q;
    LV_QUEUE_FOREACH(q, &h->origins)
    {
        h1c_origin_t *o = LV_CONTAINER_OF(q, h1c_origin_t, link);
        if (o->port == port && strcmp(o->host, host) == 0)
            return o;
    }
    h1c_origin_t *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    lv_queue_init(&o->idle);
    o->port = port;
    snprintf(o->host, sizeof o->host, "%s", host);
    lv_queue_insert_tail(&h->origins, &o->link);
    return o;
}

int lv_h1c_post(lv_h1c_t *h, const lv_h1c_post_t *p, const lv_h1c_cb_t *cb, void *ud, lv_h1c_req_t **out)
{
    if (!h || !p || !p->url || !cb || !out || h->destroying || (!p->body && p->body_len) ||
        p->connect_timeout_ms <= 0 || (p->n_headers && !p->headers))
        return LV_EINVAL;
    const lv_h1c_url_t *u = p->url;
    if (!u->host[0] || strnlen(u->host, sizeof u->host) > LV_H1C_HOST_MAX ||
        strnlen(u->authority, sizeof u->authority) >= sizeof u->authority ||
        strnlen(u->path, sizeof u->path) > LV_H1C_PATH_MAX || u->port == 0)
        return LV_EINVAL;

    static const char fmt[] = "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: livevlm\r\nContent-Length: %zu\r\n";
    const char *path = u->path[0] ? u->path : "/";
    int n0 = snprintf(NULL, 0, fmt, path, u->authority, p->body_len);
    if (n0 < 0)
        return LV_EINVAL;
    size_t head_len = (size_t)n0 + 2;
    for (size_t i = 0; i < p->n_headers; i++) {
        const char *l = p->headers[i];
        if (!l || l[strcspn(l, "\r\n")] != '\0')
            return LV_EINVAL;
        head_len += strlen(l) + 2;
    }
    h1c_origin_t *o = origin_get(h, u->host, u->port);
    if (!o)
        return LV_ENOMEM;
    lv_h1c_req_t *r = calloc(1, sizeof *r + head_len + 1);
    if (!r)
        return LV_ENOMEM;
    size_t off = (size_t)snprintf(r->head, head_len + 1, fmt, path, u->authority, p->body_len);
    for (size_t i = 0; i < p->n_headers; i++) {
        size_t l = strlen(p->headers[i]);
        memcpy(r->head + off, p->headers[i], l);
        memcpy(r->head + off + l, "\r\n", 2);
        off += l + 2;
    }
    memcpy(r->head + off, "\r\n", 2);
    r->head_len = off + 2;
    r->h = h;
    r->o = o;
    r->cb = *cb;
    r->ud = ud;
    r->body = p->body;
    r->body_len = p->body_len;
    r->connect_timeout_ms = p->connect_timeout_ms;
    lv_h1resp_init(&r->resp);
    lv_queue_insert_tail(&h->reqs, &r->link);
    h->n_reqs++;
    if (req_start(r, false) < 0) {
        req_free(r);
        return LV_ENOMEM;
    }
    *out = r;
    return 0;
}

void lv_h1c_cancel(lv_h1c_req_t *r)
{
    if (!r)
        return;
    conn_t *c = r->conn;
    if (c) {
        c->req = NULL;
        r->conn = NULL;
        conn_close(c); /* its response was not read to the end */
    }
    req_free(r);
}

size_t lv_h1c_in_flight(const lv_h1c_t *h) { return h ? h->n_reqs : 0; }

void lv_h1c_conn_counts(const lv_h1c_t *h, size_t *open, size_t *idle)
{
    if (open)
        *open = h ? h->n_conns : 0;
    if (idle)
        *idle = h ? h->n_idle : 0;
}
