/* lv_httputil.c - cookie, query, Bearer and Origin helpers for the HTTP layer, and the client
 * address behind trusted proxies. */
#include "lv_httputil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lv_common.h"

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Copy a view into a caller buffer as a C string, or LV_ELIMIT when it (plus NUL) does not fit. */
static int copy_out(const char *p, size_t len, char *out, size_t out_size)
{
    if (!out || len >= out_size)
        return LV_ELIMIT;
    memcpy(out, p, len);
    out[len] = '\0';
    return 0;
}

int lv_cookie_get(const char *cookie_header, const char *name, char *out, size_t out_size)
{
    if (!name || !*name)
        return LV_EINVAL;
    if (!cookie_header)
        return LV_ENOTFOUND;
    size_t name_len = strlen(name);
    const char *p = cookie_header;
    while (*p) {
        while (is_blank(*p) || *p == ';')
            p++;
        if (!*p)
            break;
        const char *end = strchr(p, ';');
        if (!end)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (eq) {
            const char *n_end = eq;
            while (n_end > p && is_blank(n_end[-1]))
                n_end--;
            const char *v = eq + 1, *v_end = end;
            while (v < v_end && is_blank(*v))
                v++;
            while (v_end > v && is_blank(v_end[-1]))
                v_end--;
            /* RFC 6265: cookie-value = *cookie-octet / ( DQUOTE *cookie-octet DQUOTE ) */
            if (v_end - v >= 2 && v[0] == '"' && v_end[-1] == '"')
                v++, v_end--;
            if ((size_t)(n_end - p) == name_len && memcmp(p, name, name_len) == 0)
                return copy_out(v, (size_t)(v_end - v), out, out_size);
        }
        p = end;
    }
    return LV_ENOTFOUND;
}

/* Decode one byte of a form-encoded component at *pp (< end) and advance. Returns the byte
 * (0..255) or -1 for a malformed escape. */
static int decode_byte(const char **pp, const char *end)
{
    const char *p = *pp;
    if (*p == '+') {
        *pp = p + 1;
        return ' ';
    }
    if (*p != '%') {
        *pp = p + 1;
        return (unsigned char)*p;
    }
    if (end - p < 3)
        return -1;
    int hi = lv_hex_digit((unsigned char)p[1]), lo = lv_hex_digit((unsigned char)p[2]);
    if (hi < 0 || lo < 0)
        return -1;
    *pp = p + 3;
    return hi * 16 + lo;
}

/* Does the decoded form of [p, end) equal name? A malformed escape or %00 never matches. */
static int key_matches(const char *p, const char *end, const char *name, size_t name_len)
{
    size_t i = 0;
    while (p < end) {
        int c = decode_byte(&p, end);
        if (c <= 0 || i >= name_len || (char)c != name[i])
            return 0;
        i++;
    }
    return i == name_len;
}

int lv_query_get(const char *query, const char *name, char *out, size_t out_size)
{
    if (!name || !*name)
        return LV_EINVAL;
    if (!query)
        return LV_ENOTFOUND;
    size_t name_len = strlen(name);
    const char *p = query;
    for (;;) {
        const char *end = strchr(p, '&');
        if (!end)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *k_end = eq ? eq : end;
        if (key_matches(p, k_end, name, name_len)) {
            const char *v = eq ? eq + 1 : end;
            /* Validate and measure first, so a bad escape is reported as such even when the
             * value would also be too long, and out is untouched on failure. */
            size_t n = 0;
            for (const char *q = v; q < end; n++) {
                int c = decode_byte(&q, end);
                if (c <= 0) /* malformed, or %00 which would truncate the C string */
                    return LV_EINVAL;
            }
            if (!out || n >= out_size)
                return LV_ELIMIT;
            size_t i = 0;
            for (const char *q = v; q < end;)
                out[i++] = (char)decode_byte(&q, end);
            out[i] = '\0';
            return 0;
        }
        if (!*end)
            break;
        p = end + 1;
    }
    return LV_ENOTFOUND;
}

typedef struct {
    const char *host; /* without brackets for IPv6 literals */
    size_t host_len;
    long port;        /* -1 when not given */
    int ipv6;
} hostport_t;

/* Parse "host[:port]" or "[v6]:port" spanning exactly [p, end). Returns 0 or -1. Deliberately
 * narrow (RFC 3986 reg-name without percent-encoding, IPv6 without zone ids): anything unusual
 * makes the Origin check fail closed. */
