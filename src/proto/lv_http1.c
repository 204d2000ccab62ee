/* lv_http1.c - HTTP/1.1 request heads and chunked request bodies (RFC 9112), in the manner of
 * picohttpparser: one pass over the bytes, views into the caller's buffer, no allocation. */
#include "lv_http1.h"

#include <string.h>

#include "lv_httputil.h"

#define MAX_EMPTY_LINES 8                /* leading empty lines skipped before the request line */
#define CHUNK_LINE_MAX 4096              /* a chunk-size line with its extensions, or a trailer line */
#define TRAILER_MAX (4 * CHUNK_LINE_MAX) /* all trailer lines of one body together */

/* Methods and field names are tokens (lv_http_tchar); OWS is SP or HTAB (lv_http_ows). */

/* The next element of a comma-separated list (RFC 9110 section 5.6.1), blanks trimmed; empty
 * elements are skipped, as "a recipient MUST parse and ignore a reasonable number of empty list
 * elements". false at the end of the list. */
static bool list_next(const char **pp, const char *end, lv_view_t *elem)
{
    const char *p = *pp;
    for (;;) {
        while (p < end && (lv_http_ows((unsigned char)*p) || *p == ','))
            p++;
        if (p == end) {
            *pp = p;
            return false;
        }
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && lv_http_ows((unsigned char)e[-1]))
            e--;
        if (e > s) {
            elem->ptr = s;
            elem->len = (size_t)(e - s);
            *pp = p;
            return true;
        }
    }
}

static bool list_has(lv_view_t v, const char *token)
{
    const char *p = v.ptr, *end = v.ptr + v.len;
    lv_view_t e;
    while (list_next(&p, end, &e))
        if (lv_http_ieq(e.ptr, e.len, token))
            return true;
    return false;
}

/* Content-Length = 1*DIGIT (RFC 9110 section 8.6); no sign, no blanks inside, no list. */
static int parse_content_length(lv_view_t v, int64_t *out)
{
    int64_t n = 0;
    if (v.len == 0)
        return LV_EPARSE;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.ptr[i];
        if (c < '0' || c > '9')
            return LV_EPARSE;
        if (n > (INT64_MAX - (c - '0')) / 10)
            return LV_EPARSE;
        n = n * 10 + (c - '0');
    }
    *out = n;
    return 0;
}

/* The meaning of the headers that frame the body and the connection. */
static int interpret_headers(lv_http1_req_t *req, int *status)
{
    bool cl_seen = false, te_seen = false, te_other = false, te_chunked_last = false;
    int chunked_count = 0;
    bool conn_close = false, conn_keep_alive = false, conn_upgrade = false, upgrade_ws = false;

    for (size_t i = 0; i < req->n_headers; i++) {
        const lv_http1_header_t *h = &req->headers[i];
        if (lv_http_ieq(h->name.ptr, h->name.len, "content-length")) {
            /* RFC 9112 section 6.3: an invalid Content-Length is an unrecoverable framing
             * error; duplicates, even equal ones, are refused rather than merged. */
            if (cl_seen || parse_content_length(h->value, &req->content_length))
                goto bad;
            cl_seen = true;
        } else if (lv_http_ieq(h->name.ptr, h->name.len, "transfer-encoding")) {
            const char *p = h->value.ptr, *end = p + h->value.len;
            lv_view_t e;
            te_seen = true;
            while (list_next(&p, end, &e)) {
                if (lv_http_ieq(e.ptr, e.len, "chunked")) {
                    chunked_count++;
                    te_chunked_last = true;
                } else {
                    te_other = true;
                    te_chunked_last = false;
                }
            }
        } else if (lv_http_ieq(h->name.ptr, h->name.len, "connection")) {
            conn_close |= list_has(h->value, "close");
            conn_keep_alive |= list_has(h->value, "keep-alive");
            conn_upgrade |= list_has(h->value, "upgrade");
        } else if (lv_http_ieq(h->name.ptr, h->name.len, "upgrade")) {
            upgrade_ws |= list_has(h->value, "websocket");
        }
    }

    if (te_seen) {
        /* RFC 9112 section 6.1: "A server or client that receives an HTTP/1.0 message containing
         * a Transfer-Encoding header field MUST treat the message as if the framing is faulty",
         * and a request with both Transfer-Encoding and Content-Length "ought to be handled as
         * an error" (the request smuggling case): both are refused. */
        if (req->minor_version == 0 || cl_seen)
            goto bad;
        /* "A server that receives a request message with a transfer coding it does not
         * understand SHOULD respond with 501 (Not Implemented)." */
        if (te_other) {
            if (status)
                *status = 501;
            return LV_EPARSE;
        }
        /* Section 6.3: chunked must be applied once and be the final coding; an empty
         * Transfer-Encoding names no coding at all. */
        if (chunked_count != 1 || !te_chunked_last)
            goto bad;
        req->chunked = true;
    }
    req->keep_alive = req->minor_version == 1 ? !conn_close : (conn_keep_alive && !conn_close);
    /* RFC 6455 section 4.1: the opening handshake is a GET of at least HTTP/1.1. */
    req->upgrade_websocket =
        upgrade_ws && conn_upgrade && req->minor_version == 1 && lv_http_ieq(req->method.ptr, req->method.len, "GET");
    return 0;
bad:
    if (status)
        *status = 400;
    return LV_EPARSE;
}

