/* fuzz_traceparent.c - libFuzzer driver for the W3C traceparent parser and the tracestate check
 * (an HTTP client, a WebSocket upgrade or a job body in Redis chooses these bytes). The whole
 * input is the header value. A value that parses must format back to the same ids, and the
 * formatted form must parse again.
 * fuzz-sources: src/proto/lv_traceparent.c src/common/lv_common.c src/common/lv_rand.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_traceparent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly size bytes: a read past the value is caught by ASan */
    char *v = malloc(size ? size : 1);
    if (!v)
        return 0;
    memcpy(v, data, size);

    lv_traceparent_t tp;
    int rc = lv_traceparent_parse(v, size, &tp);
    if (rc != 0 && rc != LV_EINVAL)
        abort();
    if (rc != 0 && (tp.trace_id[0] || tp.parent_id[0] || tp.version || tp.flags))
        abort(); /* zeroed on failure */
    if (rc == 0) {
        if (size < LV_TRACEPARENT_LEN || tp.version == 0xff || (tp.version == 0 && size != LV_TRACEPARENT_LEN))
            abort();
        if (!lv_trace_id_valid(tp.trace_id, strlen(tp.trace_id), LV_TRACE_ID_HEX) ||
            !lv_trace_id_valid(tp.parent_id, strlen(tp.parent_id), LV_SPAN_ID_HEX))
            abort();
        char out[LV_TRACEPARENT_LEN + 1];
        if (lv_traceparent_format(tp.trace_id, tp.parent_id, tp.flags, out, sizeof(out)) != 0)
            abort();
        /* for version 00 the formatted value is the input itself */
        if (tp.version == 0 && memcmp(out, v, LV_TRACEPARENT_LEN) != 0)
            abort();
        lv_traceparent_t again;
        if (lv_traceparent_parse(out, strlen(out), &again) != 0 || strcmp(again.trace_id, tp.trace_id) != 0 ||
            strcmp(again.parent_id, tp.parent_id) != 0 || again.flags != tp.flags)
            abort();
    }
    /* tracestate: what passes can never end a header line */
    if (lv_tracestate_ok(v, size)) {
        if (size == 0 || size > LV_TRACESTATE_MAX || memchr(v, '\r', size) || memchr(v, '\n', size) ||
            memchr(v, '\0', size))
            abort();
    }
    free(v);
    return 0;
}
