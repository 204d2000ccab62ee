/* lv_rtspurl.c - admin camera definitions (ID=rtsp://user:pass@host:port/path) split into parts,
 * and RTSP credentials scrubbed out of text (RFC 3986 for the URL syntax, RFC 2326 / 7826 ports). */
#include "lv_rtspurl.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lv_common.h"

/* A failure: *out holds nothing half-parsed (least of all a password), *why a fixed sentence. */
static int fail(lv_camera_def_t *out, const char **why, int rc, const char *msg)
{
    lv_camera_def_wipe(out);
    if (why)
        *why = msg;
    return rc;
}

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}
static unsigned char to_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* RFC 3986: unreserved / sub-delims / ":" / "@" (pchar without pct-encoded), plus "/" and "?"
 * which path and query add. */
static int is_path_char(unsigned char c)
{
    if (is_alpha(c) || is_digit(c))
        return 1;
    return c != '\0' && strchr("-._~!$&'()*+,;=:@/?", c) != NULL;
}

int lv_camera_id_valid(const char *id, size_t len)
{
    if (!id || len == 0 || len > LV_CAMERA_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Percent-decode s[0..len) into out (cap bytes with the NUL). Returns the decoded length, -1 for
 * a '%' not followed by two hex digits or a decoded control byte, -2 when it does not fit. */
static int decode_part(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = lv_hex_digit((unsigned char)s[i + 1]);
            int lo = lv_hex_digit((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f)
            return -1;
        if (o + 1 >= cap)
            return -2;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (int)o;
}

/* The userinfo [s, s+len) as written: "user[:password]". */
static int parse_userinfo(const char *s, size_t len, lv_camera_def_t *out, const char **why)
{
    if (len == 0)
        return fail(out, why, LV_EINVAL, "the URL has an '@' with no user name before it");
    if (len > LV_RTSPURL_USERINFO_MAX)
        return fail(out, why, LV_ELIMIT, "the user name and password are too long");
    const char *colon = memchr(s, ':', len);
    size_t ulen = colon ? (size_t)(colon - s) : len;
    if (ulen == 0)
        return fail(out, why, LV_EINVAL, "the URL has a password but no user name");
    int rc = decode_part(s, ulen, out->user, sizeof(out->user));
    if (rc == -2)
        return fail(out, why, LV_ELIMIT, "the user name is longer than 128 bytes");
    if (rc < 0)
        return fail(out, why, LV_EINVAL,
                    "the user name has a control byte or a '%' not followed by two hex digits "
                    "(write a '%' as %25)");
    if (colon) {
        rc = decode_part(colon + 1, len - ulen - 1, out->password, sizeof(out->password));
        if (rc == -2)
            return fail(out, why, LV_ELIMIT, "the password is longer than 128 bytes");
        if (rc < 0)
            return fail(out, why, LV_EINVAL,
                        "the password has a control byte or a '%' not followed by two hex digits "
                        "(write a '%' as %25)");
    }
    memcpy(out->userinfo_raw, s, len);
    out->userinfo_raw[len] = '\0';
    out->has_userinfo = 1;
    return 0;
}

/* A DNS name or dotted IPv4 address [s, s+len), stored lowercased. */
static int parse_reg_name(const char *s, size_t len, lv_camera_def_t *out, const char **why)
{
    if (len == 0)
        return fail(out, why, LV_EINVAL, "the URL has no host");
    if (len > LV_RTSPURL_HOST_MAX)
        return fail(out, why, LV_ELIMIT, "the host name is longer than 253 bytes");
    int all_numeric = 1;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return fail(out, why, LV_EINVAL, "the host name has an empty label (\"..\" or a "
                                                 "leading or trailing '.')");
            label = 0;
            continue;
        }
        if (c == '%')
            return fail(out, why, LV_EINVAL, "percent-encoded host names are not supported");
        if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '_'))
            return fail(out, why, LV_EINVAL,
                        "the host name has a character other than letters, digits, '-', '_' and "
                        "'.' (IPv6 addresses go in brackets)");
        if (!is_digit(c))
            all_numeric = 0;
        if (++label > 63)
            return fail(out, why, LV_EINVAL, "a label of the host name is longer than 63 bytes");
    }
    if (label == 0)
        return fail(out, why, LV_EINVAL,
                    "the host name has an empty label (\"..\" or a leading or trailing '.')");
    for (size_t i = 0; i < len; i++)
        out->host[i] = (char)to_lower((unsigned char)s[i]);
    out->host[len] = '\0';
    if (all_numeric) {
        /* "10.0.0.300" or "1.2.3" would be looked up as names, or worse read as other addresses
         * by inet_aton's old forms: an all-digit host is a dotted quad or nothing. */
        struct in_addr a4;
        if (inet_pton(AF_INET, out->host, &a4) != 1)
            return fail(out, why, LV_EINVAL, "the host is not a valid IPv4 address");
    }
    return 0;
}

