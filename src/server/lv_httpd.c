/* lv_httpd.c - HTTP/1.1 connections: keep-alive and pipelining with requests answered strictly in
 * order (the next head is parsed only once the current response is queued), GET/HEAD/POST bodies
 * by Content-Length or chunked, our JSON error bodies, Expect: 100-continue, time boxes for the
 * head, the body and keep-alive idling, and the hand-over to a WebSocket.
 *
 * Every error response whose request body state is unknown (a malformed or refused head, a body
 * over its cap, a time box) ends with `connection: close` and a close after flushing; nothing
 * after it on that connection is read as a request, so one bad request gets exactly one answer. */
#include "lv_httpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lv_app.h"
#include "lv_buf.h"
#include "lv_common.h"
#include "lv_http1.h"
#include "lv_json_str.h"
#include "lv_httputil.h"
#include "lv_log.h"
#include "lv_net.h"
#include "lv_principal.h"
#include "lv_queue.h"
#include "lv_server.h"
#include "lv_wsconn.h"
#include "lv_wsframe.h"

#define IN_CAP (LV_HTTP_MAX_HEAD_BYTES + 8192) /* a head and some pipelined bytes behind it */
#define OUT_SOFT_BYTES (512u << 10)    /* stop parsing requests while this much output waits */
#define HEAD_MSG_MAX 4096              /* our response head */
#define INLINE_BODY_MAX 16384          /* smaller bodies share one message with the head */

enum { H_HEAD, H_BODY, H_BUSY, H_DONE };

typedef struct {
    struct lv_app *app;
    lv_sock_t *sock;
    int state;
    bool first;                  /* the connection's first request (its head box runs from accept) */
    bool head_started;           /* a byte of the current head arrived */
    bool keep_alive;
    bool shutting_down;          /* answer the current request, then close */
    bool in_on_data;
    bool wait_drain;
    bool upgraded;               /* the socket now belongs to the WebSocket layer */
    bool streaming;              /* lv_req_stream_begin sent the head; the body goes on */
    bool stream_chunked;
    lv_buf_t head;               /* owned copy of the current request head */
    lv_http1_req_t parsed;       /* views into head */
    int64_t body_left;           /* Content-Length bytes still to come */
    bool chunked;
    lv_http1_chunked_t ch;
    lv_buf_t body;
    char target[LV_HTTP1_MAX_TARGET + 1];
    lv_req_t req;
} httpc_t;

static const lv_sock_ops_t http_ops;

static httpc_t *of_req(lv_req_t *r) { return LV_CONTAINER_OF(r, httpc_t, req); }

/* ---------- responses ---------- */

static void request_reset(httpc_t *h)
{
    /* the next request names its own client (request_client); until its head, the peer */
    snprintf(h->sock->client_ip, sizeof(h->sock->client_ip), "%s", h->sock->ip);
    lv_buf_free(&h->head);
    lv_buf_free(&h->body);
    memset(&h->parsed, 0, sizeof(h->parsed));
    h->body_left = 0;
    h->chunked = false;
    h->head_started = false;
    h->first = false;
}

/* The response is queued: on to the next request, or close. */
static void request_done(httpc_t *h, bool close)
{
    lv_sock_t *s = h->sock;
    request_reset(h);
    if (close || !h->keep_alive || h->shutting_down) {
        h->state = H_DONE;
        lv_sock_close_after_flush(s);
        return;
    }
    h->state = H_HEAD;
    lv_sock_arm(s, LV_TMO_KEEPALIVE);
    if (!h->in_on_data)
        lv_sock_resume_read(s); /* answered later: pipelined requests may be waiting */
}

/* RFC 9110 section 6.6.1: an origin server with a clock sends Date (IMF-fixdate); formatted once
 * a second (a cache, touched on the loop thread only). */
static const char *http_date(void)
{
    static char text[40];
    static time_t last;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return text;
}