/* Consume a line ending at *pp (CRLF or a bare LF). 1 done, 0 need more, -1 malformed. */
static int eat_eol(const char **pp, const char *end)
{
    const char *p = *pp;
    if (p == end)
        return 0;
    if (*p == '\n') {
        *pp = p + 1;
        return 1;
    }
    if (*p != '\r')
        return -1;
    if (p + 1 == end)
        return 0;
    if (p[1] != '\n')
        return -1; /* a bare CR is not a line ending (RFC 9112 section 2.2) */
    *pp = p + 2;
    return 1;
}

int lv_http1_parse_request(const char *buf, size_t len, size_t max_head_bytes, lv_http1_req_t *req, int *status)
{
    /* Bytes past the cap are never looked at: a head that does not end within it is 431. */
    size_t scan = LV_MIN(len, max_head_bytes);
    const char *p = buf, *end = scan ? buf + scan : buf; /* no arithmetic on a NULL empty buffer */
    int st = 400, eol;

    req->method = req->target = req->path = req->query = (lv_view_t){NULL, 0};
    req->minor_version = 0;
    req->n_headers = 0;
    req->content_length = -1;
    req->chunked = req->keep_alive = req->upgrade_websocket = false;
    req->head_len = 0;
    if (status)
        *status = 0;

    /* RFC 9112 section 2.2: "a server that is expecting to receive and parse a request-line
     * SHOULD ignore at least one empty line (CRLF) received prior to the request-line". */
    for (int n = 0;; n++) {
        if (p == end)
            goto need_more;
        if (*p != '\r' && *p != '\n')
            break;
        if (n == MAX_EMPTY_LINES)
            goto fail;
        eol = eat_eol(&p, end);
        if (eol == 0)
            goto need_more;
        if (eol < 0)
            goto fail;
    }

    /* request-line = method SP request-target SP HTTP-version (RFC 9112 section 3) */
    const char *m = p;
    while (p < end && lv_http_tchar((unsigned char)*p))
        p++;
    if (p == end)
        goto need_more;
    if (p == m || *p != ' ')
        goto fail;
    req->method = (lv_view_t){m, (size_t)(p - m)};
    p++;

    /* Only the origin-form is served (absolute-path [ "?" query ]); the absolute-form is for
     * proxies, the authority-form for CONNECT and '*' for a server-wide OPTIONS, none of which
     * this server is: 400. Any byte outside VCHAR is refused, so the target never carries
     * controls, blanks or raw non-ASCII. */
    const char *t = p;
    while (p < end && *p != ' ') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x21 || c > 0x7E || (p == t && c != '/'))
            goto fail;
        p++;
        if ((size_t)(p - t) > LV_HTTP1_MAX_TARGET) {
            st = 414;
            goto fail;
        }
    }
    if (p == end)
        goto need_more;
    if (p == t)
        goto fail;
    req->target = (lv_view_t){t, (size_t)(p - t)};
    const char *q = memchr(t, '?', req->target.len);
    if (q) {
        req->path = (lv_view_t){t, (size_t)(q - t)};
        req->query = (lv_view_t){q + 1, (size_t)(p - q - 1)};
    } else {
        req->path = req->target;
        req->query = (lv_view_t){p, 0};
    }
    p++;

    /* HTTP-version = "HTTP/" DIGIT "." DIGIT; checked as it arrives so garbage fails early. */
    static const char proto[] = "HTTP/";
    for (size_t i = 0; i < 8; i++) {
        if (p + i == end)
            goto need_more;
        char c = p[i];
        bool ok = i < 5 ? c == proto[i] : i == 6 ? c == '.' : (c >= '0' && c <= '9');
        if (!ok)
            goto fail;
    }
    int major = p[5] - '0', minor = p[7] - '0';
    p += 8;
    eol = eat_eol(&p, end);
    if (eol == 0)
        goto need_more;
    if (eol < 0)
        goto fail;
    if (major != 1 || minor > 1) {
        st = 505;
        goto fail;
    }
    req->minor_version = minor;

    /* field-line = field-name ":" OWS field-value OWS (RFC 9112 section 5) */
    for (;;) {
        if (p == end)
            goto need_more;
        if (*p == '\r' || *p == '\n') {
            eol = eat_eol(&p, end);
            if (eol == 0)
                goto need_more;
            if (eol < 0)
                goto fail;
            break;
        }
        /* A line starting with a blank is obs-fold, or whitespace between the request line and
         * the first field: section 5.2 lets a server reject the former with 400, section 2.2
         * says it MUST reject or ignore the latter. Both are refused. */
        const char *name = p;
        while (p < end && lv_http_tchar((unsigned char)*p))
            p++;
        if (p == end)
            goto need_more;
        /* Section 5.1: "No whitespace is allowed between the field name and colon ... A server
         * MUST reject, with a response status code of 400 (Bad Request), any received request
         * message that contains whitespace between a header field name and colon." A line
         * without a colon, or with an empty name, is no field line either. */
        if (*p != ':' || p == name)
            goto fail;
        if (req->n_headers == LV_HTTP1_MAX_HEADERS) {
            st = 431;
            goto fail;
        }
        lv_http1_header_t *h = &req->headers[req->n_headers];
        h->name = (lv_view_t){name, (size_t)(p - name)};
        p++;
        while (p < end && lv_http_ows((unsigned char)*p))
            p++;
        const char *v = p;
        /* field-value bytes: VCHAR, obs-text, SP, HTAB. NUL, CR alone and other controls are
         * refused (section 5.5: "a recipient of CR, LF, or NUL within a field value MUST either
         * reject the message or replace each of those characters with SP"). */
        while (p < end && *p != '\r' && *p != '\n') {
            unsigned char c = (unsigned char)*p;
            if ((c < 0x20 && c != '\t') || c == 0x7F)
                goto fail;
            p++;
        }
        const char *ve = p;
        eol = eat_eol(&p, end);
        if (eol == 0)
            goto need_more;
        if (eol < 0)
            goto fail;
        while (ve > v && lv_http_ows((unsigned char)ve[-1]))
            ve--;
        h->value = (lv_view_t){v, (size_t)(ve - v)};
        req->n_headers++;
    }
    req->head_len = (size_t)(p - buf);
    return interpret_headers(req, status);

