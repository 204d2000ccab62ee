/* fuzz_httputil.c - libFuzzer driver for the cookie, query, Origin, Bearer, Accept-Encoding and
 * If-None-Match helpers, and the client address behind trusted proxies (addresses, address
 * blocks, X-Forwarded-For). The input is split at the first NUL into two C strings (header value,
 * name/host/coding/entity-tag/address block); the Accept-Encoding, If-None-Match and
 * X-Forwarded-For parsers also get the whole input as an unterminated view, so a read past its
 * length trips ASan.
 * fuzz-sources: src/proto/lv_httputil.c src/common/lv_common.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lv_common.h"
#include "lv_httputil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_out(int rc, const char *out, size_t out_size)
{
    /* On success the value is a C string that fits. */
    if (rc == 0 && strnlen(out, out_size) >= out_size)
        abort();
    if (rc != 0 && rc != LV_ENOTFOUND && rc != LV_ELIMIT && rc != LV_EINVAL)
        abort();
}

/* Accept-Encoding and If-None-Match: bounded results, and properties that hold for any field. */
static void check_codings(const uint8_t *data, size_t size, const char *a, const char *b)
{
    /* the raw input as a view with nothing readable after it */
    char *view = malloc(size ? size : 1);
    if (!view)
        return;
    memcpy(view, data, size);
    const char *coding = *b ? b : "gzip";
    int q = lv_accept_encoding_q(view, size, coding);
    if (q < 0 || q > 1000)
        abort();
    int m = lv_etag_match(view, size, *b ? b : "\"x\"");
    if (m != 0 && m != 1)
        abort();
    free(view);

    /* coding names compare case-insensitively */
    size_t a_len = strlen(a);
    q = lv_accept_encoding_q(a, a_len, coding);
    char *upper = strdup(coding);
    if (!upper)
        return;
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    if (lv_accept_encoding_q(a, a_len, upper) != q)
        abort();
    free(upper);

    /* list elements stand alone: an entry for another coding in front changes nothing, and the
     * first entry for a coding wins, whatever follows */
    char *joined = malloc(a_len + 32);
    if (!joined)
        return;
    int n = snprintf(joined, a_len + 32, "identity, %s", a);
    if (lv_accept_encoding_q(joined, (size_t)n, "gzip") != lv_accept_encoding_q(a, a_len, "gzip"))
        abort();
    n = snprintf(joined, a_len + 32, "gzip;q=0, %s", a);
    if (lv_accept_encoding_q(joined, (size_t)n, "gzip") != 0)
        abort();
    n = snprintf(joined, a_len + 32, "gzip;q=0.5,%s", a);
    if (lv_accept_encoding_q(joined, (size_t)n, "gzip") != 500)
        abort();

    /* If-None-Match: the weak comparison ignores a W/ on the current tag; "*" alone matches */
    if (*b == '"') {
        size_t b_len = strlen(b);
        char *weak = malloc(b_len + 3);
        if (weak) {
            snprintf(weak, b_len + 3, "W/%s", b);
            if (lv_etag_match(a, a_len, b) != lv_etag_match(a, a_len, weak))
                abort();
            free(weak);
        }
    }
    if (lv_etag_match("*", 1, "\"x\"") != 1 || lv_etag_match(" * ", 3, "W/\"\"") != 1)
        abort();
    free(joined);
}

/* X-Forwarded-For: an answer is always a normalised address; what a client writes left of the
 * address our proxies appended never changes it; several fields are one list. */