static int add_common_headers(lv_buf_t *b, const lv_req_t *r, int status, const char *ctype)
{
    static const char common[] = "x-content-type-options: nosniff\r\n"
                                 "referrer-policy: no-referrer\r\n"
                                 "x-frame-options: DENY\r\n";
    /* connect-src 'self' covers this origin's ws:/wss: too (CSP3; Chromium and Firefox) */
    static const char csp[] = "content-security-policy: default-src 'self'; img-src 'self' data: blob:; "
                              "media-src 'self' blob: mediastream:; connect-src 'self'; "
                              "style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; "
                              "base-uri 'none'; frame-ancestors 'none'\r\n";
    bool html = ctype && strncmp(ctype, "text/html", 9) == 0;
    bool api = ctype && strcmp(ctype, "application/json") == 0;
    int rc = lv_buf_printf(b, "date: %s\r\n", http_date());
    if (!rc)
        rc = lv_buf_append_str(b, common);
    if (!rc && html)
        rc = lv_buf_append_str(b, csp);
    if (!rc)
        rc = lv_buf_append_str(b, api || status >= 400 ? "cache-control: no-store\r\n" : "cache-control: no-cache\r\n");
    /* HSTS on every TLS response. Browsers ignore it over a certificate they do not trust (RFC 6797
     * section 8.1: only "when there are no underlying secure transport errors"), so the
     * self-signed default certificate does not pin anyone to https for a year by accident. */
    if (!rc && r->tls)
        rc = lv_buf_append_str(b, "strict-transport-security: max-age=31536000\r\n");
    return rc;
}

int lv_req_respond(lv_req_t *r, int status, const char *content_type, const void *body, size_t len, bool copy,
                   const char *extra_headers)
{
    httpc_t *h = of_req(r);
    if (h->state != H_BUSY || h->streaming)
        return LV_EINVAL; /* one answer per request, never two */
    if (r->waiting) {
        lv_queue_remove(&r->wait_link);
        r->waiting = false;
    }
    lv_sock_t *s = h->sock;
    if (s->closing) {
        h->state = H_DONE;
        return LV_ECLOSED;
    }
    bool close = !h->keep_alive || h->shutting_down;
    bool no_body = status < 200 || status == 204 || status == 304;
    bool send_body = !no_body && !r->is_head && len > 0;
    lv_buf_t b;
    lv_buf_init(&b, HEAD_MSG_MAX + (extra_headers ? strlen(extra_headers) : 0) + INLINE_BODY_MAX);
    int rc = lv_buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, lv_http1_reason(status));
    if (!rc && content_type)
        rc = lv_buf_printf(&b, "content-type: %s\r\n", content_type);
    if (!rc && !no_body)
        rc = lv_buf_printf(&b, "content-length: %zu\r\n", len);
    if (!rc)
        rc = add_common_headers(&b, r, status, content_type);
    if (!rc && extra_headers)
        rc = lv_buf_append_str(&b, extra_headers);
    if (!rc && close)
        rc = lv_buf_append_str(&b, "connection: close\r\n");
    else if (!rc && h->parsed.minor_version == 0)
        rc = lv_buf_append_str(&b, "connection: keep-alive\r\n");
    if (!rc)
        rc = lv_buf_append_str(&b, "\r\n");
    bool inline_body = send_body && copy && len <= INLINE_BODY_MAX;
    if (!rc && inline_body)
        rc = lv_buf_append(&b, body, len);
    lv_msg_t *m = rc ? NULL : lv_msg_raw(b.data, b.len);
    lv_buf_free(&b);
    if (!m) {
        h->state = H_DONE;
        lv_sock_close(s);
        return LV_ENOMEM;
    }
    rc = lv_sock_send(s, m);
    lv_msg_unref(m);
    if (!rc && send_body && !inline_body) {
        m = copy ? lv_msg_raw(body, len) : lv_msg_static(body, len);
        rc = m ? lv_sock_send(s, m) : LV_ENOMEM;
        lv_msg_unref(m);
    }
    if (rc) {
        h->state = H_DONE;
        lv_sock_close(s);
        return rc;
    }
    request_done(h, close);
    return 0;
}

