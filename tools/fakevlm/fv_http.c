/* fv_http.c - fakevlm's HTTP/1.1 request parser: finds the head incrementally, then parses it once.
 * Rules follow RFC 9112; where it lets a server choose, this one refuses (it is a test peer, and
 * refusing loudly is what surfaces client bugs). */
#include "fv_http.h"

#include <string.h>

#include "lv_common.h"

void fv_http_parser_init(fv_http_parser_t *p)
{
    memset(p, 0, sizeof(*p));
}

static int reject(fv_http_parser_t *p, int status, const char *reason)
{
    p->status = status;
    p->reason = reason;
    return LV_EPARSE;
}

/* RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" /
 * "`" / "|" / "~" / DIGIT / ALPHA */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c; }

static bool ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

/* Copy a view into a fixed array; false when it does not fit. */
static bool copy_str(char *dst, size_t dst_size, const char *src, size_t len)
{
    if (len >= dst_size)
        return false;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return true;
}

/* "Connection" is a comma-separated token list (RFC 9110 §7.6.1); "close" wins over "keep-alive". */
static void parse_connection(const char *v, size_t n, bool *saw_close, bool *saw_keep)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ',' || v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (ieq(v + start, i - start, "close"))
            *saw_close = true;
        else if (ieq(v + start, i - start, "keep-alive"))
            *saw_keep = true;
    }
}

/* Content-Length = 1*DIGIT (RFC 9110 §8.6). No sign, no list, no overflow. */
static bool parse_length(const char *v, size_t n, size_t *out)
{
    if (n == 0 || n > 19)
        return false;
    size_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        x = x * 10 + (size_t)(v[i] - '0');
    }
    *out = x;
    return true;
}

static int parse_request_line(fv_http_parser_t *p, const char *s, size_t n)
{
    fv_http_request_t *r = &p->req;
    /* request-line = method SP request-target SP HTTP-version (RFC 9112 §3), single spaces. */
    const char *sp1 = memchr(s, ' ', n);
    if (!sp1)
        return reject(p, 400, "malformed request line");
    size_t mlen = (size_t)(sp1 - s);
    if (mlen == 0)
        return reject(p, 400, "malformed request line");
    for (size_t i = 0; i < mlen; i++) {
        if (!is_tchar((unsigned char)s[i]))
            return reject(p, 400, "malformed method");
    }
    if (!copy_str(r->method, sizeof(r->method), s, mlen))
        return reject(p, 501, "method not implemented");
    const char *t = sp1 + 1;
    const char *end = s + n;
    const char *sp2 = memchr(t, ' ', (size_t)(end - t));
    if (!sp2 || sp2 == t)
        return reject(p, 400, "malformed request line");
    size_t tlen = (size_t)(sp2 - t);
    for (size_t i = 0; i < tlen; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c == 0x7f)
            return reject(p, 400, "malformed request target");
    }
    const char *v = sp2 + 1;
    size_t vlen = (size_t)(end - v);
    if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' ||
        v[7] > '9')
        return reject(p, 400, "malformed HTTP version");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return reject(p, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    r->minor_version = v[7] - '0';

    /* origin-form "/path?query"; absolute-form "http://host/path" is reduced to its path. */
    const char *path = t;
    size_t plen = tlen;
    if (tlen > 7 && (ieq(t, 7, "http://") || (tlen > 8 && ieq(t, 8, "https://")))) {
        const char *auth = memchr(t, '/', tlen);
        auth += 2;
        const char *slash = memchr(auth, '/', (size_t)(t + tlen - auth));
        path = slash ? slash : "/";
        plen = slash ? (size_t)(t + tlen - slash) : 1;
    } else if (!(tlen == 1 && t[0] == '*') && t[0] != '/') {
        return reject(p, 400, "malformed request target");
    }
    for (size_t i = 0; i < plen; i++) {
        if (path[i] == '?' || path[i] == '#') {
            plen = i;
            break;
        }
    }
    if (!copy_str(r->path, sizeof(r->path), path, plen))
        return reject(p, 414, "request target too long");
    return 0;
}