/* The inside of "[...]" [s, s+len). */
static int parse_ipv6(const char *s, size_t len, lv_camera_def_t *out, const char **why)
{
    if (len > 0 && (s[0] == 'v' || s[0] == 'V'))
        return fail(out, why, LV_EINVAL, "IPvFuture addresses are not supported");
    if (memchr(s, '%', len))
        return fail(out, why, LV_EINVAL, "IPv6 zone IDs (%) are not supported in camera URLs");
    char tmp[64];
    struct in6_addr a6;
    if (len == 0 || len >= sizeof(tmp))
        return fail(out, why, LV_EINVAL, "the host is not a valid IPv6 address");
    for (size_t i = 0; i < len; i++)
        tmp[i] = (char)to_lower((unsigned char)s[i]);
    tmp[len] = '\0';
    if (inet_pton(AF_INET6, tmp, &a6) != 1)
        return fail(out, why, LV_EINVAL, "the host is not a valid IPv6 address");
    memcpy(out->host, tmp, len + 1);
    out->host_is_ipv6 = 1;
    return 0;
}

/* "host[:port]" [s, s+len); later_at says an '@' follows in the path, the sign of a password
 * holding a raw '/', '?' or '#'. */
static int parse_hostport(const char *s, size_t len, int later_at, lv_camera_def_t *out,
                          const char **why)
{
    const char *port = NULL;
    size_t port_len = 0;
    int rc;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return fail(out, why, LV_EINVAL, "the IPv6 address has no closing ']'");
        rc = parse_ipv6(s + 1, (size_t)(close - s - 1), out, why);
        if (rc)
            return rc;
        size_t rest = len - (size_t)(close - s) - 1;
        if (rest > 0) {
            if (close[1] != ':')
                return fail(out, why, LV_EINVAL, "only ':' and a port may follow an IPv6 address");
            port = close + 2;
            port_len = rest - 1;
        }
    } else {
        const char *colon = memchr(s, ':', len);
        size_t host_len = colon ? (size_t)(colon - s) : len;
        if (colon && memchr(colon + 1, ':', len - host_len - 1))
            return fail(out, why, LV_EINVAL,
                        later_at ? "the host part has two ':' (a '/', '?' or '#' in the password "
                                   "must be percent-encoded: %2F %3F %23)"
                                 : "the host part has two ':' (IPv6 addresses go in brackets)");
        rc = parse_reg_name(s, host_len, out, why);
        if (rc)
            return rc;
        if (colon) {
            port = colon + 1;
            port_len = len - host_len - 1;
        }
    }
    out->port = out->tls ? LV_RTSPS_DEFAULT_PORT : LV_RTSP_DEFAULT_PORT;
    if (!port)
        return 0;
    if (port_len == 0)
        return fail(out, why, LV_EINVAL, "the port after ':' is empty");
    unsigned long v = 0;
    for (size_t i = 0; i < port_len; i++) {
        if (!is_digit((unsigned char)port[i]))
            return fail(out, why, LV_EINVAL,
                        later_at ? "the port is not a number (a '/', '?' or '#' in the password "
                                   "must be percent-encoded: %2F %3F %23)"
                                 : "the port is not a number");
        if (i >= 5)
            return fail(out, why, LV_EINVAL, "the port must be 1..65535");
        v = v * 10 + (unsigned long)(port[i] - '0');
    }
    if (v == 0 || v > 65535)
        return fail(out, why, LV_EINVAL, "the port must be 1..65535");
    out->port = (uint16_t)v;
    return 0;
}

