/* lv_redisurl.h - the address of the cluster's Redis, as an operator writes it on the command line
 * (`--redis URL`, "redis" in the config file). Pure: parsing and a printable form, no I/O, fuzzed
 * (tests/fuzz/fuzz_redisurl.c).
 *
 * Accepted forms (RFC 3986 userinfo, percent-decoded; schemes in any case):
 *   redis://[[user]:password@]host[:port][/db]      host: a name, IPv4, or [IPv6]; port 6379
 *   unix:///path/to/redis.sock[?db=N]               a Unix socket (password via LIVEVLM_REDIS_PASSWORD)
 * rediss:// (TLS) is refused with a sentence: hiredis 0.14 has no TLS. Anything else (other
 * schemes, a user without a password, an unencoded '/', '?' or '#' in the userinfo, an IPv6 host
 * without brackets or one that is not an address, a query on redis://, a fragment, an empty
 * host, port 0 or > 65535, db > 15, a field over its cap, control bytes) is refused; `why` says which part, in a sentence for the operator. */
#ifndef LV_REDISURL_H
#define LV_REDISURL_H

#include <stdbool.h>
#include <stddef.h>

#define LV_REDISURL_MAX 1024        /* the whole URL */
#define LV_REDISURL_HOST_MAX 255
#define LV_REDISURL_PATH_MAX 107    /* sun_path */
#define LV_REDISURL_USER_MAX 128
#define LV_REDISURL_PASS_MAX 256

typedef struct {
    bool is_unix;
    char host[LV_REDISURL_HOST_MAX + 1];   /* without brackets; "" for unix */
    int port;                               /* 6379 unless given; 0 for unix */
    char path[LV_REDISURL_PATH_MAX + 1];    /* unix only */
    char user[LV_REDISURL_USER_MAX + 1];    /* "" = none (AUTH password alone) */
    char password[LV_REDISURL_PASS_MAX + 1]; /* "" = no AUTH */
    int db;                                 /* SELECT n when > 0 */
} lv_redisurl_t;

/** Parse url into out. 0, or LV_EINVAL with why (a static sentence) set. */
int lv_redisurl_parse(const char *url, lv_redisurl_t *out, const char **why);
/** The URL without its password ("redis://user:***@host:port/db"), for logs, metrics and errors.
 * Always NUL-terminates (cut to size). */
void lv_redisurl_clean(const lv_redisurl_t *u, char *out, size_t size);

#endif