int lv_req_stream_begin(lv_req_t *r, int status, const char *content_type, const char *extra_headers)
{
    httpc_t *h = of_req(r);
    if (h->state != H_BUSY || h->streaming)
        return LV_EINVAL;
    lv_sock_t *s = h->sock;
    if (s->closing)
        return LV_ECLOSED;
    /* HTTP/1.0 has no chunked coding: the body ends when the connection does */
    h->stream_chunked = h->parsed.minor_version >= 1;
    if (!h->stream_chunked)
        h->keep_alive = false;
    lv_buf_t b;
    lv_buf_init(&b, HEAD_MSG_MAX + (extra_headers ? strlen(extra_headers) : 0));
    int rc = lv_buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, lv_http1_reason(status));
    if (!rc && content_type)
        rc = lv_buf_printf(&b, "content-type: %s\r\n", content_type);
    if (!rc && h->stream_chunked)
        rc = lv_buf_append_str(&b, "transfer-encoding: chunked\r\n");
    if (!rc)
        rc = add_common_headers(&b, r, status, content_type);
    if (!rc && extra_headers)
        rc = lv_buf_append_str(&b, extra_headers);
    if (!rc && (!h->keep_alive || h->shutting_down))
        rc = lv_buf_append_str(&b, "connection: close\r\n");
    if (!rc)
        rc = lv_buf_append_str(&b, "\r\n");
    lv_msg_t *m = rc ? NULL : lv_msg_raw(b.data, b.len);
    lv_buf_free(&b);
    rc = m ? lv_sock_send(s, m) : LV_ENOMEM;
    lv_msg_unref(m);
    if (rc)
        return rc;
    h->streaming = true;
    return 0;
}

int lv_req_stream_write(lv_req_t *r, const void *data, size_t len)
{
    httpc_t *h = of_req(r);
    if (h->state != H_BUSY || !h->streaming)
        return LV_EINVAL;
    lv_sock_t *s = h->sock;
    if (s->closing)
        return LV_ECLOSED;
    if (lv_sock_queued_bytes(s) + len > LV_HTTP_STREAM_MAX_QUEUED) {
        LV_WARN("closing a streamed answer to %s that stopped reading", r->ip);
        lv_sock_close(s);
        return LV_ELIMIT;
    }
    if (len == 0)
        return 0; /* a zero-size chunk would end the body */
    lv_buf_t b;
    lv_buf_init(&b, len + 32);
    int rc = h->stream_chunked ? lv_buf_printf(&b, "%zx\r\n", len) : 0;
    if (!rc)
        rc = lv_buf_append(&b, data, len);
    if (!rc && h->stream_chunked)
        rc = lv_buf_append(&b, "\r\n", 2);
    lv_msg_t *m = rc ? NULL : lv_msg_raw(b.data, b.len);
    lv_buf_free(&b);
    rc = m ? lv_sock_send(s, m) : LV_ENOMEM;
    lv_msg_unref(m);
    return rc;
}

int lv_req_stream_end(lv_req_t *r)
{
    httpc_t *h = of_req(r);
    if (h->state != H_BUSY || !h->streaming)
        return LV_EINVAL;
    if (r->waiting) {
        lv_queue_remove(&r->wait_link);
        r->waiting = false;
    }
    h->streaming = false;
    lv_sock_t *s = h->sock;
    if (s->closing) {
        h->state = H_DONE;
        return LV_ECLOSED;
    }
    int rc = 0;
    if (h->stream_chunked) {
        lv_msg_t *m = lv_msg_static("0\r\n\r\n", 5);
        rc = m ? lv_sock_send(s, m) : LV_ENOMEM;
        lv_msg_unref(m);
    }
    if (rc) {
        h->state = H_DONE;
        lv_sock_close(s);
        return rc;
    }
    request_done(h, !h->stream_chunked);
    return 0;
}

