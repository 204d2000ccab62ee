/* lv_httputil.h - small pure helpers for the HTTP layer: reading the auth cookie, query
 * parameters, the Bearer token, and the WebSocket Origin check (docs/protocol.md "Authentication").
 * No I/O, no allocation; every output goes into a caller-sized buffer. */
#ifndef LV_HTTPUTIL_H
#define LV_HTTPUTIL_H

#include <stddef.h>

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

#endif