/* Path and query [s, s+len) as written, "/" when empty. */
static int parse_path(const char *s, size_t len, lv_camera_def_t *out, const char **why)
{
    size_t o = 0;
    if (len == 0 || s[0] != '/')
        out->path[o++] = '/'; /* "rtsp://h" or "rtsp://h?q" */
    if (o + len > LV_RTSPURL_PATH_MAX)
        return fail(out, why, LV_ELIMIT, "the path is longer than 1024 bytes");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '#')
            return fail(out, why, LV_EINVAL, "a fragment ('#') has no meaning in a camera URL "
                                             "(write '#' in a password as %23)");
        if (c == '%') {
            if (i + 2 >= len || lv_hex_digit((unsigned char)s[i + 1]) < 0 ||
                lv_hex_digit((unsigned char)s[i + 2]) < 0)
                return fail(out, why, LV_EINVAL, "a '%' in the path is not followed by two hex digits");
        } else if (!is_path_char(c)) {
            return fail(out, why, LV_EINVAL,
                        "the path has a character that must be percent-encoded");
        }
        out->path[o++] = (char)c;
    }
    out->path[o] = '\0';
    return 0;
}

/* Whether the query parameter name [s, s+len), percent-decoded, names a credential (any case). */
static int secret_name(const char *s, size_t len)
{
    static const char *const names[] = {"user", "username", "password", "pass", "pwd",
                                        "passwd", "token", "auth", "key"};
    char dec[16];
    if (decode_part(s, len, dec, sizeof(dec)) < 0)
        return 0; /* longer than any of them, or not text */
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcasecmp(dec, names[i]) == 0)
            return 1;
    return 0;
}

static int append(char *out, size_t cap, size_t *o, const char *s, size_t len)
{
    if (*o + len + 1 > cap)
        return 0;
    memcpy(out + *o, s, len);
    *o += len;
    out[*o] = '\0';
    return 1;
}

/* The query of out->path, split at '&': the values of secret parameters are noted for the
 * scrubber (qsecret_raw, qsecret) and written "***" in masked (path and query, cap bytes). */
