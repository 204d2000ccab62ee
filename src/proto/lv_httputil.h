/* lv_httputil.h - small pure helpers for the HTTP layer: reading the auth cookie, query
 * parameters, the Bearer token, the WebSocket Origin check (docs/protocol.md "Authentication"),
 * and the client address behind a trusted reverse proxy (X-Forwarded-For).
 * No I/O, no allocation; every output goes into a caller-sized buffer. */
#ifndef LV_HTTPUTIL_H
#define LV_HTTPUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "lv_common.h"

/* The RFC 9110 token rules both HTTP parsers use (lv_http1.c for requests, lv_h1resp.c for
 * responses) and the header helpers here. */

/** tchar (RFC 9110 section 5.6.2): "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 * "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. */
static inline bool lv_http_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/** OWS (RFC 9110 section 5.6.3): SP or HTAB. */
static inline bool lv_http_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/** Case-insensitive (ASCII) equality of p[0..len) and the NUL-terminated lit. */
static inline bool lv_http_ieq(const char *p, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    if (n != len)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)p[i], b = (unsigned char)lit[i];
        if ((a >= 'A' && a <= 'Z' ? a + 32 : a) != (b >= 'A' && b <= 'Z' ? b + 32 : b))
            return false;
    }
    return true;
}

/** Find cookie `name` in a Cookie request header ("a=1; b=2", RFC 6265 section 5.4, parsed
 * leniently: pairs split on ';', blanks around names and values ignored, pairs without '='
 * skipped, one pair of surrounding double quotes removed from the value). Names match exactly
 * (case-sensitive); the first match wins. The value is copied NUL-terminated into out.
 * Returns 0; LV_ENOTFOUND when the header or the cookie is absent; LV_ELIMIT when the value
 * does not fit in out_size (including the NUL); LV_EINVAL when name is NULL or empty. */
int lv_cookie_get(const char *cookie_header, const char *name, char *out, size_t out_size);

/** Find parameter `name` in a URL query string (the part after '?', without it; may be NULL).
 * Pairs are split on '&'; names and values are percent-decoded with '+' as space before
 * comparing; a pair without '=' has the empty value. The first match wins; its decoded value is
 * copied NUL-terminated into out.
 * Returns 0; LV_ENOTFOUND; LV_ELIMIT when the decoded value does not fit in out_size; LV_EINVAL
 * when the matching value holds a malformed escape ("%4", "%zz") or "%00" (a NUL would silently
 * cut the C string), or when name is NULL or empty. A pair whose name is malformed never matches. */
int lv_query_get(const char *query, const char *name, char *out, size_t out_size);

/** 1 when a WebSocket upgrade's Origin header ("https://host:8090", RFC 6454) names the same
 * host and port as its Host header ("host:8090"), else 0. Hosts compare case-insensitively;
 * IPv6 literals are written in brackets on both sides ("[::1]:8090"). A missing port means the
 * origin scheme's default on either side (http 80, https 443). Fails closed: 0 for the opaque
 * origin "null", other schemes, userinfo, paths, empty or malformed hosts or ports, and NULL. */
int lv_origin_matches(const char *origin, const char *host_header);

/** Extract the token of an Authorization header "Bearer <token>" (RFC 6750 section 2.1: the
 * scheme is case-insensitive, the token is token68 characters). Blanks around the token are
 * ignored. The token is copied NUL-terminated into out.
 * Returns 0; LV_ENOTFOUND when the header is absent, uses another scheme, or holds no single
 * well-formed token; LV_ELIMIT when the token does not fit in out_size. */
int lv_bearer_get(const char *authorization_header, char *out, size_t out_size);

/** The weight an Accept-Encoding field (RFC 9110 section 12.5.3) gives the content coding
 * `coding` ("gzip"), in thousandths: 0 (not acceptable) to 1000. value/len is the field value;
 * value NULL when the request has none. Names compare case-insensitively, "x-gzip" counts as
 * "gzip" (section 8.4.1.3); the coding's own entry wins over "*", and the first entry for a name
 * wins. An entry without a weight weighs 1000 ("q=1"); one with a malformed weight
 * ("q=2", "q=0.1234", "q=") or any other parameter is ignored. Both an absent and an empty field
 * give 0: the RFC lets a server pick any coding when the field is absent, but clients that send
 * none (curl without --compressed, scripts) mostly cannot decode one. Not for "identity", which
 * is acceptable unless excluded: this answers for real codings only (NULL or "": 0). */
