/* lv_h1resp.c - incremental HTTP/1.1 response parser (RFC 9112): head into a capped buffer,
 * then the body de-framed (Content-Length, chunked, or until close) straight from the input. */
#include "lv_h1resp.h"

#include <string.h>

#include "lv_common.h"
#include "lv_httputil.h"

/* The parser's states. The head is copied line by line (one memchr per line); the chunk-size and
 * trailer lines are walked byte by byte (they are short and capped); body bytes are passed on as
 * spans of the input, never looked at. */
enum {
    S_STATUS = 0,  /* the status line */
    S_FIELDS,      /* header field lines until the empty line */
    S_BODY_LENGTH, /* p->left bytes of Content-Length body */
    S_BODY_CLOSE,  /* everything until lv_h1resp_eof */
    S_CSIZE,       /* chunk-size hex digits */
    S_CSIZE_WS,    /* after the digits: BWS before ';' or the line end */
    S_CEXT,        /* chunk extensions: ignored up to the line end */
    S_CSIZE_LF,    /* a CR ended the chunk-size line: LF must follow */
    S_CDATA,       /* p->left bytes of chunk data */
    S_CDATA_CR,    /* the CRLF after chunk data */
    S_CDATA_LF,
    S_TRAILER,     /* trailer field lines after the last chunk, dropped */
    S_TRAILER_LF,  /* a CR in a trailer line: LF must follow */
    S_DONE,
};

/* RFC 9112 section 7.1 has no limit; 2^62 keeps every sum with it far from overflowing. */
#define CHUNK_SIZE_MAX ((uint64_t)1 << 62)

/* field-vchar / SP / HTAB (RFC 9110 section 5.5), obs-text included: every CTL but HTAB is out,
 * which rejects NUL and a CR that is not part of a line end. */
static bool is_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

/* The next element of a comma-separated list (RFC 9110 section 5.6.1), OWS trimmed; empty
 * elements are returned as such (len 0). *s walks the list and becomes NULL after the last
 * element; false then. */
static bool list_next(const char **s, const char *end, const char **elem, size_t *len)
{
    const char *q = *s;
    if (!q)
        return false;
    const char *comma = memchr(q, ',', (size_t)(end - q));
    const char *e = comma ? comma : end;
    *s = comma ? comma + 1 : NULL;
    while (q < e && lv_http_ows((unsigned char)*q))
        q++;
    while (e > q && lv_http_ows((unsigned char)e[-1]))
        e--;
    *elem = q;
    *len = (size_t)(e - q);
    return true;
}

void lv_h1resp_init(lv_h1resp_t *p)
{
    memset(p, 0, sizeof *p);
    lv_buf_init(&p->head, LV_H1RESP_HEAD_MAX);
    p->state = S_STATUS;
}

void lv_h1resp_free(lv_h1resp_t *p) { lv_buf_free(&p->head); }