int lv_req_respond_error(lv_req_t *r, int status, const char *code, const char *message)
{
    /* code and message are escaped: a message may quote what a client sent (a name, a field) */
    lv_buf_t b;
    lv_buf_init(&b, 4096);
    bool ok = lv_buf_append_str(&b, "{\"error\":{\"code\":") == 0 &&
              lv_json_str_append_lossy(&b, code, strlen(code)) == 0 && lv_buf_append_str(&b, ",\"message\":") == 0 &&
              lv_json_str_append_lossy(&b, message, strlen(message)) == 0 && lv_buf_append_str(&b, "}}") == 0;
    static const char fallback[] = "{\"error\":{\"code\":\"internal\",\"message\":\"error\"}}";
    int rc = ok ? lv_req_respond(r, status, "application/json", b.data, b.len, true, NULL)
                : lv_req_respond(r, status, "application/json", fallback, sizeof(fallback) - 1, false, NULL);
    lv_buf_free(&b);
    return rc;
}

/* A refusal before the request could be routed: answer it and close the connection. */
static void fail(httpc_t *h, int status)
{
    static const struct {
        int status;
        const char *code, *message;
    } msgs[] = {
        {400, "bad_request", "malformed HTTP request"},
        {401, "unauthorized", "log in with the access token printed by the server"},
        {408, "timeout", "the request took too long to arrive"},
        {413, "too_large", "request body over its cap (64 KiB; a frame's for /api/v1/analyze)"},
        {414, "uri_too_long", "URL over 2 KiB"},
        {417, "expectation_failed", "only Expect: 100-continue is understood"},
        {429, "rate_limited", "too many connections or failed credentials from this address"},
        {431, "headers_too_large", "request head over 8 KiB or too many header lines"},
        {500, "internal", "out of memory"},
        {501, "not_implemented", "transfer coding not supported (only chunked)"},
        {505, "version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served"},
    };
    const char *code = "bad_request", *message = "malformed HTTP request";
    for (size_t i = 0; i < LV_ARRAY_LEN(msgs); i++)
        if (msgs[i].status == status) {
            code = msgs[i].code;
            message = msgs[i].message;
        }
    if (status == 400 || !status)
        status = 400;
    LV_DEBUG("HTTP %d to %s", status, h->sock->ip);
    lv_sock_disarm(h->sock);
    h->state = H_BUSY;
    h->keep_alive = false;
    h->req.is_head = false;
    lv_req_respond_error(&h->req, status, code, message);
}

/* ---------- requests ---------- */

static bool view_is(lv_view_t v, const char *lit) { return v.len == strlen(lit) && memcmp(v.ptr, lit, v.len) == 0; }

/* Who this request acts for, in s->client_ip (r->ip points there): the TCP peer, or when the
 * peer is a --trusted-proxy, the client that proxy names in X-Forwarded-For
 * (lv_forwarded_for_client: the rightmost address that is not a trusted proxy). Decided here,
 * once per request head and before anything reads r->ip, so the principal, the per-address
 * limits, the failed-credential count, the logs and a WebSocket made from this request all see
 * the same client. Per request, not per connection: a proxy's kept-alive connection carries many
 * clients' requests (haproxy's http-reuse). The peer itself (s->ip) stays what the limits before
 * a head count (pending connections, TLS handshakes): nothing names a client before its head.
 * From any other peer the header is ignored: whoever sends it could name any principal. */
static void request_client(httpc_t *h)
{
    lv_sock_t *s = h->sock;
    const lv_config_t *cfg = &h->app->cfg;
    unsigned char peer[16];
    snprintf(s->client_ip, sizeof(s->client_ip), "%s", s->ip);
    if (cfg->n_trusted_proxies == 0 || lv_ip_parse(s->ip, strlen(s->ip), peer) != 0 ||
        !lv_ipnet_contains(cfg->trusted_proxies, cfg->n_trusted_proxies, peer))
        return;
    const lv_http1_req_t *p = &h->parsed;
    lv_view_t xff[LV_HTTP1_MAX_HEADERS];
    size_t n = 0;
    for (size_t i = 0; i < p->n_headers; i++)
        if (p->headers[i].name.len == 15 && strncasecmp(p->headers[i].name.ptr, "x-forwarded-for", 15) == 0)
            xff[n++] = p->headers[i].value;
    char client[LV_IP_TEXT_MAX];
    int rc = lv_forwarded_for_client(xff, n, cfg->trusted_proxies, cfg->n_trusted_proxies, client, sizeof(client));
    if (rc == 0) {
        snprintf(s->client_ip, sizeof(s->client_ip), "%s", client);
        return;
    }
    if (rc == LV_ENOTFOUND)
        return; /* the proxy's own request (a health check): the proxy is the client */
    /* not worth an error to the client (it may not even know the proxy added the header): the
     * proxy's address stands for it, counted, so a misconfigured proxy shows in /metrics */
    lv_net_forwarded_invalid_inc(s->net);
    LV_DEBUG("X-Forwarded-For from trusted proxy %s %s: its own address stands for the client", s->ip,
             rc == LV_ELIMIT ? "over its cap (2 KiB or 32 addresses)" : "empty or not an address");
}