static int parse_hostport(const char *p, const char *end, hostport_t *hp)
{
    const char *h_end;
    hp->port = -1;
    hp->ipv6 = 0;
    if (p >= end)
        return -1;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close || close == p + 1)
            return -1;
        for (const char *q = p + 1; q < close; q++)
            if (lv_hex_digit((unsigned char)*q) < 0 && *q != ':' && *q != '.')
                return -1;
        hp->host = p + 1;
        hp->host_len = (size_t)(close - p - 1);
        hp->ipv6 = 1;
        h_end = close + 1;
    } else {
        h_end = p;
        while (h_end < end && (is_alnum(*h_end) || *h_end == '.' || *h_end == '-' || *h_end == '_'))
            h_end++;
        if (h_end == p)
            return -1;
        hp->host = p;
        hp->host_len = (size_t)(h_end - p);
    }
    if (h_end == end)
        return 0;
    if (*h_end != ':')
        return -1;
    const char *d = h_end + 1;
    if (d == end || end - d > 5)
        return -1; /* "host:" is legal in RFC 3986 but browsers never send it; be strict */
    long port = 0;
    for (; d < end; d++) {
        if (*d < '0' || *d > '9')
            return -1;
        port = port * 10 + (*d - '0');
    }
    if (port < 1 || port > 65535)
        return -1;
    hp->port = port;
    return 0;
}

static void trim(const char **p, const char **end)
{
    while (*p < *end && is_blank(**p))
        (*p)++;
    while (*end > *p && is_blank((*end)[-1]))
        (*end)--;
}

int lv_origin_matches(const char *origin, const char *host_header)
{
    hostport_t o, h;
    long default_port;

    if (!origin || !host_header)
        return 0;
    const char *op = origin, *o_end = origin + strlen(origin);
    trim(&op, &o_end);
    /* RFC 6454 section 6.1: scheme "://" host [ ":" port ]; "null" is the opaque origin of
     * sandboxed frames and file: pages and must never match. */
    if ((size_t)(o_end - op) >= 8 && strncasecmp(op, "https://", 8) == 0) {
        default_port = 443;
        op += 8;
    } else if ((size_t)(o_end - op) >= 7 && strncasecmp(op, "http://", 7) == 0) {
        default_port = 80;
        op += 7;
    } else {
        return 0;
    }
    const char *hp = host_header, *h_end = host_header + strlen(host_header);
    trim(&hp, &h_end);
    if (parse_hostport(op, o_end, &o) != 0 || parse_hostport(hp, h_end, &h) != 0)
        return 0;
    /* The Host header carries no scheme; the connection's scheme is the origin's if they match
     * at all, so the origin's default port stands in for a missing port on both sides. */
    if (o.port < 0)
        o.port = default_port;
    if (h.port < 0)
        h.port = default_port;
    return o.ipv6 == h.ipv6 && o.port == h.port && o.host_len == h.host_len &&
           strncasecmp(o.host, h.host, o.host_len) == 0;
}

/* RFC 7235 token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static int is_token68(char c)
{
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

int lv_bearer_get(const char *authorization_header, char *out, size_t out_size)
{
    if (!authorization_header)
        return LV_ENOTFOUND;
    const char *p = authorization_header;
    while (is_blank(*p))
        p++;
    if (strncasecmp(p, "bearer", 6) != 0 || !is_blank(p[6]))
        return LV_ENOTFOUND;
    p += 6;
    while (is_blank(*p))
        p++;
    const char *tok = p;
    while (is_token68(*p))
        p++;
    if (p == tok)
        return LV_ENOTFOUND;
    while (*p == '=')
        p++;
    const char *tok_end = p;
    while (is_blank(*p))
        p++;
    if (*p)
        return LV_ENOTFOUND; /* trailing junk or a second token: not a Bearer credential */
    return copy_out(tok, (size_t)(tok_end - tok), out, out_size);
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) (RFC 9110 section 12.4.2),
 * spanning exactly [p, end): thousandths, or -1 when malformed. */
static int parse_qvalue(const char *p, const char *end)
{
    if (p == end || (*p != '0' && *p != '1'))
        return -1;
    int whole = *p++ - '0', frac = 0, digits = 0;
    if (p < end && *p++ != '.')
        return -1;
    for (; p < end; p++, digits++) {
        if (digits == 3 || *p < '0' || *p > '9')
            return -1;
        frac = frac * 10 + (*p - '0');
    }
    for (; digits < 3; digits++)
        frac *= 10;
    if (whole == 1 && frac != 0)
        return -1;
    return whole * 1000 + frac;
}