/* "HTTP/1." DIGIT SP 3DIGIT [SP reason-phrase] (RFC 9112 section 4; the reason may be empty). */
static int parse_status(lv_h1resp_t *p, const char *s, size_t n)
{
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' || s[8] != ' ')
        return LV_EPARSE;
    for (int i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9')
            return LV_EPARSE;
    if (n > 12 && s[12] != ' ')
        return LV_EPARSE;
    for (size_t i = 13; i < n; i++)
        if (!is_value_char((unsigned char)s[i]))
            return LV_EPARSE;
    p->minor = s[7] - '0';
    p->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (p->status < 100)
        return LV_EPARSE;
    return 0;
}

/* name ":" OWS value OWS (RFC 9112 section 5): no whitespace between the name and the colon
 * (section 5.1), no obs-fold (a line starting with SP/HTAB, section 5.2). */
static int parse_field(lv_h1resp_t *p, size_t start, size_t end)
{
    const char *s = p->head.data;
    size_t i = start;
    while (i < end && s[i] != ':') {
        if (!lv_http_tchar((unsigned char)s[i]))
            return LV_EPARSE;
        i++;
    }
    if (i == end || i == start)
        return LV_EPARSE;
    size_t vs = i + 1, ve = end;
    for (size_t k = vs; k < ve; k++)
        if (!is_value_char((unsigned char)s[k]))
            return LV_EPARSE;
    while (vs < ve && lv_http_ows((unsigned char)s[vs]))
        vs++;
    while (ve > vs && lv_http_ows((unsigned char)s[ve - 1]))
        ve--;
    if (p->n_fields >= LV_H1RESP_FIELDS_MAX)
        return LV_ELIMIT;
    lv_h1resp_field_t *f = &p->fields[p->n_fields++];
    f->name_off = (uint32_t)start;
    f->name_len = (uint32_t)(i - start);
    f->value_off = (uint32_t)vs;
    f->value_len = (uint32_t)(ve - vs);
    return 0;
}

/* One Content-Length field value: 1*DIGIT, or a list of equal ones (RFC 9110 section 8.6 lets a
 * recipient take "42, 42" as 42). have and cl carry the value across fields so that every one must
 * agree. */
static int parse_content_length(const char *v, size_t n, bool *have, uint64_t *cl)
{
    const char *s = v, *end = v + n, *e;
    size_t len;
    while (list_next(&s, end, &e, &len)) {
        if (len == 0)
            return LV_EPARSE;
        uint64_t x = 0;
        for (size_t i = 0; i < len; i++) {
            if (e[i] < '0' || e[i] > '9')
                return LV_EPARSE;
            unsigned d = (unsigned)(e[i] - '0');
            if (x > (UINT64_MAX - d) / 10)
                return LV_EPARSE;
            x = x * 10 + d;
        }
        if (*have && x != *cl)
            return LV_EPARSE;
        *have = true;
        *cl = x;
    }
    return 0;
}

/* The head is complete: decide the framing (RFC 9112 section 6.3, in its order) and whether the
 * connection stays open. */
static int head_end(lv_h1resp_t *p)
{
    if (p->status / 100 == 1 && p->status != 101) {
        /* an interim response (100 Continue, 103 Early Hints): its head is dropped whole and the
         * final one follows (RFC 9110 section 15.2) */
        lv_buf_reset(&p->head);
        p->n_fields = 0;
        p->status = 0;
        p->minor = 0;
        p->state = S_STATUS;
        return 0;
    }
    bool have_cl = false, have_te = false, te_chunked = false, keep_alive = false, close = false;
    uint64_t cl = 0;
    int cl_err = 0;
    const char *h = p->head.data;
    for (size_t i = 0; i < p->n_fields; i++) {
        const lv_h1resp_field_t *f = &p->fields[i];
        const char *name = h + f->name_off, *v = h + f->value_off;
        const char *s = v, *end = v + f->value_len, *e;
        size_t len;
        if (lv_http_ieq(name, f->name_len, "content-length")) {
            if (!cl_err)
                cl_err = parse_content_length(v, f->value_len, &have_cl, &cl);
        } else if (lv_http_ieq(name, f->name_len, "transfer-encoding")) {
            have_te = true;
            /* the last coding of the last field decides (the fields combine into one list) */
            while (list_next(&s, end, &e, &len)) {
                if (len == 0)
                    continue;
                size_t tok = 0;
                while (tok < len && e[tok] != ';' && !lv_http_ows((unsigned char)e[tok]))
                    tok++;
                te_chunked = lv_http_ieq(e, tok, "chunked");
            }
        } else if (lv_http_ieq(name, f->name_len, "connection")) {
            while (list_next(&s, end, &e, &len)) {
                if (lv_http_ieq(e, len, "close"))
                    close = true;
                else if (lv_http_ieq(e, len, "keep-alive"))
                    keep_alive = true;
            }
        }
    }
    /* Transfer-Encoding overrides Content-Length (section 6.3 item 3), a bad one included; without
     * it a bad or disagreeing Content-Length is an unrecoverable framing error (item 5). */
    if (cl_err && !have_te)
        return cl_err;
    p->conn_close = close || (p->minor == 0 && !keep_alive);
    if (have_te && p->minor == 0)
        p->conn_close = true; /* section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing: close after */
    if (have_te && (have_cl || cl_err))
        p->conn_close = true; /* section 6.3 item 3: both fields may be a smuggling attempt: close after */
    p->head_done = true;

    if (p->status == 101 || p->status == 204 || p->status == 304) {
        /* 101: what follows is another protocol's, not this response's */
        p->framing = LV_H1RESP_BODY_NONE;
    } else if (have_te) {
        p->framing = te_chunked ? LV_H1RESP_BODY_CHUNKED : LV_H1RESP_BODY_CLOSE;
    } else if (have_cl) {
        p->framing = LV_H1RESP_BODY_LENGTH;
        p->content_length = cl;
        p->left = cl;
    } else {
        p->framing = LV_H1RESP_BODY_CLOSE;
    }
    switch (p->framing) {
    case LV_H1RESP_BODY_NONE:
        p->state = S_DONE;
        break;
    case LV_H1RESP_BODY_LENGTH:
        p->state = p->left ? S_BODY_LENGTH : S_DONE;
        break;
    case LV_H1RESP_BODY_CHUNKED:
        p->state = S_CSIZE;
        p->line_len = 0;
        p->chunk_size = 0;
        p->chunk_digits = 0;
        break;
    case LV_H1RESP_BODY_CLOSE:
        p->state = S_BODY_CLOSE;
        break;
    }
    p->done = p->state == S_DONE;
    return 0;
}

/* A complete head line head[start..end) (LF excluded). */
static int head_line(lv_h1resp_t *p, size_t start, size_t end)
{
    if (end > start && p->head.data[end - 1] == '\r')
        end--; /* CRLF; a bare LF is a line end too (RFC 9112 section 2.2) */
    const char *s = p->head.data + start;
    size_t n = end - start;
    if (p->state == S_STATUS) {
        int rc = parse_status(p, s, n);
        if (rc)
            return rc;
        p->state = S_FIELDS;
        return 0;
    }
    if (n == 0)
        return head_end(p);
    if (lv_http_ows((unsigned char)s[0]))
        return LV_EPARSE; /* obs-fold, RFC 9112 section 5.2 */
    return parse_field(p, start, end);
}

/* Head bytes: copy up to the next LF into p->head (p->line_len bytes of the current line are
 * there already), then parse the line. */
static int feed_head(lv_h1resp_t *p, const char *d, size_t n, size_t *took)
{
    const char *nl = memchr(d, '\n', n);
    size_t take = nl ? (size_t)(nl - d) + 1 : n;
    int rc = lv_buf_append(&p->head, d, take);
    if (rc)
        return rc;
    *took = take;
    p->line_len += take;
    if (!nl)
        return 0;
    size_t start = p->head.len - p->line_len;
    p->line_len = 0;
    return head_line(p, start, p->head.len - 1);
}

/* Chunk-size lines (RFC 9112 section 7.1): chunk-size [ BWS ";" ext... ] CRLF; and the
 * CRLF after chunk data; and the trailer section (section 7.1.2), read and dropped. Byte by byte:
 * these are a few bytes per chunk. Stops at the first byte of chunk data or at the end. */
static int feed_chunk_lines(lv_h1resp_t *p, const char *d, size_t n, size_t *took)
{
    size_t i = 0;
    int rc = 0;
    for (; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)d[i];
        int st = p->state;
        if (st == S_CDATA_CR) {
            if (c == '\r')
                p->state = S_CDATA_LF;
            else if (c == '\n')
                p->state = S_CSIZE;
            else
                rc = LV_EPARSE;
            continue;
        }
        if (st == S_CDATA_LF) {
            if (c == '\n')
                p->state = S_CSIZE;
            else
                rc = LV_EPARSE;
            continue;
        }
        if (++p->line_len > LV_H1RESP_CHUNK_LINE_MAX) {
            rc = LV_ELIMIT;
            continue;
        }
        if (st == S_TRAILER || st == S_TRAILER_LF) {
            if (c == '\n') {
                if (p->line_len == 1) { /* the empty line: the end of the message */
                    p->state = S_DONE;
                    p->done = true;
                    i++;
                    break;
                }
                p->line_len = 0;
                p->state = S_TRAILER;
            } else if (st == S_TRAILER_LF) {
                rc = LV_EPARSE;
            } else if (c == '\r') {
                p->line_len--; /* so an empty line ends at line_len 1 with or without CR */
                p->state = S_TRAILER_LF;
            } else if (c == '\0') {
                rc = LV_EPARSE;
            }
            continue;
        }
        bool eol = false;
        switch (st) {
        case S_CSIZE: {
            int h = lv_hex_digit(c);
            if (h >= 0) {
                if (p->chunk_size > (CHUNK_SIZE_MAX - (uint64_t)h) / 16)
                    rc = LV_EPARSE;
                p->chunk_size = p->chunk_size * 16 + (uint64_t)h;
                p->chunk_digits++;
                break;
            }
            if (p->chunk_digits == 0) {
                rc = LV_EPARSE;
                break;
            }
            if (lv_http_ows(c))
                p->state = S_CSIZE_WS;
            else if (c == ';')
                p->state = S_CEXT;
            else if (c == '\r')
                p->state = S_CSIZE_LF;
            else if (c == '\n')
                eol = true;
            else
                rc = LV_EPARSE;
            break;
        }
        case S_CSIZE_WS:
            if (c == ';')
                p->state = S_CEXT;
            else if (c == '\r')
                p->state = S_CSIZE_LF;
            else if (c == '\n')
                eol = true;
            else if (!lv_http_ows(c))
                rc = LV_EPARSE;
            break;
        case S_CEXT:
            /* chunk-ext is ignored (RFC 9112 section 7.1.1), but a CR must end the line */
            if (c == '\r')
                p->state = S_CSIZE_LF;
            else if (c == '\n')
                eol = true;
            else if (c == '\0')
                rc = LV_EPARSE;
            break;
        case S_CSIZE_LF:
            if (c == '\n')
                eol = true;
            else
                rc = LV_EPARSE;
            break;
        default:
            rc = LV_EPARSE; /* not reached */
            break;
        }
        if (!eol || rc)
            continue;
        p->line_len = 0;
        if (p->chunk_size == 0) {
            p->state = S_TRAILER; /* last-chunk */
        } else {
            p->left = p->chunk_size;
            p->state = S_CDATA;
            p->chunk_size = 0;
            p->chunk_digits = 0;
            i++;
            break;
        }
    }
    *took = i;
    return rc;
}