/* The head at data[0..parsed.head_len) is complete: own a copy, set up the body. */
static int request_begin(httpc_t *h, const char *data)
{
    lv_sock_t *s = h->sock;
    size_t head_len = h->parsed.head_len;
    lv_buf_init(&h->head, head_len);
    if (lv_buf_append(&h->head, data, head_len) != 0 ||
        lv_http1_parse_request(h->head.data, h->head.len, LV_HTTP_MAX_HEAD_BYTES, &h->parsed, NULL) != 0)
        return 500;
    lv_sock_set_pending(s, false);
    request_client(h);
    const lv_http1_req_t *p = &h->parsed;
    h->keep_alive = p->keep_alive;
    /* RFC 9112 section 3.2: "A server MUST respond with a 400 (Bad Request) status code to any
     * HTTP/1.1 request message that lacks a Host header field and to any request message that
     * contains more than one Host header field line" */
    size_t hosts = 0;
    for (size_t i = 0; i < p->n_headers; i++)
        if (p->headers[i].name.len == 4 && strncasecmp(p->headers[i].name.ptr, "host", 4) == 0)
            hosts++;
    if (hosts > 1 || (hosts == 0 && p->minor_version >= 1))
        return 400;
    snprintf(h->target, sizeof(h->target), "%.*s", (int)p->target.len, p->target.ptr);
    char *q = strchr(h->target, '?');
    if (q)
        *q++ = '\0';
    lv_req_t *r = &h->req;
    r->head = p;
    r->path = h->target;
    r->query = q ? q : "";
    r->is_head = view_is(p->method, "HEAD");
    r->is_post = view_is(p->method, "POST");
    r->on_gone = NULL;
    r->user = NULL;
    size_t cap = LV_HTTP_MAX_BODY_BYTES;
    if (r->is_post) {
        int st = lv_server_body_cap(h->app, r, &cap);
        if (st)
            return st;
    }
    lv_buf_init(&h->body, cap);
    r->body = &h->body;
    if (p->chunked) {
        h->chunked = true;
        lv_http1_chunked_init(&h->ch, cap);
    } else if (p->content_length > 0) {
        if ((uint64_t)p->content_length > (uint64_t)cap)
            return 413;
        h->body_left = p->content_length;
    }
    bool has_body = h->chunked || h->body_left > 0;
    const lv_view_t *expect = lv_http1_header(p, "expect");
    if (expect && p->minor_version >= 1) {
        if (expect->len != 12 || strncasecmp(expect->ptr, "100-continue", 12) != 0)
            return 417;
        if (has_body) {
            /* RFC 9110 section 10.1.1: the client may wait for this before sending the body */
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            lv_msg_t *m = lv_msg_static(cont, sizeof(cont) - 1);
            if (m)
                lv_sock_send(s, m);
            lv_msg_unref(m);
        }
    }
    h->state = H_BODY;
    if (has_body)
        lv_sock_arm(s, LV_TMO_BODY);
    return 0;
}