/* Does the coding name [p, p + n) name `coding`? x-gzip and x-compress are the old spellings of
 * gzip and compress (RFC 9110 section 8.4.1). */
static int coding_is(const char *p, size_t n, const char *coding, size_t coding_len)
{
    if (n > 2 && strncasecmp(p, "x-", 2) == 0 &&
        ((n == 6 && strncasecmp(p + 2, "gzip", 4) == 0) || (n == 10 && strncasecmp(p + 2, "compress", 8) == 0)))
        p += 2, n -= 2;
    return n == coding_len && strncasecmp(p, coding, n) == 0;
}

int lv_accept_encoding_q(const char *value, size_t len, const char *coding)
{
    if (!value || !coding || !*coding)
        return 0;
    size_t coding_len = strlen(coding);
    int own_q = -1, star_q = -1;
    const char *p = value, *end = value + len;
    while (p < end) {
        /* one list element: [p, e), trimmed; empty elements are allowed (section 5.6.1) */
        const char *e = memchr(p, ',', (size_t)(end - p));
        if (!e)
            e = end;
        const char *next = e < end ? e + 1 : end;
        trim(&p, &e);
        const char *name = p;
        while (p < e && lv_http_tchar((unsigned char)*p))
            p++;
        size_t name_len = (size_t)(p - name);
        int q = 1000;
        while (p < e && is_blank(*p))
            p++;
        if (p < e) {
            /* weight = OWS ";" OWS "q=" qvalue: the only parameter a coding may carry */
            if (*p++ != ';')
                q = -1;
            while (p < e && is_blank(*p))
                p++;
            if (q >= 0 && e - p >= 2 && (*p == 'q' || *p == 'Q') && p[1] == '=')
                q = parse_qvalue(p + 2, e);
            else
                q = -1;
        }
        if (name_len > 0 && q >= 0) {
            if (name_len == 1 && *name == '*') {
                if (star_q < 0)
                    star_q = q;
            } else if (own_q < 0 && coding_is(name, name_len, coding, coding_len)) {
                own_q = q;
            }
        }
        p = next;
    }
    return own_q >= 0 ? own_q : star_q >= 0 ? star_q : 0;
}

/* etagc = %x21 / %x23-7E / obs-text (RFC 9110 section 8.8.3) */
static int is_etagc(char c)
{
    unsigned char u = (unsigned char)c;
    return u == 0x21 || (u >= 0x23 && u <= 0x7e) || u >= 0x80;
}

int lv_etag_match(const char *value, size_t len, const char *etag)
{
    if (!value || !etag)
        return 0;
    size_t etag_len = strlen(etag);
    if (etag_len >= 2 && etag[0] == 'W' && etag[1] == '/')
        etag += 2, etag_len -= 2;
    if (etag_len < 2 || etag[0] != '"' || etag[etag_len - 1] != '"')
        return 0;
    const char *p = value, *end = value + len;
    trim(&p, &end);
    if (end - p == 1 && *p == '*')
        return 1;
    int matched = 0;
    while (p < end) {
        while (p < end && (is_blank(*p) || *p == ','))
            p++;
        if (p == end)
            break;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2; /* weak comparison: the opaque tags alone are compared */
        if (p == end || *p != '"')
            return 0;
        const char *open = p++;
        while (p < end && is_etagc(*p))
            p++;
        if (p == end || *p != '"')
            return 0;
        p++;
        if ((size_t)(p - open) == etag_len && memcmp(open, etag, etag_len) == 0)
            matched = 1;
        while (p < end && is_blank(*p))
            p++;
        if (p < end && *p != ',')
            return 0;
    }
    return matched;
}

/* ---------- client addresses behind a reverse proxy ---------- */

/* ::ffff:0:0/96, where IPv4 addresses live in the 16-byte form (RFC 4291 section 2.5.5.2) */
static const unsigned char v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int lv_ip_parse(const char *text, size_t len, unsigned char addr[16])
{
    char buf[LV_IP_TEXT_MAX];
    unsigned char a6[16];
    struct in_addr a4;
    if (!text || len == 0 || len >= sizeof(buf) || memchr(text, '\0', len))
        return LV_EINVAL;
    memcpy(buf, text, len);
    buf[len] = '\0';
    /* inet_pton takes exactly four decimal parts for IPv4 (no "127.1", no octal "010"), and no
     * zone ("%eth0") for IPv6 */
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        memcpy(addr, v4mapped_prefix, sizeof(v4mapped_prefix));
        memcpy(addr + 12, &a4, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, a6) == 1) {
        memcpy(addr, a6, 16);
        return 0;
    }
    return LV_EINVAL;
}