static int parse_query(lv_camera_def_t *out, char *masked, size_t cap, const char **why)
{
    const char *q = strchr(out->path, '?');
    size_t o = 0, raw_o = 0, dec_o = 0;
    masked[0] = '\0';
    if (!append(masked, cap, &o, out->path, q ? (size_t)(q - out->path) + 1 : strlen(out->path)))
        return fail(out, why, LV_ELIMIT, "the path is longer than 1024 bytes");
    for (const char *p = q ? q + 1 : NULL; p;) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t nlen = eq ? (size_t)(eq - p) : plen;
        int ok;
        if (eq && secret_name(p, nlen)) {
            const char *v = eq + 1;
            size_t vlen = plen - nlen - 1;
            ok = append(masked, cap, &o, p, nlen + 1) && append(masked, cap, &o, "***", 3);
            if (ok && vlen) {
                /* each value takes its bytes and a NUL, fewer than its "name=" before it: both
                 * lists fit in a path's room (checked all the same) */
                if (raw_o + vlen + 1 > sizeof(out->qsecret_raw))
                    return fail(out, why, LV_ELIMIT, "the query has too many secret values");
                int d = decode_part(v, vlen, out->qsecret + dec_o, sizeof(out->qsecret) - dec_o);
                if (d < 0)
                    return fail(out, why, LV_EINVAL,
                                "a credential in the query (user, password, token...) has a "
                                "control byte once decoded");
                memcpy(out->qsecret_raw + raw_o, v, vlen);
                raw_o += vlen;
                out->qsecret_raw[raw_o++] = '\0';
                dec_o += (size_t)d + 1;
                out->n_qsecrets++;
            }
        } else {
            ok = append(masked, cap, &o, p, plen);
        }
        if (ok && amp)
            ok = append(masked, cap, &o, "&", 1);
        if (!ok)
            return fail(out, why, LV_ELIMIT,
                        "the path is longer than 1024 bytes once its credentials read ***");
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

int lv_rtspurl_parse(const char *url, size_t len, lv_camera_def_t *out, const char **why)
{
    if (!out) {
        if (why)
            *why = "no place for the result";
        return LV_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    if (!url || len == 0)
        return fail(out, why, LV_EINVAL, "the camera URL is empty");
    if (len > LV_CAMERA_DEF_MAX)
        return fail(out, why, LV_ELIMIT, "the camera URL is longer than 2048 bytes");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c == ' ')
            return fail(out, why, LV_EINVAL, "the camera URL has a space (write it as %20)");
        if (c < 0x20 || c == 0x7f)
            return fail(out, why, LV_EINVAL, "the camera URL has a control byte");
        if (c >= 0x80)
            return fail(out, why, LV_EINVAL,
                        "the camera URL has a non-ASCII byte (percent-encode it)");
    }

    /* scheme "://" */
    const char *sep = memmem(url, len, "://", 3);
    size_t slen = sep ? (size_t)(sep - url) : 0;
    int scheme_ok = slen > 0 && is_alpha((unsigned char)url[0]);
    for (size_t i = 1; scheme_ok && i < slen; i++) {
        unsigned char c = (unsigned char)url[i];
        scheme_ok = is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
    }
    if (!scheme_ok) {
        if (len >= 5 && strncasecmp(url, "rtsp:", 5) == 0)
            return fail(out, why, LV_EINVAL, "write rtsp://host/path (\"//\" after \"rtsp:\")");
        return fail(out, why, LV_EINVAL, "the camera URL has no scheme (write rtsp://host/path)");
    }
    if (slen == 4 && strncasecmp(url, "rtsp", 4) == 0)
        out->tls = 0;
    else if (slen == 5 && strncasecmp(url, "rtsps", 5) == 0)
        out->tls = 1;
    else
        return fail(out, why, LV_EINVAL,
                    "only rtsp:// and rtsps:// camera URLs are allowed (not file://, http:// or "
                    "any other scheme)");

    /* authority: up to the first '/', '?' or '#'; userinfo up to its LAST '@' */
    const char *auth = sep + 3, *end = url + len;
    const char *auth_end = auth;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
        auth_end++;
    const char *at = NULL;
    for (const char *p = auth; p < auth_end; p++)
        if (*p == '@')
            at = p;
    int rc;
    const char *host = auth;
    if (at) {
        rc = parse_userinfo(auth, (size_t)(at - auth), out, why);
        if (rc)
            return rc;
        host = at + 1;
    }
    int later_at = memchr(auth_end, '@', (size_t)(end - auth_end)) != NULL;
    rc = parse_hostport(host, (size_t)(auth_end - host), later_at, out, why);
    if (rc)
        return rc;
    rc = parse_path(auth_end, (size_t)(end - auth_end), out, why);
    if (rc)
        return rc;
    char masked[LV_RTSPURL_PATH_MAX + 1];
    rc = parse_query(out, masked, sizeof(masked), why);
    if (rc)
        return rc;

    int n = snprintf(out->url_clean, sizeof(out->url_clean), "%s://%s%s%s:%u%s",
                     out->tls ? "rtsps" : "rtsp", out->host_is_ipv6 ? "[" : "", out->host,
                     out->host_is_ipv6 ? "]" : "", (unsigned)out->port, masked);
    int m = snprintf(out->url_rtsp, sizeof(out->url_rtsp), "%s://%s%s%s:%u%s",
                     out->tls ? "rtsps" : "rtsp", out->host_is_ipv6 ? "[" : "", out->host,
                     out->host_is_ipv6 ? "]" : "", (unsigned)out->port, out->path);
    explicit_bzero(masked, sizeof(masked));
    /* cannot happen with the caps above */
    if (n < 0 || (size_t)n >= sizeof(out->url_clean) || m < 0 || (size_t)m >= sizeof(out->url_rtsp))
        return fail(out, why, LV_ELIMIT, "the camera URL is too long");
    return 0;
}

int lv_camera_def_parse_n(const char *text, size_t len, lv_camera_def_t *out, const char **why)
{
    if (!out) {
        if (why)
            *why = "no place for the result";
        return LV_EINVAL;
    }
    if (!text || len == 0) {
        memset(out, 0, sizeof(*out));
        return fail(out, why, LV_EINVAL, "a camera is defined as ID=rtsp://host/path");
    }
    if (len > LV_CAMERA_DEF_MAX) {
        memset(out, 0, sizeof(*out));
        return fail(out, why, LV_ELIMIT, "the camera definition is longer than 2048 bytes");
    }
    const char *eq = memchr(text, '=', len);
    if (!eq) {
        memset(out, 0, sizeof(*out));
        return fail(out, why, LV_EINVAL, "a camera is defined as ID=rtsp://host/path (no '=')");
    }
    size_t id_len = (size_t)(eq - text);
    if (!lv_camera_id_valid(text, id_len)) {
        memset(out, 0, sizeof(*out));
        if (id_len == 0)
            return fail(out, why, LV_EINVAL, "the camera ID before '=' is empty");
        if (id_len > LV_CAMERA_ID_MAX)
            return fail(out, why, LV_ELIMIT, "the camera ID is longer than 32 characters");
        return fail(out, why, LV_EINVAL,
                    "the camera ID may hold only lowercase letters, digits, '_' and '-'");
    }
    int rc = lv_rtspurl_parse(eq + 1, len - id_len - 1, out, why);
    if (rc)
        return rc;
    memcpy(out->id, text, id_len);
    out->id[id_len] = '\0';
    return 0;
}

