/* lv_redisurl.c - the Redis URL parser and its printable form (see lv_redisurl.h). */
#include "lv_redisurl.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lv_common.h"

/* Percent-decode [p, p+n) into out (cap size, NUL included). No NUL or control bytes result. */
static int pct_decode(const char *p, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '%') {
            if (i + 2 >= n)
                return LV_EINVAL;
            int hi = lv_hex_digit((unsigned char)p[i + 1]), lo = lv_hex_digit((unsigned char)p[i + 2]);
            if (hi < 0 || lo < 0)
                return LV_EINVAL;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f)
            return LV_EINVAL;
        if (o + 1 >= size)
            return LV_ELIMIT;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int parse_uint(const char *p, size_t n, long max, long *out)
{
    if (n == 0 || n > 6)
        return LV_EINVAL;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return LV_EINVAL;
        v = v * 10 + (p[i] - '0');
    }
    if (v > max)
        return LV_EINVAL;
    *out = v;
    return 0;
}

/* A host name or IPv4 address as hiredis hands it to getaddrinfo: letters, digits, '.', '-', '_'. */
static bool host_name_ok(const char *h)
{
    for (; *h; h++) {
        unsigned char c = (unsigned char)*h;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == '_'))
            return false;
    }
    return true;
}

/* The inside of [...]: an IPv6 address (no zone id: hiredis 0.14 could not use one). */
static bool host_v6_ok(const char *h)
{
    unsigned char a[16];
    return inet_pton(AF_INET6, h, a) == 1;
}

