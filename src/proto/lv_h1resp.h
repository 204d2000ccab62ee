/* lv_h1resp.h - incremental HTTP/1.1 response parser (RFC 9112): the status line, the header
 * fields and the body's framing (Content-Length, chunked, or until the connection closes), for
 * the backend client (lv_h1c.h). Pure: no I/O; the input is a backend's bytes, hence its fuzz
 * driver (tests/fuzz/fuzz_h1resp.c).
 *
 * What it accepts: "HTTP/1.x SP 3DIGIT [SP reason] CRLF" (a bare LF is taken as a line end too,
 * as RFC 9112 section 2.2 allows), header fields "name: value" with optional whitespace trimmed,
 * no obsolete line folding (a line starting with SP/HTAB is an error). Interim 1xx responses
 * other than 101 are skipped whole (their head is parsed and dropped, then the real head
 * follows); a 101 ends the response at its head (what follows is another protocol). Framing, in
 * RFC 9112 section 6.3's order: a response to a request that has no body (1xx, 204, 304) has none;
 * Transfer-Encoding whose last coding is "chunked" is chunked (chunk extensions are ignored,
 * trailer fields are read and dropped), and with a Content-Length beside it the connection is not
 * reused; any other Transfer-Encoding, or no Content-Length, reads until close; a Content-Length
 * that is not one decimal number (or several that differ) is an error. */
#ifndef LV_H1RESP_H
#define LV_H1RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_buf.h"

#define LV_H1RESP_HEAD_MAX 16384   /* status line and header fields together, bytes */
#define LV_H1RESP_FIELDS_MAX 100   /* header fields in one head */
#define LV_H1RESP_CHUNK_LINE_MAX 1024 /* a chunk-size line, extensions included; a trailer line */

typedef enum {
    LV_H1RESP_BODY_NONE = 0,   /* no body (204, 304; or not known yet) */
    LV_H1RESP_BODY_LENGTH,     /* Content-Length bytes */
    LV_H1RESP_BODY_CHUNKED,
    LV_H1RESP_BODY_CLOSE,      /* until the server closes the connection */
} lv_h1resp_framing_t;

typedef struct {
    uint32_t name_off, name_len, value_off, value_len; /* into head */
} lv_h1resp_field_t;

/* Public fields are valid once head_done is set, until lv_h1resp_free(). */
typedef struct {
    /* ---- public ---- */
    bool head_done;            /* the final (non-1xx) head has been parsed */
    int status;                /* 100..999 */
    int minor;                 /* HTTP/1.minor */
    lv_h1resp_framing_t framing;
    uint64_t content_length;   /* LV_H1RESP_BODY_LENGTH */
    bool conn_close;           /* "Connection: close" or HTTP/1.0 without keep-alive */
    bool done;                 /* the whole response (body included) has been parsed */

    /* ---- private ---- */
    lv_buf_t head;             /* the head's bytes, capped at LV_H1RESP_HEAD_MAX */
    lv_h1resp_field_t fields[LV_H1RESP_FIELDS_MAX];
    size_t n_fields;
    int state;
    uint64_t left;             /* body bytes left: of the Content-Length, or of this chunk */
    size_t line_len;           /* bytes of the current head, chunk-size or trailer line so far */
    uint64_t chunk_size;       /* being read from a chunk-size line */
    int chunk_digits;
    int err;                   /* sticky */
} lv_h1resp_t;

/** Body callback: data[0..len) are body bytes with the chunk framing removed, valid only during
 * the call. Return 0 to go on; any other value stops the parse and is returned by feed. */
typedef int (*lv_h1resp_body_cb)(void *ud, const char *data, size_t len);

/** Start a parser for the response to one request. Allocates nothing until bytes arrive; release
 * with lv_h1resp_free() (also after an error). */
void lv_h1resp_init(lv_h1resp_t *p);
void lv_h1resp_free(lv_h1resp_t *p);

/** Feed the next n bytes from the connection. Body bytes go to on_body (may be NULL: dropped) as
 * they come, several calls per feed at most one per chunk. *used gets how many bytes of p[0..n)
 * belong to this response: less than n only once done (what follows is not this response's) or
 * on an error (used may be NULL).
 * Returns 0 (more wanted, or done: see p->done), LV_EPARSE (a malformed head or framing),
 * LV_ELIMIT (the head, a field count or a chunk line over its cap), LV_ENOMEM, or on_body's
 * non-zero value. Errors are sticky: later feeds return the same value and use nothing. */
int lv_h1resp_feed(lv_h1resp_t *p, const char *data, size_t n, size_t *used, lv_h1resp_body_cb on_body, void *ud);

/** The server closed the connection. 0 when that ends the response (LV_H1RESP_BODY_CLOSE: sets
 * done; or it was done already); LV_EPARSE when the response was cut short (no head yet, or
 * fewer body bytes than framed). */
int lv_h1resp_eof(lv_h1resp_t *p);

/** After head_done: the value of header field name (case-insensitive), trimmed, and how many
 * fields of that name the head has (*count may be NULL). NULL when there is none; with several,
 * the first. Not NUL-terminated: *len bytes. */
const char *lv_h1resp_header(const lv_h1resp_t *p, const char *name, size_t *len, int *count);

/** After done: whether the connection may carry another request (HTTP/1.1 without
 * "Connection: close", HTTP/1.0 with "Connection: keep-alive", and framing other than close). */
bool lv_h1resp_reusable(const lv_h1resp_t *p);

#endif
