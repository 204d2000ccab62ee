/* lv_rtspurl.h - admin camera definitions "ID=rtsp://[user:pass@]host[:port]/path?query" parsed
 * into their parts, and the scrubbing of RTSP credentials out of arbitrary (error) text.
 * Pure: no I/O, no allocation, no locale. The definition comes from the admin (command line,
 * config file), but the scrubber reads text that a camera and GStreamer choose, so both have a
 * fuzz driver (tests/fuzz/fuzz_rtspurl.c).
 *
 * Credentials never leave through this module: url_clean is the URL without userinfo and with the
 * values of secret query parameters (below) shown as "***" (what anyone may see); url_rtsp is the
 * same with those values as written (what goes to rtspsrc's `location`, never shown); user and
 * password stay in their own fields (for rtspsrc's user-id / user-pw) and lv_rtspurl_scrub()
 * removes all of them from any text shown.
 *
 * Secret query parameters: some cameras take their credentials in the query
 * ("/stream?user=x&password=y"). A parameter whose name (percent-decoded, any case) is user,
 * username, password, pass, pwd, passwd, token, auth or key has a secret value. */
#ifndef LV_RTSPURL_H
#define LV_RTSPURL_H

#include <stddef.h>
#include <stdint.h>

/* Caps, in bytes, without the terminating NUL. Longer input is refused (LV_ELIMIT), never cut. */
#define LV_CAMERA_ID_MAX 32        /* 1..32 of [a-z0-9_-] */
#define LV_CAMERA_DEF_MAX 2048     /* a whole "ID=URL" definition */
#define LV_RTSPURL_USER_MAX 128    /* user name, after percent-decoding */
#define LV_RTSPURL_PASS_MAX 128    /* password, after percent-decoding */
#define LV_RTSPURL_USERINFO_MAX 512 /* "user:pass" as written (percent-encoded) */
#define LV_RTSPURL_HOST_MAX 253    /* a DNS name's limit; IPv6 literals are far shorter */
#define LV_RTSPURL_PATH_MAX 1024   /* path and query together, as written */
/* "rtsps://" + "[" host "]" + ":65535" + path */
#define LV_RTSPURL_CLEAN_MAX (8 + 2 + LV_RTSPURL_HOST_MAX + 6 + LV_RTSPURL_PATH_MAX)

#define LV_RTSP_DEFAULT_PORT 554   /* RFC 2326 */
#define LV_RTSPS_DEFAULT_PORT 322  /* RFC 7826 */

/** One admin-defined camera. Plain value: no pointers inside, copy it freely; it holds the
 * password, so whoever keeps one calls lv_camera_def_wipe() before it is freed or reused. */
typedef struct {
    char id[LV_CAMERA_ID_MAX + 1];
    int tls;                      /* 1 for rtsps://, 0 for rtsp:// */
    int has_userinfo;             /* 1 when the URL carried "user[:pass]@" */
    char user[LV_RTSPURL_USER_MAX + 1];     /* percent-decoded; "" when none. Secret-ish. */
    char password[LV_RTSPURL_PASS_MAX + 1]; /* percent-decoded; "" when none. SECRET. */
    /* Host as it goes into a URL: a lowercased DNS name, a dotted IPv4 address, or an IPv6
     * address WITHOUT brackets (host_is_ipv6 says to add them). */
    char host[LV_RTSPURL_HOST_MAX + 1];
    int host_is_ipv6;
    uint16_t port;                /* 1..65535; 554 (rtsp) or 322 (rtsps) when not written */
    /* path and query as written, always starting with '/'. SECRET when n_qsecrets > 0. */
    char path[LV_RTSPURL_PATH_MAX + 1];
    /* "rtsp://host:port/path?query": scheme lowercased, port always written, no userinfo, every
     * secret query value written "***". The only form of the URL that may be logged or shown. */
    char url_clean[LV_RTSPURL_CLEAN_MAX + 1];
    /* The same with the secret query values as written: for rtspsrc `location` only. SECRET. */
    char url_rtsp[LV_RTSPURL_CLEAN_MAX + 1];
    /* The secret query values, each followed by a NUL (empty ones left out), as written and
     * percent-decoded, n_qsecrets of each, in the order of the query; for the scrubber. SECRET. */
    char qsecret_raw[LV_RTSPURL_PATH_MAX + 1];
    char qsecret[LV_RTSPURL_PATH_MAX + 1];
    int n_qsecrets;
    /* The userinfo exactly as written ("user:p%40ss"), kept for the scrubber only. SECRET. */
    char userinfo_raw[LV_RTSPURL_USERINFO_MAX + 1];
} lv_camera_def_t;