int lv_accept_encoding_q(const char *value, size_t len, const char *coding);

/** 1 when an If-None-Match field (RFC 9110 section 13.1.2) matches the current representation,
 * whose entity-tag is etag (quotes included: "\"abc\""), else 0. It matches when the field is
 * "*" or a comma-separated list of entity-tags one of which equals etag by the weak comparison
 * (a "W/" on either side ignored, as section 13.1.2 requires for If-None-Match). value/len is
 * the field value; value NULL when absent. A malformed field (an unquoted tag, a stray quote,
 * "*" inside a list, junk between tags) matches nothing, so the full answer goes out. */
int lv_etag_match(const char *value, size_t len, const char *etag);

/* ---------- client addresses behind a reverse proxy ---------- */

/* Room for an address as lv_ip_text writes it (INET6_ADDRSTRLEN, the NUL included). */
#define LV_IP_TEXT_MAX 46

/* The walk through X-Forwarded-For stops with LV_ELIMIT past either cap. Both count only the
 * part walked (from the right), which the trusted proxies wrote; see lv_forwarded_for_client. */
#define LV_XFF_MAX_BYTES 2048
#define LV_XFF_MAX_ENTRIES 32

/* An address block "ADDR[/BITS]". IPv4 is held as its IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * with 96 + BITS, so one comparison serves both families and "10.0.0.1" and "::ffff:10.0.0.1"
 * are one address. A value type. */
typedef struct {
    unsigned char addr[16]; /* host bits cleared */
    unsigned bits;          /* prefix length, 0..128 */
} lv_ipnet_t;

/** Parse an IPv4 (four decimal numbers, no leading zeros) or IPv6 literal of len bytes (no
 * brackets, zone or port) into addr, IPv4 as IPv4-mapped. 0 or LV_EINVAL. */
int lv_ip_parse(const char *text, size_t len, unsigned char addr[16]);

/** Write addr as the front door writes a peer address (lv_net.c): IPv4-mapped addresses as
 * dotted IPv4, others in RFC 5952 form ("2001:db8::1"), so one client is one text whichever way
 * it arrived. out_size >= LV_IP_TEXT_MAX always fits; "?" when out_size is too small. */
void lv_ip_text(const unsigned char addr[16], char *out, size_t out_size);

/** Parse "ADDR" or "ADDR/BITS" (BITS 0..32 after an IPv4 address, 0..128 after an IPv6 one;
 * without it, that one address). Host bits past the prefix are ignored ("10.1.2.3/8" is
 * 10.0.0.0/8). 0 or LV_EINVAL (text NULL, blanks, brackets, a port, a bad prefix). */
int lv_ipnet_parse(const char *text, lv_ipnet_t *out);

/** 1 when addr (16 bytes, as lv_ip_parse gives) lies in one of nets[0..n), else 0. */
int lv_ipnet_contains(const lv_ipnet_t *nets, size_t n, const unsigned char addr[16]);

/** The client address of a request that came through trusted proxies. values[0..n_values) are
 * the request's X-Forwarded-For field values in the order they came: several fields are one
 * comma-separated list (RFC 9110 section 5.3). Each element is an IPv4 or IPv6 literal, IPv6
 * also in brackets ("[2001:db8::1]"), blanks around it ignored; empty elements are skipped.
 *
 * The list is walked from the right: every proxy appends the address it received the request
 * from, so the right end was written by our own proxies and everything to the left of the first
 * address they did not get from another trusted proxy was sent by the client and proves nothing.
 * Elements in trusted[0..n_trusted) are skipped; the first one that is not is the client. When
 * every element is trusted, the leftmost is (a proxy was the client). Elements left of the one
 * taken are never looked at, so what a client puts there cannot change the answer, nor make it
 * an error.
 *
 * Returns 0 with the client's address in out, normalised as lv_ip_text writes it;
 * LV_ENOTFOUND when n_values is 0 (no such field: the peer itself is the client); LV_EINVAL when
 * an element walked is not an address or there is no element at all, or out_size <
 * LV_IP_TEXT_MAX; LV_ELIMIT when the walk passes LV_XFF_MAX_ENTRIES elements or
 * LV_XFF_MAX_BYTES bytes. On every error out is "" and the caller keeps the peer's address. */
int lv_forwarded_for_client(const lv_view_t *values, size_t n_values, const lv_ipnet_t *trusted, size_t n_trusted,
                            char *out, size_t out_size);

#endif