static void check_forwarded(const uint8_t *data, size_t size, const char *a, const char *b)
{
    lv_ipnet_t trusted[3];
    size_t n_trusted = 0;
    if (lv_ipnet_parse("127.0.0.1", &trusted[n_trusted]) == 0)
        n_trusted++;
    if (lv_ipnet_parse("10.0.0.0/8", &trusted[n_trusted]) == 0)
        n_trusted++;
    if (lv_ipnet_parse(b, &trusted[n_trusted]) == 0) {
        /* a block holds its own address; a prefix is 0..128 */
        if (trusted[n_trusted].bits > 128 || !lv_ipnet_contains(&trusted[n_trusted], 1, trusted[n_trusted].addr))
            abort();
        n_trusted++;
    }
    char out[LV_IP_TEXT_MAX], again[LV_IP_TEXT_MAX];
    unsigned char addr[16], addr2[16];

    /* the raw input as one field with nothing readable after it */
    char *view = malloc(size ? size : 1);
    if (!view)
        return;
    memcpy(view, data, size);
    lv_view_t field = {view, size};
    int rc = lv_forwarded_for_client(&field, 1, trusted, n_trusted, out, sizeof(out));
    if (rc != 0 && rc != LV_EINVAL && rc != LV_ELIMIT)
        abort();
    if (rc != 0 && out[0])
        abort();
    if (lv_ip_parse(view, size, addr) == 0) {
        lv_ip_text(addr, again, sizeof(again));
        if (lv_ip_parse(again, strlen(again), addr2) != 0 || memcmp(addr, addr2, 16) != 0)
            abort();
    }
    free(view);

    size_t a_len = strlen(a);
    lv_view_t whole = {a, a_len};
    rc = lv_forwarded_for_client(&whole, 1, trusted, n_trusted, out, sizeof(out));
    if (rc == 0) {
        /* the answer is an address written as lv_ip_text writes it */
        if (lv_ip_parse(out, strlen(out), addr) != 0)
            abort();
        lv_ip_text(addr, again, sizeof(again));
        if (strcmp(out, again) != 0)
            abort();
    }
    /* a client's own entries in front of a real client address change nothing */
    if (rc == 0 && lv_ip_parse(out, strlen(out), addr) == 0 && !lv_ipnet_contains(trusted, n_trusted, addr)) {
        char *forged = malloc(a_len + 64);
        if (forged) {
            int n = snprintf(forged, a_len + 64, "127.0.0.1, junk ,10.0.0.1,%s", a);
            lv_view_t f = {forged, (size_t)n};
            if (lv_forwarded_for_client(&f, 1, trusted, n_trusted, again, sizeof(again)) != 0 ||
                strcmp(again, out) != 0)
                abort();
            free(forged);
        }
    }
    /* split at the first comma, two fields read as the one list */
    const char *comma = strchr(a, ',');
    if (comma) {
        lv_view_t two[2] = {{a, (size_t)(comma - a)}, {comma + 1, a_len - (size_t)(comma - a) - 1}};
        int rc2 = lv_forwarded_for_client(two, 2, trusted, n_trusted, again, sizeof(again));
        if (rc2 != rc || (rc == 0 && strcmp(again, out) != 0))
            abort();
    }
    /* no field: the peer is the client */
    if (lv_forwarded_for_client(NULL, 0, trusted, n_trusted, out, sizeof(out)) != LV_ENOTFOUND)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 2);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    buf[size + 1] = '\0';
    const char *a = buf;
    const char *b = buf + strlen(buf) + 1; /* the part after the first NUL, or "" */
    const char *name = *b ? b : "livevlm_auth";
    /* A small output buffer reaches the LV_ELIMIT paths; a large one the success paths. */
    char small[8], big[256];

    check_out(lv_cookie_get(a, name, small, sizeof(small)), small, sizeof(small));
    check_out(lv_cookie_get(a, name, big, sizeof(big)), big, sizeof(big));
    check_out(lv_query_get(a, *b ? b : "token", small, sizeof(small)), small, sizeof(small));
    check_out(lv_query_get(a, *b ? b : "token", big, sizeof(big)), big, sizeof(big));
    check_out(lv_bearer_get(a, small, sizeof(small)), small, sizeof(small));
    check_out(lv_bearer_get(a, big, sizeof(big)), big, sizeof(big));

    int m = lv_origin_matches(a, b);
    if (m != 0 && m != 1)
        abort();
    /* Only http(s) origins ever match (blanks around header values are ignored), and host
     * case never matters. */
    const char *scheme = a + strspn(a, " \t");
    if (m && strncasecmp(scheme, "http://", 7) != 0 && strncasecmp(scheme, "https://", 8) != 0)
        abort();
    char *upper = strdup(b);
    if (upper) {
        for (char *p = upper; *p; p++)
            if (*p >= 'a' && *p <= 'z')
                *p = (char)(*p - 'a' + 'A');
        if (lv_origin_matches(a, upper) != m)
            abort();
        free(upper);
    }
    check_codings(data, size, a, b);
    check_forwarded(data, size, a, b);
    free(buf);
    return 0;
}
