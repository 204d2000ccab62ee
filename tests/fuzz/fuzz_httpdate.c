/* fuzz_httpdate.c - libFuzzer driver for the HTTP-date and Retry-After parsers (a backend's
 * 429/503 answer chooses these bytes). The whole input is the header value.
 * fuzz-sources: src/proto/lv_httpdate.c src/common/lv_common.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_httpdate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP_MS 60000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly size bytes: a read past the value is caught by ASan */
    char *v = malloc(size ? size : 1);
    if (!v)
        return 0;
    memcpy(v, data, size);

    int64_t at = 0;
    int drc = lv_http_date_parse(v, size, &at);
    if (drc != 0 && drc != LV_EINVAL)
        abort();
    /* years 1900..9999 (a leap second may step one second past the last) */
    if (drc == 0 && (at < INT64_C(-2208988800) || at > INT64_C(253402300800)))
        abort();

    uint64_t w = 12345;
    int rc = lv_retry_after_parse(v, size, 0, CAP_MS, &w);
    if (rc != 0 && rc != LV_EINVAL)
        abort();
    if (rc == 0 && w > CAP_MS)
        abort();
    if (rc != 0 && w != 12345)
        abort(); /* untouched on failure */
    /* extreme clocks and caps never overflow */
    uint64_t w2;
    if (lv_retry_after_parse(v, size, INT64_MIN, UINT64_MAX, &w2) != rc ||
        lv_retry_after_parse(v, size, INT64_MAX, 0, &w2) != rc)
        abort();
    if (rc == 0 && w2 != 0)
        abort(); /* a cap of 0 always gives 0 */

    if (drc == 0) {
        /* a date is also a Retry-After value, measured against the caller's clock */
        if (rc != 0)
            abort();
        if (lv_retry_after_parse(v, size, at, CAP_MS, &w2) != 0 || w2 != 0)
            abort();
        if (lv_retry_after_parse(v, size, at - 5, CAP_MS, &w2) != 0 || w2 != 5000)
            abort();
        if (lv_retry_after_parse(v, size, at - 1000000, CAP_MS, &w2) != 0 || w2 != CAP_MS)
            abort();
    }
    free(v);
    return 0;
}