static int parse(const char *url, lv_redisurl_t *out, const char **why)
{
    size_t len = url ? strnlen(url, LV_REDISURL_MAX + 1) : 0;
    if (len == 0) {
        *why = "the Redis URL is empty (expected redis://host:port or unix:///path.sock)";
        return LV_EINVAL;
    }
    if (len > LV_REDISURL_MAX) {
        *why = "the Redis URL is longer than 1024 bytes";
        return LV_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f) {
            *why = "the Redis URL holds a space, a control byte or a non-ASCII byte (percent-encode them)";
            return LV_EINVAL;
        }
    }
    if (strchr(url, '#')) {
        *why = "the Redis URL has a fragment (#...): remove it";
        return LV_EINVAL;
    }
    if (strncasecmp(url, "rediss://", 9) == 0) {
        *why = "rediss:// (TLS) is not supported by this build's hiredis: use redis:// on a trusted network, "
               "a Unix socket, or a TLS tunnel (stunnel) to Redis";
        return LV_EINVAL;
    }
    if (strncasecmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        if (path[0] != '/') {
            *why = "unix:// needs an absolute socket path: unix:///run/redis/redis.sock";
            return LV_EINVAL;
        }
        const char *q = strchr(path, '?');
        size_t plen = q ? (size_t)(q - path) : strlen(path);
        if (pct_decode(path, plen, out->path, sizeof(out->path)) != 0) {
            *why = "the Unix socket path is too long (107 bytes at most) or badly percent-encoded";
            return LV_EINVAL;
        }
        if (q) {
            long db;
            if (strncmp(q, "?db=", 4) != 0 || parse_uint(q + 4, strlen(q + 4), 15, &db) != 0) {
                *why = "unix:// takes only ?db=N (N 0..15) after the path";
                return LV_EINVAL;
            }
            out->db = (int)db;
        }
        out->is_unix = true;
        return 0;
    }
    if (strncasecmp(url, "redis://", 8) != 0) {
        *why = "the Redis URL must start with redis:// or unix:// (e.g. redis://127.0.0.1:6379/0)";
        return LV_EINVAL;
    }
    const char *p = url + 8;
    /* RFC 3986: '/', '?' and '#' end the authority, so in a password they must be encoded; say so
     * rather than complain about the host or the query they seem to start */
    const char *delim = p + strcspn(p, "/?#");
    if (*delim && strchr(delim, '@')) {
        *why = "the Redis URL's user or password holds '/', '?' or '#': percent-encode them (%2F, %3F, %23)";
        return LV_EINVAL;
    }
    if (strchr(p, '?')) {
        *why = "redis:// URLs take no query (?...): put the database after a slash (redis://host:6379/2)";
        return LV_EINVAL;
    }
    const char *slash = strchr(p, '/');
    const char *auth_end = NULL;
    const char *end = slash ? slash : p + strlen(p);
    for (const char *c = p; c < end; c++)
        if (*c == '@')
            auth_end = c;
    if (auth_end) {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        if (!colon) {
            *why = "the Redis URL's credentials must be user:password@ or :password@";
            return LV_EINVAL;
        }
        if (pct_decode(p, (size_t)(colon - p), out->user, sizeof(out->user)) != 0 ||
            pct_decode(colon + 1, (size_t)(auth_end - colon - 1), out->password, sizeof(out->password)) != 0) {
            *why = "the Redis URL's user or password is too long or badly percent-encoded";
            return LV_EINVAL;
        }
        if (out->user[0] && !out->password[0]) {
            *why = "the Redis URL names a user without a password (user:password@)";
            return LV_EINVAL;
        }
        p = auth_end + 1;
    }
    const char *hend;
    const char *port_at = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) {
            *why = "an IPv6 host needs its closing bracket: redis://[::1]:6379";
            return LV_EINVAL;
        }
        if ((size_t)(rb - p - 1) > LV_REDISURL_HOST_MAX || rb == p + 1) {
            *why = "the Redis host is empty or too long";
            return LV_EINVAL;
        }
        memcpy(out->host, p + 1, (size_t)(rb - p - 1));
        if (!host_v6_ok(out->host)) {
            *why = "the Redis host in brackets is not an IPv6 address";
            return LV_EINVAL;
        }
        hend = rb + 1;
        if (hend < end && *hend != ':') {
            *why = "after an IPv6 host only :port may follow";
            return LV_EINVAL;
        }
        if (hend < end)
            port_at = hend + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1))) {
            *why = "an IPv6 host needs brackets: redis://[::1]:6379";
            return LV_EINVAL;
        }
        hend = colon ? colon : end;
        if (hend == p || (size_t)(hend - p) > LV_REDISURL_HOST_MAX) {
            *why = "the Redis host is empty or too long (redis://HOST:PORT)";
            return LV_EINVAL;
        }
        memcpy(out->host, p, (size_t)(hend - p));
        if (colon)
            port_at = colon + 1;
        if (!host_name_ok(out->host)) {
            *why = "the Redis host has bytes a host name or address cannot have";
            return LV_EINVAL;
        }
    }
    out->port = 6379;
    if (port_at) {
        long port;
        if (parse_uint(port_at, (size_t)(end - port_at), 65535, &port) != 0 || port == 0) {
            *why = "the Redis port must be a number in 1..65535";
            return LV_EINVAL;
        }
        out->port = (int)port;
    }
    if (slash && slash[1]) {
        long db;
        if (parse_uint(slash + 1, strlen(slash + 1), 15, &db) != 0) {
            *why = "the Redis database after the slash must be a number in 0..15";
            return LV_EINVAL;
        }
        out->db = (int)db;
    }
    return 0;
}

int lv_redisurl_parse(const char *url, lv_redisurl_t *out, const char **why)
{
    const char *dummy = NULL;
    if (!why)
        why = &dummy;
    *why = NULL;
    memset(out, 0, sizeof(*out));
    int rc = parse(url, out, why);
    if (rc != 0) {
        /* a refused URL leaves nothing behind, above all not a password decoded before the error */
        memset(out, 0, sizeof(*out));
        if (!*why)
            *why = "the Redis URL cannot be parsed";
        return LV_EINVAL;
    }
    return 0;
}

void lv_redisurl_clean(const lv_redisurl_t *u, char *out, size_t size)
{
    if (!size)
        return;
    if (u->is_unix) {
        snprintf(out, size, "unix://%s%s", u->path, u->db ? "?db=" : "");
        if (u->db) {
            size_t n = strlen(out);
            snprintf(out + n, size - n, "%d", u->db);
        }
        return;
    }
    bool v6 = strchr(u->host, ':') != NULL;
    snprintf(out, size, "redis://%s%s%s%s%s:%d/%d", u->user, u->password[0] ? ":***@" : (u->user[0] ? "@" : ""),
             v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->db);
}