/* Take body bytes from data[0..len); returns how many were used, or sets *status on an error. */
static size_t body_take(httpc_t *h, char *data, size_t len, int *status)
{
    if (h->chunked) {
        size_t used = len, out = 0;
        int rc = lv_http1_chunked_feed(&h->ch, data, &used, &out);
        if (rc < 0) {
            *status = rc == LV_ELIMIT ? 413 : 400;
            return len;
        }
        if (out && lv_buf_append(&h->body, data, out) != 0) {
            *status = 413;
            return len;
        }
        if (rc == 1)
            h->chunked = false; /* done */
        return used;
    }
    size_t n = (size_t)LV_MIN((int64_t)len, h->body_left);
    if (n && lv_buf_append(&h->body, data, n) != 0) {
        *status = 413;
        return len;
    }
    h->body_left -= (int64_t)n;
    return n;
}

static void dispatch(httpc_t *h)
{
    lv_req_t *r = &h->req;
    lv_sock_disarm(h->sock);
    h->state = H_BUSY;
    if (!r->is_head && !r->is_post && !view_is(h->parsed.method, "GET")) {
        /* the body (if any) was read, so the connection stays usable */
        static const char body[] =
            "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"only GET, HEAD and POST are served\"}}";
        lv_req_respond(r, 405, "application/json", body, sizeof(body) - 1, false, "allow: GET, HEAD, POST\r\n");
        return;
    }
    lv_server_handle(h->app, r);
}

static size_t http_on_data(lv_sock_t *s, char *data, size_t len)
{
    httpc_t *h = s->data;
    size_t off = 0;
    h->in_on_data = true;
    while (!s->closing && !h->upgraded && (h->state == H_HEAD || h->state == H_BODY)) {
        if (h->state == H_HEAD) {
            if (!h->head_started) {
                /* RFC 9112 section 2.2: empty lines before a request line are ignored */
                while (off < len && (data[off] == '\r' || data[off] == '\n'))
                    off++;
                if (off == len)
                    break;
                if (lv_sock_queued_bytes(s) > OUT_SOFT_BYTES) {
                    h->wait_drain = true; /* the client is not reading its answers: stop reading */
                    lv_sock_pause_read(s);
                    break;
                }
                h->head_started = true;
                if (!h->first) {
                    lv_sock_arm(s, LV_TMO_HEAD); /* from its first byte, not reset by later ones */
                    if (lv_sock_set_pending(s, true) != 0) {
                        lv_sock_close(s);
                        break;
                    }
                }
            }
            int status = 400;
            int rc = lv_http1_parse_request(data + off, len - off, LV_HTTP_MAX_HEAD_BYTES, &h->parsed, &status);
            if (rc == LV_EAGAIN)
                break;
            if (rc != 0) {
                fail(h, status);
                off = len;
                break;
            }
            size_t head_len = h->parsed.head_len;
            status = request_begin(h, data + off);
            off += head_len;
            if (status) {
                fail(h, status);
                off = len;
                break;
            }
        }
        int status = 0;
        if (h->chunked || h->body_left > 0)
            off += body_take(h, data + off, len - off, &status);
        if (status) {
            fail(h, status);
            off = len;
            break;
        }
        if (h->chunked || h->body_left > 0)
            break; /* more body to come */
        dispatch(h);
    }
    h->in_on_data = false;
    if (h->upgraded) {
        /* the rest of data is the WebSocket's (lv_net keeps it and offers it to the new owner) */
        lv_buf_free(&h->head);
        lv_buf_free(&h->body);
        free(h);
        return off;
    }
    /* answered later: read nothing more until then, except that a handler that wants to hear of
     * its client leaving (on_gone: its work is cancelled) keeps reading while nothing else comes,
     * so the peer's FIN or reset is seen; pipelined bytes pause it */
    if (h->state == H_BUSY && !s->closing && (!h->req.on_gone || off < len))
        lv_sock_pause_read(s);
    return off;
}

static void http_on_ready(lv_sock_t *s)
{
    lv_sock_set_input_cap(s, IN_CAP);
    lv_sock_arm(s, LV_TMO_HEAD); /* the first head's box runs from accept (or the TLS handshake) */
}

static void http_on_drain(lv_sock_t *s)
{
    httpc_t *h = s->data;
    if (h->wait_drain) {
        h->wait_drain = false;
        lv_sock_resume_read(s);
    }
}