/* Body bytes of a known length (Content-Length, or one chunk's data): one span, one call. */
static int feed_span(lv_h1resp_t *p, const char *d, size_t n, size_t *took, lv_h1resp_body_cb on_body, void *ud)
{
    size_t k = n < p->left ? n : (size_t)p->left;
    p->left -= k;
    *took = k;
    if (p->left == 0) {
        if (p->state == S_CDATA) {
            p->state = S_CDATA_CR;
        } else {
            p->state = S_DONE;
            p->done = true;
        }
    }
    return k && on_body ? on_body(ud, d, k) : 0;
}

int lv_h1resp_feed(lv_h1resp_t *p, const char *data, size_t n, size_t *used, lv_h1resp_body_cb on_body, void *ud)
{
    size_t off = 0;
    int rc = p->err;
    while (rc == 0 && off < n && !p->done) {
        size_t took = 0;
        switch (p->state) {
        case S_STATUS:
        case S_FIELDS:
            rc = feed_head(p, data + off, n - off, &took);
            break;
        case S_BODY_LENGTH:
        case S_CDATA:
            rc = feed_span(p, data + off, n - off, &took, on_body, ud);
            break;
        case S_BODY_CLOSE:
            took = n - off;
            rc = on_body ? on_body(ud, data + off, took) : 0;
            break;
        default:
            rc = feed_chunk_lines(p, data + off, n - off, &took);
            break;
        }
        off += took;
    }
    if (rc && !p->err)
        p->err = rc;
    if (used)
        *used = off;
    return rc;
}

int lv_h1resp_eof(lv_h1resp_t *p)
{
    if (p->err)
        return p->err;
    if (p->done)
        return 0;
    if (p->head_done && p->framing == LV_H1RESP_BODY_CLOSE) {
        p->state = S_DONE;
        p->done = true;
        return 0;
    }
    p->err = LV_EPARSE;
    return p->err;
}

const char *lv_h1resp_header(const lv_h1resp_t *p, const char *name, size_t *len, int *count)
{
    const char *first = NULL;
    size_t first_len = 0;
    int k = 0;
    if (p->head_done) {
        for (size_t i = 0; i < p->n_fields; i++) {
            const lv_h1resp_field_t *f = &p->fields[i];
            if (!lv_http_ieq(p->head.data + f->name_off, f->name_len, name))
                continue;
            if (k++ == 0) {
                first = p->head.data + f->value_off;
                first_len = f->value_len;
            }
        }
    }
    if (len)
        *len = first_len;
    if (count)
        *count = k;
    return first;
}

bool lv_h1resp_reusable(const lv_h1resp_t *p)
{
    return p->done && !p->err && !p->conn_close && p->framing != LV_H1RESP_BODY_CLOSE && p->status != 101;
}