/** Whether id[0..len) is a valid camera ID: 1..LV_CAMERA_ID_MAX bytes of [a-z0-9_-]. For the
 * "camera:<id>" session source and the /api/v1/cameras/{id} routes as well as definitions. */
int lv_camera_id_valid(const char *id, size_t len);

/** Parse a definition "ID=URL" (NUL-terminated; split at the first '=') into *out.
 * URL rules (RFC 3986 syntax, RTSP schemes only):
 *   - scheme rtsp or rtsps (any case); file://, http://, rtspt://, no scheme... are refused;
 *   - userinfo optional; the authority ends at the first '/', '?' or '#' after "//", and the LAST
 *     '@' before that separates userinfo from host, so '@' in a password may be written raw but
 *     '/', '?' and '#' must be percent-encoded (%2F %3F %23); user and password are split at the
 *     first ':' and percent-decoded; a decoded control byte (NUL included) is refused;
 *   - host: a DNS name (letters, digits, '-', '_', '.'; labels 1..63 bytes; lowercased), a dotted
 *     IPv4 address (all-digit names must be one), or "[IPv6]" (no zone ID);
 *   - port 1..65535 when written (an empty port after ':' is refused), else the scheme's default;
 *   - path and query as written (RFC 3986 pchar / query characters, '%' followed by two hex
 *     digits); an empty path reads as "/"; a fragment ('#') is refused; the query splits at '&'
 *     into name[=value]; a secret value (see above) that decodes to a control byte is refused;
 *   - no spaces, no control or non-ASCII bytes anywhere (percent-encode them).
 * Returns 0 with *out filled; on failure LV_EINVAL (malformed), LV_ELIMIT (a cap above), with
 * *why set to a static English sentence that never quotes the input (it may hold a password)
 * and *out wiped. why may be NULL. */
int lv_camera_def_parse(const char *text, lv_camera_def_t *out, const char **why);

/** The same for a definition of exactly len bytes (no NUL needed; a NUL byte inside is refused). */
int lv_camera_def_parse_n(const char *text, size_t len, lv_camera_def_t *out, const char **why);

/** Parse only a URL (no "ID=" part) into *out, leaving out->id empty. Same rules and results. */
int lv_rtspurl_parse(const char *url, size_t len, lv_camera_def_t *out, const char **why);

/** Copy text into out[0..cap) with the camera's credentials removed:
 *   - the userinfo "user:pass@" (or "user@" right after "//") is deleted, so a URL in the text
 *     reads like url_clean;
 *   - every occurrence of a secret query value is replaced by "***", as the password is below;
 *   - every other occurrence of the password is replaced by "***" (and once more in the result,
 *     where a deleted userinfo brought its neighbours together: those become as many stars as
 *     they had bytes, at most 3).
 * Both are matched whether each byte is written raw or percent-encoded (either hex case), so the
 * decoded, the as-written and a re-encoded form are all caught. A text that ends in the middle of
 * the password (with 3 bytes or more of it) has that tail masked too. An empty password is not
 * searched for (a password of one byte masks every such byte: the price of never showing it; a
 * password holding '*' may be spelled again by a "***" beside the text around it, which shows
 * nothing the text did not). text NULL reads as "".
 * out is always NUL-terminated; a cut never splits a "***" or a UTF-8 sequence.
 * Returns 0; LV_ELIMIT when the result was cut to fit cap; LV_EINVAL when def or out is NULL or
 * cap is 0 (out, when usable, then holds ""). */
int lv_rtspurl_scrub(const char *text, const lv_camera_def_t *def, char *out, size_t cap);

/** Overwrite the secrets (and the rest) of *def with zeros in a way the compiler keeps. */
void lv_camera_def_wipe(lv_camera_def_t *def);

#endif