static void http_on_timeout(lv_sock_t *s, lv_tmo_kind_t kind)
{
    httpc_t *h = s->data;
    if (kind == LV_TMO_KEEPALIVE || (kind == LV_TMO_HEAD && !h->head_started)) {
        lv_sock_close_after_flush(s); /* nothing was asked: nothing to answer */
        return;
    }
    if (h->state == H_HEAD || h->state == H_BODY) {
        /* a body's client is known from its head; a head's is only the peer */
        LV_DEBUG("request %s from %s timed out", kind == LV_TMO_BODY ? "body" : "head",
                 kind == LV_TMO_BODY ? s->client_ip : s->ip);
        fail(h, 408);
    }
}

static void http_on_shutdown(lv_sock_t *s)
{
    httpc_t *h = s->data;
    if (h->state == H_BUSY)
        h->shutting_down = true; /* answer what is being handled, then close */
    else
        lv_sock_close_after_flush(s);
}

static void http_on_close(lv_sock_t *s)
{
    httpc_t *h = s->data;
    if (!h)
        return;
    if (h->req.waiting) {
        lv_queue_remove(&h->req.wait_link);
        h->req.waiting = false;
        if (h->req.on_gone)
            h->req.on_gone(&h->req);
    }
    lv_buf_free(&h->head);
    lv_buf_free(&h->body);
    free(h);
}

static const lv_sock_ops_t http_ops = {
    .on_ready = http_on_ready,
    .on_data = http_on_data,
    .on_drain = http_on_drain,
    .on_timeout = http_on_timeout,
    .on_shutdown = http_on_shutdown,
    .on_close = http_on_close,
};

void lv_httpd_accept(lv_sock_t *s)
{
    httpc_t *h = calloc(1, sizeof(*h));
    s->ops = &http_ops;
    s->data = h;
    if (!h) {
        lv_sock_close(s);
        return;
    }
    h->app = lv_net_user(s->net);
    h->sock = s;
    h->first = true;
    h->state = H_HEAD;
    h->req.app = h->app;
    h->req.sock = s;
    h->req.ip = s->client_ip; /* the peer until a request head says otherwise (request_client) */
    h->req.tls = s->tls;
    lv_queue_init(&h->req.wait_link);
    lv_buf_init(&h->head, LV_HTTP_MAX_HEAD_BYTES);
    lv_buf_init(&h->body, LV_HTTP_MAX_BODY_BYTES);
}

/* ---------- WebSocket upgrade ---------- */

int lv_req_upgrade(lv_req_t *r, const char *subprotocol, const lv_principal_t *who)
{
    httpc_t *h = of_req(r);
    lv_sock_t *s = h->sock;
    char key[64], accept[29], head[512];
    if (h->state != H_BUSY)
        return LV_EINVAL;
    if (lv_http1_header_copy(r->head, "sec-websocket-key", key, sizeof(key)) != 0 ||
        lv_ws_accept_key(key, strlen(key), accept) != 0)
        return lv_req_respond_error(r, 400, "bad_request", "missing or malformed Sec-WebSocket-Key");
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                     "sec-websocket-accept: %s\r\n%s%s%s\r\n",
                     accept, subprotocol ? "sec-websocket-protocol: " : "", subprotocol ? subprotocol : "",
                     subprotocol ? "\r\n" : "");
    lv_msg_t *m = lv_msg_raw(head, (size_t)n);
    int rc = m ? lv_sock_send(s, m) : LV_ENOMEM;
    lv_msg_unref(m);
    if (rc == 0)
        rc = lv_ws_attach(h->app, s, who, r->head);
    if (rc) {
        h->state = H_DONE;
        lv_sock_close(s);
        return rc;
    }
    h->state = H_DONE;
    h->upgraded = true;
    if (!h->in_on_data) {
        /* not expected (upgrades are decided at once), but keep ownership straight */
        lv_buf_free(&h->head);
        lv_buf_free(&h->body);
        free(h);
    }
    return 0;
}
