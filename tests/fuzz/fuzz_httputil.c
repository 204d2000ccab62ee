/* fuzz_httputil.c - libFuzzer driver for the cookie, query, Origin and Bearer helpers.
 * The input is split at the first NUL into two C strings (header value, name/host).
 * fuzz-sources: src/proto/lv_httputil.c src/common/lv_common.c
 */
#include <stdint.h>
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
    free(buf);
    return 0;
}
