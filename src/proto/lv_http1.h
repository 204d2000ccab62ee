/* lv_http1.h - HTTP/1.1 request parsing for the front door (RFC 9112): the request head, and the
 * chunked transfer coding of request bodies. Pure: no I/O, no allocation; every view points into
 * the caller's buffer. Everything a remote client sends before a WebSocket upgrade goes through
 * here, so every count and length is capped and every refusal carries the HTTP status to send. */
#ifndef LV_HTTP1_H
#define LV_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_common.h"

#define LV_HTTP1_MAX_HEADERS 48      /* more header lines: 431 */
#define LV_HTTP1_MAX_TARGET 2048     /* a longer request target: 414 */

typedef struct {
    lv_view_t name;                  /* as sent (compare case-insensitively) */
    lv_view_t value;                 /* leading and trailing blanks removed */
} lv_http1_header_t;

typedef struct {
    lv_view_t method;                /* "GET", "POST", ... (case-sensitive token) */
    lv_view_t target;                /* origin-form request target: "/path?query" */
    lv_view_t path;                  /* target up to '?' (not decoded) */
    lv_view_t query;                 /* after '?', without it; len 0 when absent */
    int minor_version;               /* 0 or 1 (HTTP/1.0 or HTTP/1.1) */
    lv_http1_header_t headers[LV_HTTP1_MAX_HEADERS];
    size_t n_headers;
    int64_t content_length;          /* -1 when absent */
    bool chunked;                    /* Transfer-Encoding: chunked (the only coding accepted) */
    bool keep_alive;                 /* 1.1 without "Connection: close", or 1.0 with keep-alive */
    bool upgrade_websocket;          /* Upgrade: websocket and Connection: upgrade (tokens),
                                        on a GET over HTTP/1.1 (RFC 6455 section 4.1) */
    size_t head_len;                 /* bytes of the head, its final empty line included */
} lv_http1_req_t;

/** Parse the request head at the start of buf[0..len). Leading empty lines (CRLF or LF, at most
 * 8) are skipped, as RFC 9112 section 2.2 allows. Lines end in CRLF or a bare LF.
 * Returns:
 *   0            a whole head was parsed into req (req->head_len bytes of buf); the body, if
 *                any, and pipelined requests follow it;
 *   LV_EAGAIN    the head is not complete yet and fits in max_head_bytes so far: read more and
 *                call again with the longer buffer (parsing restarts from the start; heads are
 *                small);
 *   LV_EPARSE    malformed: *status is 400 (bad request line, a target not in origin-form such
 *                as "*" or "http://host/", header line without a name or ':',
 *                a blank before ':', control bytes, obs-fold, duplicate or invalid
 *                Content-Length, both Content-Length and Transfer-Encoding), or 505 (not
 *                HTTP/1.0 or 1.1), or 501 (a Transfer-Encoding other than "chunked");
 *   LV_ELIMIT    a cap: *status is 431 (head over max_head_bytes, or too many headers) or 414
 *                (target over LV_HTTP1_MAX_TARGET).
 * A header name may be a single character ("A: 1" is valid). status may be NULL. */
int lv_http1_parse_request(const char *buf, size_t len, size_t max_head_bytes, lv_http1_req_t *req, int *status);

/** The first header named name (case-insensitive), or NULL. */
const lv_view_t *lv_http1_header(const lv_http1_req_t *req, const char *name);

/** Copy a header's value NUL-terminated into out. 0; LV_ENOTFOUND when absent; LV_ELIMIT when it
 * does not fit (out is then empty). */
int lv_http1_header_copy(const lv_http1_req_t *req, const char *name, char *out, size_t out_size);

/* Decoder of the chunked transfer coding (RFC 9112 section 7.1), incremental: chunk sizes,
 * extensions and trailers may be split anywhere across feeds. Extensions and trailer fields are
 * skipped (each line capped at 4 KiB, all trailers at 16 KiB); the decoded body is capped at
 * max_body_bytes. Unlike the head, every line must end in CRLF (a bare LF is malformed: lenient
 * chunk framing is a request-smuggling vector), and a chunk size past 2^63-1 is malformed. */
typedef struct {
    int state;
    uint64_t chunk_left;             /* data bytes left in the current chunk */
    size_t line_len;                 /* bytes of the current size/extension/trailer line */
    size_t body_len;                 /* decoded bytes so far */
    size_t max_body_bytes;
    int size_digits;
} lv_http1_chunked_t;

void lv_http1_chunked_init(lv_http1_chunked_t *c, size_t max_body_bytes);

/** Decode in place: in[0..*len) holds received bytes; on return in[0..*out_len) holds the
 * decoded body bytes found in them and *len holds how many input bytes were consumed (less than
 * given only when the body ended: the rest belongs to the next request).
 * Returns 0 (need more), 1 (the body ended, trailers included), LV_EPARSE (malformed: 400), or
 * LV_ELIMIT (body or a line over its cap: 413). Errors are sticky. */
int lv_http1_chunked_feed(lv_http1_chunked_t *c, char *in, size_t *len, size_t *out_len);

/** The reason phrase for a status code ("Not Found"); "Unknown" for codes it does not know. */
const char *lv_http1_reason(int status);

#endif