static int parse_head(fv_http_parser_t *p, const char *s, size_t n)
{
    fv_http_request_t *r = &p->req;
    bool first = true, saw_close = false, saw_keep = false, has_length = false, has_te = false;
    size_t headers = 0;
    size_t pos = 0;
    while (pos < n) {
        const char *nl = memchr(s + pos, '\n', n - pos);
        size_t line_end = nl ? (size_t)(nl - s) : n;
        size_t next = nl ? line_end + 1 : n;
        size_t len = line_end - pos;
        if (len > 0 && s[pos + len - 1] == '\r')
            len--;
        const char *line = s + pos;
        pos = next;
        if (len == 0)
            break; /* the blank line ending the head */
        if (memchr(line, '\0', len))
            return reject(p, 400, "NUL byte in head");
        if (first) {
            first = false;
            int rc = parse_request_line(p, line, len);
            if (rc)
                return rc;
            continue;
        }
        if (++headers > FV_HTTP_HEADERS_MAX)
            return reject(p, 431, "too many header fields");
        /* RFC 9112 §5.2: obs-fold must be rejected or replaced; we reject. */
        if (line[0] == ' ' || line[0] == '\t')
            return reject(p, 400, "obsolete line folding");
        const char *colon = memchr(line, ':', len);
        if (!colon || colon == line)
            return reject(p, 400, "malformed header field");
        size_t nlen = (size_t)(colon - line);
        /* RFC 9112 §5.1: no whitespace between the field name and the colon. */
        for (size_t i = 0; i < nlen; i++) {
            if (!is_tchar((unsigned char)line[i]))
                return reject(p, 400, "malformed header field name");
        }
        const char *v = colon + 1;
        size_t vlen = len - nlen - 1;
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        for (size_t i = 0; i < vlen; i++) {
            unsigned char c = (unsigned char)v[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return reject(p, 400, "control character in header value");
        }
        if (ieq(line, nlen, "content-length")) {
            size_t cl;
            if (!parse_length(v, vlen, &cl))
                return reject(p, 400, "invalid Content-Length");
            if (has_length && cl != r->content_length)
                return reject(p, 400, "conflicting Content-Length headers");
            has_length = true;
            r->content_length = cl;
        } else if (ieq(line, nlen, "transfer-encoding")) {
            has_te = true;
        } else if (ieq(line, nlen, "connection")) {
            parse_connection(v, vlen, &saw_close, &saw_keep);
        } else if (ieq(line, nlen, "expect")) {
            if (!ieq(v, vlen, "100-continue"))
                return reject(p, 417, "only Expect: 100-continue is supported");
            r->expect_continue = true;
        } else if (ieq(line, nlen, "traceparent")) {
            if (!copy_str(r->traceparent, sizeof(r->traceparent), v, vlen))
                memcpy(r->traceparent, "(too long)", sizeof("(too long)"));
        } else if (ieq(line, nlen, "x-fake-fault")) {
            r->has_fault = true;
            if (!copy_str(r->fault, sizeof(r->fault), v, vlen))
                r->fault[0] = '\0';
        }
    }
    if (first)
        return reject(p, 400, "empty request");
    /* RFC 9112 §6.3: a request with both is a smuggling vector; we do not take chunked bodies. */
    if (has_te && has_length)
        return reject(p, 400, "both Transfer-Encoding and Content-Length");
    if (has_te)
        return reject(p, 411, "chunked request bodies are not supported; send Content-Length");
    if (!has_length && strcmp(r->method, "POST") == 0)
        return reject(p, 411, "POST needs Content-Length");
    if (r->content_length > FV_HTTP_BODY_MAX)
        return reject(p, 413, "request body over 16 MiB");
    r->keep_alive = r->minor_version == 1 ? !saw_close : (saw_keep && !saw_close);
    return 0;
}

/* Look for the empty line that ends the head, resuming where the last call stopped. Empty lines
 * before the request line are skipped (RFC 9112 §2.2). */
static int find_head_end(fv_http_parser_t *p, const char *buf, size_t len, size_t *end)
{
    size_t i = p->scan_from;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        if (!nl)
            break;
        size_t at = (size_t)(nl - buf);
        size_t line_len = at - p->line_start;
        if (line_len > 0 && buf[at - 1] == '\r')
            line_len--;
        i = at + 1;
        if (i > FV_HTTP_HEAD_MAX)
            return reject(p, 431, "request head over 16 KiB");
        if (line_len == 0) {
            if (p->seen_line) {
                p->scan_from = i;
                *end = i;
                return 0;
            }
            p->head_start = i; /* a leading empty line */
        } else {
            p->seen_line = true;
        }
        p->line_start = i;
    }
    p->scan_from = len;
    if (len >= FV_HTTP_HEAD_MAX)
        return reject(p, 431, "request head over 16 KiB");
    return LV_EAGAIN;
}

int fv_http_feed(fv_http_parser_t *p, const char *buf, size_t len)
{
    if (p->status)
        return LV_EPARSE;
    if (!p->head_done) {
        size_t end = 0;
        int rc = find_head_end(p, buf, len, &end);
        if (rc)
            return rc;
        rc = parse_head(p, buf + p->head_start, end - p->head_start);
        if (rc)
            return rc;
        p->head_done = true;
        p->req.head_len = end;
    }
    if (len - p->req.head_len < p->req.content_length)
        return LV_EAGAIN;
    return 0;
}

const char *fv_http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
