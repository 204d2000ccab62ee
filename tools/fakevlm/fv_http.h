/* fv_http.h - fakevlm's incremental HTTP/1.1 request parser: pure, no I/O, capped. */
#ifndef FV_HTTP_H
#define FV_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define FV_HTTP_HEAD_MAX (16u * 1024u)          /* request line + headers + blank line */
#define FV_HTTP_BODY_MAX (16u * 1024u * 1024u)  /* Content-Length cap */
#define FV_HTTP_HEADERS_MAX 100                 /* header lines per request */
#define FV_HTTP_PATH_MAX 1024                   /* path without the query string */
#define FV_HTTP_FAULT_MAX 31                    /* longest X-Fake-Fault value kept */
#define FV_HTTP_TRACEPARENT_MAX 63              /* longest traceparent value kept (a W3C one is 55) */

/** What the parser learnt from one request. Strings are copies (NUL-terminated), so they stay
 * valid when the caller's input buffer moves; the body is not copied: it is the head_len..
 * head_len+content_length slice of the bytes given to fv_http_feed(). */
typedef struct {
    char method[16];
    char path[FV_HTTP_PATH_MAX + 1]; /* target up to '?' or '#'; absolute-form reduced to its path */
    int minor_version;               /* HTTP/1.<minor>: 0 or 1 */
    bool keep_alive;                 /* the connection may serve another request after this one */
    bool expect_continue;            /* "Expect: 100-continue" was sent */
    bool has_fault;                  /* an X-Fake-Fault header was present */
    char fault[FV_HTTP_FAULT_MAX + 1]; /* its value ("" when too long, so it matches no kind) */
    char traceparent[FV_HTTP_TRACEPARENT_MAX + 1]; /* as received, unchecked (tests judge it); ""
                                     * when absent, "(too long)" past the cap */
    size_t head_len;                 /* bytes from the buffer start to the body (leading CRLFs included) */
    size_t content_length;           /* body bytes (0 when absent) */
} fv_http_request_t;

/** Parser state for one request. Initialise with fv_http_parser_init() before each request. */
typedef struct {
    size_t scan_from;   /* bytes already searched for the end of the head */
    size_t line_start;  /* start of the line being searched */
    size_t head_start;  /* first byte of the request line (after ignored leading empty lines) */
    bool seen_line;     /* a non-empty line was seen (so an empty one ends the head) */
    bool head_done;     /* the head parsed; only body bytes are awaited */
    int status;         /* after a failure: the HTTP status to answer (400, 411, 413, 431, ...) */
    const char *reason; /* after a failure: a short static explanation */
    fv_http_request_t req;
} fv_http_parser_t;

/** Reset p for a new request. */
void fv_http_parser_init(fv_http_parser_t *p);

/** Feed the whole request received so far: buf holds len bytes starting at the request's first
 * byte (the same prefix each call, longer each time; the caller may move it between calls).
 * Returns 0 when the head and the whole body are in (p->req is filled; the request occupies
 * p->req.head_len + p->req.content_length bytes, anything after belongs to the next request),
 * LV_EAGAIN when more bytes are needed (p->head_done tells whether the head is already in),
 * or LV_EPARSE with p->status and p->reason set; the connection should then answer p->status
 * and close. Work per call is proportional to the new bytes only. */
int fv_http_feed(fv_http_parser_t *p, const char *buf, size_t len);

/** Standard reason phrase for an HTTP status ("Unknown" when not one fakevlm uses). */
const char *fv_http_status_text(int status);

#endif
