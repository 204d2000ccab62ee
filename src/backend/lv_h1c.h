/* lv_h1c.h - a small HTTP/1.1 client on one libuv loop, for the chat requests to backends
 * reached over plain http:// (a local vLLM, Ollama, llama.cpp server, fakevlm): POST a body that
 * is already in memory, stream the response body to a callback. Keep-alive connections per
 * origin, one request at a time on each (no pipelining); no TLS, no proxies, no redirects, no
 * cookies, no authentication beyond the header lines the caller gives. https:// backends and
 * everything else go through curl (lv_http.h).
 *
 * Why not curl here: on a streamed answer curl reads a socket and then polls it to see whether
 * more is waiting (a system call per read: 7.6 per frame at 1,000 sessions), and its own work per
 * read was a fifth of the backend thread (docs/internals/backend.md). Here a readable event is
 * one recv.
 *
 * Lifetimes: lv_h1c_t belongs to its loop's thread; every call is made there. A request lives
 * from lv_h1c_post until its on_done returns, or until lv_h1c_cancel. Callbacks never run inside
 * lv_h1c_post or lv_h1c_cancel. From inside a callback the caller may post new requests and
 * cancel other ones; lv_h1c_destroy only from on_done (or outside callbacks). */
#ifndef LV_H1C_H
#define LV_H1C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_h1resp.h"

#define LV_H1C_HOST_MAX 255
#define LV_H1C_PATH_MAX 2048
#define LV_H1C_IDLE_MS 60000       /* an idle kept-alive connection is closed after this long */
#define LV_H1C_IDLE_PER_ORIGIN 4096 /* idle connections kept per origin, at most */

typedef struct lv_h1c lv_h1c_t;
typedef struct lv_h1c_req lv_h1c_req_t;

/* An http:// URL split up: "http://host[:port][/path]". */
typedef struct {
    char host[LV_H1C_HOST_MAX + 1]; /* without the brackets of an IPv6 literal */
    uint16_t port;                  /* 80 when the URL has none */
    char authority[LV_H1C_HOST_MAX + 8]; /* host[:port] as the URL wrote it: the Host header */
    char path[LV_H1C_PATH_MAX + 1]; /* "" or starting with '/'; no query or fragment */
} lv_h1c_url_t;

/** Split an http:// URL (scheme case-insensitive). LV_EINVAL for any other scheme, userinfo
 * ("user@"), a query or fragment, an empty or over-long host, a port that is not 1..65535, or a
 * path over LV_H1C_PATH_MAX or with bytes outside 0x21..0x7e. Pure. */
int lv_h1c_url_parse(const char *url, lv_h1c_url_t *out);

/** How a request ended. */
typedef enum {
    LV_H1C_OK = 0,          /* the response was read to its end */
    LV_H1C_ERESOLVE,        /* the host name did not resolve */
    LV_H1C_ECONNECT,        /* no connection: refused, unreachable (sys_errno says which) */
    LV_H1C_ECONNECT_TIMEOUT,/* no connection within connect_timeout_ms */
    LV_H1C_EEMPTY,          /* the server closed a fresh connection without a byte of response */
    LV_H1C_ESEND,           /* the connection failed while the request was being sent (and
                             * before any response byte) */
    LV_H1C_ERECV,           /* the connection failed or closed before the response ended */
    LV_H1C_EPARSE,          /* the response did not parse (lv_h1resp) or its head was too big */
    LV_H1C_EABORTED,        /* on_head or on_body returned non-zero */
    LV_H1C_ENOMEM,
} lv_h1c_end_t;

typedef struct {
    lv_h1c_end_t end;
    int sys_errno;          /* positive errno behind ECONNECT/ESEND/ERECV, else 0 */
    bool connect_failure;   /* the backend could not be reached at all: RESOLVE, ECONNECT,
                             * ECONNECT_TIMEOUT (the health check marks it down on these) */
    char why[160];          /* short human text: "connection refused", "connect timed out",
                             * "no route to host", "cannot resolve host", "empty reply from server",
                             * "connection reset by peer", "connection closed before the response
                             * ended", "malformed response", ...; "ok" for LV_H1C_OK */
} lv_h1c_result_t;

typedef struct {
    /* The final head has arrived (status, headers: lv_h1resp_header on head). Return 0 to go on,
     * non-zero to abort (on_done then comes with LV_H1C_EABORTED). May be NULL. */
    int (*on_head)(void *ud, const lv_h1resp_t *head);
    /* Body bytes, chunk framing removed; valid during the call. Non-zero aborts. May be NULL. */
    int (*on_body)(void *ud, const char *data, size_t len);
    /* Exactly once, last, unless the request is cancelled first. head is the parsed response
     * (head_done false when none came), valid during the call. The request is freed after it
     * returns; on_done must not cancel it. */
    void (*on_done)(void *ud, const lv_h1c_result_t *res, const lv_h1resp_t *head);
} lv_h1c_cb_t;

typedef struct {
    const lv_h1c_url_t *url;    /* where; path is the request target (the caller appends its own
                                 * path to the base URL's before parsing) */
    const char *const *headers; /* n_headers "Name: value" lines without CRLF, copied at post */
    size_t n_headers;
    const char *body;           /* POSTed as is with a Content-Length; not copied: must stay
                                 * unchanged until on_done or lv_h1c_cancel */
    size_t body_len;
    int connect_timeout_ms;     /* > 0; covers resolving the name too. A name's addresses are
                                 * tried in order (the next on any connect failure) within it */
} lv_h1c_post_t;

/** Short text for a failed connect, from its libuv error (negative errno; 0: unknown): "connection
 * refused", "connect timed out", "no route to host", else "cannot connect: <uv_strerror>" written
 * into buf. Shared with lv_http_describe, so both clients say the same. */
const char *lv_connect_why(int uv_err, char *buf, size_t size);

/** A client on loop; LV_ENOMEM. */
int lv_h1c_create(uv_loop_t *loop, lv_h1c_t **out);

/** Close every connection and free the client once their handles have closed (the loop must run
 * on for that). Requests still in flight are cancelled: their on_done does not run. A
 * uv_getaddrinfo still in flight finishes on the loop afterwards (it touches nothing freed). */
void lv_h1c_destroy(lv_h1c_t *h);

/** Start a POST of p->body to p->url. The request goes out on an idle kept-alive connection to
 * the same host and port when there is one, else on a new connection (resolving the host with
 * uv_getaddrinfo when it is not an IP literal). A request that fails on a reused connection before
 * any response byte arrived (the server had closed it meanwhile) is sent once more on a new
 * connection. 0 and *out (for lv_h1c_cancel), LV_EINVAL, LV_ENOMEM. */
int lv_h1c_post(lv_h1c_t *h, const lv_h1c_post_t *p, const lv_h1c_cb_t *cb, void *ud, lv_h1c_req_t **out);

/** Abandon a request: no callback runs for it afterwards, its memory goes, and its connection is
 * closed (its response was not read to the end). Not from inside its own callbacks; not after its
 * on_done. */
void lv_h1c_cancel(lv_h1c_req_t *r);

/** Requests in flight (posted, not yet done or cancelled). */
size_t lv_h1c_in_flight(const lv_h1c_t *h);

/** Open connections (busy and idle) and how many of them are idle. */
void lv_h1c_conn_counts(const lv_h1c_t *h, size_t *open, size_t *idle);

#endif