int lv_camera_def_parse(const char *text, lv_camera_def_t *out, const char **why)
{
    /* one byte past the cap is enough to know the cap was passed */
    size_t len = text ? strnlen(text, LV_CAMERA_DEF_MAX + 1) : 0;
    return lv_camera_def_parse_n(text, len, out, why);
}

void lv_camera_def_wipe(lv_camera_def_t *def)
{
    if (def)
        explicit_bzero(def, sizeof(*def));
}

/* ---- scrubbing ---- */

#define NO_TAIL ((size_t)-1)

/* How many bytes at t[0..n) spell s[0..slen), each byte of s written raw or as %HH (either hex
 * case). 0 when they do not. When t ends after at least min_tail bytes of s matched, all of the
 * n bytes (a secret cut short by whoever truncated the text). */
static size_t spell_flexible(const char *t, size_t n, const char *s, size_t slen, size_t min_tail)
{
    size_t i = 0, j = 0;
    while (j < slen) {
        if (i >= n)
            return (min_tail != NO_TAIL && j >= min_tail) ? n : 0;
        unsigned char want = (unsigned char)s[j];
        if (t[i] == '%' && i + 2 < n) {
            int hi = lv_hex_digit((unsigned char)t[i + 1]), lo = lv_hex_digit((unsigned char)t[i + 2]);
            if (hi >= 0 && lo >= 0 && (unsigned char)(hi * 16 + lo) == want) {
                i += 3;
                j++;
                continue;
            }
        }
        if ((unsigned char)t[i] != want)
            return 0;
        i++;
        j++;
    }
    return i;
}

/* The same, byte for byte only (a decoded secret holding "%25" written literally in the text). */
static size_t spell_exact(const char *t, size_t n, const char *s, size_t slen, size_t min_tail)
{
    if (n >= slen)
        return memcmp(t, s, slen) == 0 ? slen : 0;
    if (min_tail != NO_TAIL && n >= min_tail && memcmp(t, s, n) == 0)
        return n;
    return 0;
}

static size_t spell(const char *t, size_t n, const char *s, size_t slen, size_t min_tail)
{
    size_t a = spell_flexible(t, n, s, slen, min_tail);
    size_t b = spell_exact(t, n, s, slen, min_tail);
    return LV_MAX(a, b);
}

/* "user:pass@" (or "user@") at t, in any mix of raw and encoded bytes: its length, or 0. */
static size_t match_userinfo(const char *t, size_t n, const lv_camera_def_t *d, int after_slashes)
{
    size_t plen = strlen(d->password);
    size_t rlen = strlen(d->userinfo_raw);
    if (!plen && !after_slashes)
        return 0; /* "admin@" alone is too common a word to cut out of any text */
    if (rlen && n > rlen && memcmp(t, d->userinfo_raw, rlen) == 0 && t[rlen] == '@')
        return rlen + 1;
    size_t i = spell(t, n, d->user, strlen(d->user), NO_TAIL);
    if (!i)
        return 0;
    if (memchr(d->userinfo_raw, ':', rlen)) {
        size_t k = spell(t + i, n - i, ":", 1, NO_TAIL);
        if (!k)
            return 0;
        i += k;
        if (plen) {
            k = spell(t + i, n - i, d->password, plen, NO_TAIL);
            if (!k)
                return 0;
            i += k;
        }
    }
    size_t k = spell(t + i, n - i, "@", 1, NO_TAIL);
    return k ? i + k : 0;
}

/* The password as written in the URL (percent-encoded as the admin wrote it). */
static size_t raw_password(const lv_camera_def_t *d, const char **p)
{
    const char *colon = strchr(d->userinfo_raw, ':');
    if (!colon) {
        *p = "";
        return 0;
    }
    *p = colon + 1;
    return strlen(colon + 1);
}

static int put(char *out, size_t cap, size_t *o, const char *s, size_t len)
{
    if (*o + len + 1 > cap)
        return 0;
    memcpy(out + *o, s, len);
    *o += len;
    return 1;
}