void lv_ip_text(const unsigned char addr[16], char *out, size_t out_size)
{
    if (!out || out_size == 0)
        return;
    const char *r;
    if (memcmp(addr, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0)
        r = inet_ntop(AF_INET, addr + 12, out, (socklen_t)out_size);
    else
        r = inet_ntop(AF_INET6, addr, out, (socklen_t)out_size);
    if (!r)
        snprintf(out, out_size, "?");
}

int lv_ipnet_parse(const char *text, lv_ipnet_t *out)
{
    if (!text)
        return LV_EINVAL;
    const char *slash = strchr(text, '/');
    size_t addr_len = slash ? (size_t)(slash - text) : strlen(text);
    lv_ipnet_t n;
    memset(&n, 0, sizeof(n));
    if (lv_ip_parse(text, addr_len, n.addr) != 0)
        return LV_EINVAL;
    bool v4 = memchr(text, ':', addr_len) == NULL; /* as written: "::ffff:10.0.0.0/104" is IPv6 */
    unsigned max = v4 ? 32 : 128, bits = max;
    if (slash) {
        const char *d = slash + 1;
        size_t nd = strspn(d, "0123456789");
        if (nd == 0 || nd > 3 || d[nd] != '\0')
            return LV_EINVAL;
        bits = 0;
        for (size_t i = 0; i < nd; i++)
            bits = bits * 10 + (unsigned)(d[i] - '0');
        if (bits > max)
            return LV_EINVAL;
    }
    n.bits = v4 ? 96 + bits : bits;
    for (unsigned i = n.bits; i < 128; i++)
        n.addr[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
    *out = n;
    return 0;
}

int lv_ipnet_contains(const lv_ipnet_t *nets, size_t n, const unsigned char addr[16])
{
    for (size_t k = 0; k < n; k++) {
        unsigned full = nets[k].bits / 8, rest = nets[k].bits % 8;
        if (memcmp(addr, nets[k].addr, full) != 0)
            continue;
        if (rest == 0)
            return 1;
        unsigned char mask = (unsigned char)(0xffu << (8 - rest));
        if ((addr[full] & mask) == nets[k].addr[full])
            return 1;
    }
    return 0;
}

int lv_forwarded_for_client(const lv_view_t *values, size_t n_values, const lv_ipnet_t *trusted, size_t n_trusted,
                            char *out, size_t out_size)
{
    unsigned char addr[16] = {0};
    size_t entries = 0, walked = 0;
    if (!out || out_size < LV_IP_TEXT_MAX)
        return LV_EINVAL;
    out[0] = '\0';
    if (n_values == 0)
        return LV_ENOTFOUND;
    /* right to left over the fields, then over the elements of each: the right end is what our
     * proxies appended; anything left of the first address they did not get from one another is
     * the client's own text, so the walk stops there and never reads it */
    for (size_t i = n_values; i-- > 0;) {
        const char *start = values[i].ptr, *p = start + values[i].len;
        while (p > start) {
            const char *e = p; /* the element is [e, p) */
            while (e > start && e[-1] != ',')
                e--;
            walked += (size_t)(p - e) + 1; /* its comma, or what separates the fields */
            if (walked > LV_XFF_MAX_BYTES)
                return LV_ELIMIT;
            const char *a = e, *b = p;
            p = e > start ? e - 1 : start;
            trim(&a, &b);
            if (a == b)
                continue; /* RFC 9110 section 5.6.1: empty list elements are ignored */
            if (++entries > LV_XFF_MAX_ENTRIES)
                return LV_ELIMIT;
            if (b - a >= 2 && *a == '[' && b[-1] == ']')
                a++, b--;
            if (lv_ip_parse(a, (size_t)(b - a), addr) != 0)
                return LV_EINVAL;
            if (!lv_ipnet_contains(trusted, n_trusted, addr)) {
                lv_ip_text(addr, out, out_size);
                return 0;
            }
        }
    }
    if (entries == 0)
        return LV_EINVAL;
    lv_ip_text(addr, out, out_size); /* every one a trusted proxy: the leftmost was the client */
    return 0;
}