need_more:
    if (len >= max_head_bytes) {
        st = 431;
        goto fail;
    }
    return LV_EAGAIN;
fail:
    if (status)
        *status = st;
    return st == 400 || st == 505 ? LV_EPARSE : LV_ELIMIT;
}

const lv_view_t *lv_http1_header(const lv_http1_req_t *req, const char *name)
{
    if (!req || !name)
        return NULL;
    for (size_t i = 0; i < req->n_headers && i < LV_HTTP1_MAX_HEADERS; i++) {
        const lv_http1_header_t *h = &req->headers[i];
        if (lv_http_ieq(h->name.ptr, h->name.len, name))
            return &h->value;
    }
    return NULL;
}

int lv_http1_header_copy(const lv_http1_req_t *req, const char *name, char *out, size_t out_size)
{
    const lv_view_t *v = lv_http1_header(req, name);
    if (out && out_size)
        out[0] = '\0';
    if (!v)
        return LV_ENOTFOUND;
    if (!out || v->len >= out_size)
        return LV_ELIMIT;
    if (v->len)
        memcpy(out, v->ptr, v->len);
    out[v->len] = '\0';
    return 0;
}

/* --- chunked transfer coding ------------------------------------------------------------------
 * RFC 9112 section 7.1:
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk   = 1*("0") [ chunk-ext ] CRLF
 *   chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 * Unlike the head, lines here must end in CRLF: lenient line endings inside chunked bodies are
 * how front proxies and origins come to disagree on where a body ends (request smuggling). */
enum {
    CH_SIZE = 0, /* hex digits of chunk-size */
    CH_SIZE_WS,  /* BWS after the size: only ';' may follow */
    CH_EXT,      /* chunk extensions, skipped up to CR */
    CH_SIZE_LF,  /* the LF of the size line */
    CH_DATA,
    CH_DATA_CR, /* the CRLF after chunk-data */
    CH_DATA_LF,
    CH_TRAILER_START, /* start of a trailer line, or the final CRLF */
    CH_TRAILER,       /* inside a trailer line, skipped up to CR */
    CH_TRAILER_LF,
    CH_END_LF, /* the LF of the final CRLF */
    CH_DONE,
    CH_ERR_PARSE,
    CH_ERR_LIMIT,
};

void lv_http1_chunked_init(lv_http1_chunked_t *c, size_t max_body_bytes)
{
    memset(c, 0, sizeof(*c));
    c->state = CH_SIZE;
    c->max_body_bytes = max_body_bytes;
}

/* Bytes allowed inside a skipped extension or trailer line: anything but controls (HTAB is
 * allowed); a bare CR or LF in particular ends nothing and is refused. */
static bool line_byte_ok(unsigned char c)
{
    return (c >= 0x20 && c != 0x7F) || c == '\t';
}