/* Drop an incomplete UTF-8 sequence at the end of out[0..*o) (a cut must not split one). */
static void trim_utf8_tail(const char *out, size_t *o)
{
    size_t back = 0;
    while (back < 4 && back < *o && ((unsigned char)out[*o - 1 - back] & 0xC0) == 0x80)
        back++;
    if (back >= *o)
        return;
    unsigned char lead = (unsigned char)out[*o - 1 - back];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > 1 && back + 1 < need)
        *o -= back + 1;
}

/* Mask the password again in out[0..*o), in place: deleting a userinfo brings the bytes on its two
 * sides together ("s" + "ecret" around "user:pw@"), and they may spell the password. Each match of
 * k bytes becomes min(k, 3) stars, never longer than what it replaces, so the write position
 * stays behind the read position; the stars hold no byte of a '*'-free password, so no new match
 * forms across them. */
static void mask_again(char *out, size_t *o, const char *pw, size_t plen, const char *rawp,
                       size_t rawp_len)
{
    size_t w = 0;
    for (size_t r = 0; r < *o;) {
        size_t k = spell(out + r, *o - r, pw, plen, 3);
        k = LV_MAX(k, spell_exact(out + r, *o - r, rawp, rawp_len, 3));
        if (k) {
            size_t stars = LV_MIN(k, (size_t)3);
            memset(out + w, '*', stars);
            w += stars;
            r += k;
            continue;
        }
        out[w++] = out[r++];
    }
    *o = w;
}

/* How many bytes at t[0..n) spell one of the secret query values (decoded or as written, or cut
 * short after 3 bytes); 0 when none does. */
static size_t match_qsecret(const char *t, size_t n, const lv_camera_def_t *d)
{
    size_t best = 0;
    const char *raw = d->qsecret_raw, *dec = d->qsecret;
    for (int i = 0; i < d->n_qsecrets; i++) {
        size_t rlen = strlen(raw), dlen = strlen(dec);
        best = LV_MAX(best, spell(t, n, dec, dlen, 3));
        best = LV_MAX(best, spell_exact(t, n, raw, rlen, 3));
        raw += rlen + 1;
        dec += dlen + 1;
    }
    return best;
}

/* mask_again for each secret query value. */
static void mask_qsecrets_again(char *out, size_t *o, const lv_camera_def_t *d)
{
    const char *raw = d->qsecret_raw, *dec = d->qsecret;
    for (int i = 0; i < d->n_qsecrets; i++) {
        size_t rlen = strlen(raw), dlen = strlen(dec);
        mask_again(out, o, dec, dlen, raw, rlen);
        raw += rlen + 1;
        dec += dlen + 1;
    }
}

int lv_rtspurl_scrub(const char *text, const lv_camera_def_t *def, char *out, size_t cap)
{
    if (!out || cap == 0)
        return LV_EINVAL;
    out[0] = '\0';
    if (!def)
        return LV_EINVAL;
    if (!text)
        text = "";
    size_t n = strlen(text);
    size_t plen = strlen(def->password);
    const char *rawp;
    size_t rawp_len = raw_password(def, &rawp);
    size_t min_tail = 3;
    size_t o = 0;
    int rc = 0;
    for (size_t i = 0; i < n;) {
        const char *t = text + i;
        size_t left = n - i;
        size_t k = 0;
        if (def->has_userinfo)
            k = match_userinfo(t, left, def, i >= 2 && t[-1] == '/' && t[-2] == '/');
        if (k) {
            i += k;
            continue;
        }
        if (plen) {
            k = spell(t, left, def->password, plen, min_tail);
            k = LV_MAX(k, spell_exact(t, left, rawp, rawp_len, min_tail));
        }
        if (def->n_qsecrets > 0)
            k = LV_MAX(k, match_qsecret(t, left, def));
        if (k) {
            if (!put(out, cap, &o, "***", 3)) {
                rc = LV_ELIMIT;
                break;
            }
            i += k;
            continue;
        }
        if (!put(out, cap, &o, t, 1)) {
            rc = LV_ELIMIT;
            break;
        }
        i++;
    }
    if (plen)
        mask_again(out, &o, def->password, plen, rawp, rawp_len);
    mask_qsecrets_again(out, &o, def);
    if (rc == LV_ELIMIT)
        trim_utf8_tail(out, &o);
    out[o] = '\0';
    return rc;
}