int lv_http1_chunked_feed(lv_http1_chunked_t *c, char *in, size_t *len, size_t *out_len)
{
    size_t n = *len, i = 0, o = 0;
    int rc = 0;

    while (i < n && rc == 0) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->state) {
        case CH_SIZE: {
            int d = lv_hex_digit((unsigned char)ch);
            if (d >= 0) {
                /* A size past 2^63-1 is no size any peer can mean: malformed, not just big. */
                if (c->chunk_left > ((uint64_t)INT64_MAX - (uint64_t)d) / 16)
                    goto parse_error;
                c->chunk_left = c->chunk_left * 16 + (uint64_t)d;
                c->size_digits++;
                break;
            }
            if (c->size_digits == 0)
                goto parse_error;
            if (c->chunk_left > (uint64_t)(c->max_body_bytes - c->body_len))
                goto limit_error;
            if (ch == '\r')
                c->state = CH_SIZE_LF;
            else if (ch == ';')
                c->state = CH_EXT;
            else if (lv_http_ows(ch))
                c->state = CH_SIZE_WS;
            else
                goto parse_error;
            break;
        }
        case CH_SIZE_WS:
            if (ch == ';')
                c->state = CH_EXT;
            else if (!lv_http_ows(ch))
                goto parse_error;
            break;
        case CH_EXT:
            if (ch == '\r')
                c->state = CH_SIZE_LF;
            else if (!line_byte_ok(ch))
                goto parse_error;
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                goto parse_error;
            c->line_len = 0;
            c->size_digits = 0;
            /* chunk_left counts trailer bytes from here on when this was the last chunk. */
            c->state = c->chunk_left ? CH_DATA : CH_TRAILER_START;
            i++;
            continue;
        case CH_DATA: {
            size_t take = (size_t)LV_MIN(c->chunk_left, (uint64_t)(n - i));
            /* Decoding in place: the output never overtakes the input. */
            if (o != i)
                memmove(in + o, in + i, take);
            o += take;
            i += take;
            c->chunk_left -= take;
            c->body_len += take;
            if (c->chunk_left == 0)
                c->state = CH_DATA_CR;
            continue;
        }
        case CH_DATA_CR:
            if (ch != '\r')
                goto parse_error;
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n')
                goto parse_error;
            c->state = CH_SIZE;
            c->line_len = 0;
            i++;
            continue;
        case CH_TRAILER_START:
            if (ch == '\r') {
                c->state = CH_END_LF;
                break;
            }
            /* A trailer line starting with a blank would be obs-fold (RFC 9112 section 5.2). */
            if (lv_http_ows(ch) || !line_byte_ok(ch))
                goto parse_error;
            c->state = CH_TRAILER;
            break;
        case CH_TRAILER:
            if (ch == '\r')
                c->state = CH_TRAILER_LF;
            else if (!line_byte_ok(ch))
                goto parse_error;
            break;
        case CH_TRAILER_LF:
            if (ch != '\n')
                goto parse_error;
            c->line_len = 0;
            c->state = CH_TRAILER_START;
            i++;
            continue;
        case CH_END_LF:
            if (ch != '\n')
                goto parse_error;
            c->state = CH_DONE;
            rc = 1;
            break;
        case CH_DONE:
            rc = 1;
            continue; /* consumes nothing: the rest belongs to the next request */
        case CH_ERR_PARSE:
            rc = LV_EPARSE;
            continue;
        default:
            rc = LV_ELIMIT;
            continue;
        }
        /* Every byte of a size/extension or trailer line but its CR counts against the line
         * cap, and trailer bytes against the trailer total (kept in chunk_left, which is idle
         * after the last chunk). */
        i++;
        if (ch != '\r' && ++c->line_len > CHUNK_LINE_MAX)
            goto limit_error;
        if (c->state >= CH_TRAILER_START && c->state <= CH_END_LF && ++c->chunk_left > TRAILER_MAX)
            goto limit_error;
    }
    if (rc == 0 && i == n && c->state == CH_DONE)
        rc = 1;
    if (rc == 0 && c->state == CH_ERR_PARSE)
        rc = LV_EPARSE;
    else if (rc == 0 && c->state == CH_ERR_LIMIT)
        rc = LV_ELIMIT;
    goto out;

parse_error:
    c->state = CH_ERR_PARSE;
    rc = LV_EPARSE;
    goto out;
limit_error:
    c->state = CH_ERR_LIMIT;
    rc = LV_ELIMIT;
out:
    *len = i;
    *out_len = o;
    return rc;
}

/* RFC 9110 section 15 (and RFC 6585 for 428, 429, 431). */
static const struct {
    int status;
    const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *lv_http1_reason(int status)
{
    for (size_t i = 0; i < LV_ARRAY_LEN(reasons); i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return "Unknown";
}
