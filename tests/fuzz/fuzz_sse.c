/* fuzz_sse.c - libFuzzer driver for the SSE parser: the input is fed in pieces whose sizes come
 * from its own first bytes, then the result is compared with a one-feed parse (splitting must
 * never change the events).
 * fuzz-sources: src/common/lv_buf.c src/common/lv_common.c src/proto/lv_sse.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    lv_buf_t events;
    int n;
} sink_t;

static int on_data(void *ud, const char *d, size_t len)
{
    sink_t *s = ud;
    if (d[len] != '\0')
        abort();
    s->n++;
    /* record length-prefixed so "a|b" and two events "a","b" differ */
    lv_buf_printf(&s->events, "%zu:", len);
    lv_buf_append(&s->events, d, len);
    return s->n >= 10000 ? 1 : 0; /* also exercise the callback's stop */
}

static int parse(const char *p, size_t n, const uint8_t *cuts, size_t ncuts, sink_t *s)
{
    lv_sse_t sse;
    lv_sse_init(&sse, 512);
    size_t off = 0, k = 0;
    int rc = 0;
    while (off < n && !rc) {
        size_t piece = ncuts ? 1 + (size_t)cuts[k++ % ncuts] % 64 : n;
        if (piece > n - off)
            piece = n - off;
        rc = lv_sse_feed(&sse, p + off, piece, on_data, s);
        off += piece;
    }
    if (!rc)
        rc = lv_sse_finish(&sse, on_data, s);
    lv_sse_free(&sse);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t ncuts = data[0] % 8;
    if (ncuts + 1 > size)
        return 0;
    const uint8_t *cuts = data + 1;
    const char *p = (const char *)data + 1 + ncuts;
    size_t n = size - 1 - ncuts;

    sink_t a, b;
    lv_buf_init(&a.events, 1 << 24);
    lv_buf_init(&b.events, 1 << 24);
    a.n = b.n = 0;
    int ra = parse(p, n, NULL, 0, &a);
    int rb = parse(p, n, cuts, ncuts, &b);
    /* a cap error may surface at a different point, but success must agree exactly */
    if (ra == 0 && rb == 0 && (a.events.len != b.events.len || (a.events.len && memcmp(a.events.data, b.events.data, a.events.len) != 0)))
        abort();
    if ((ra == 0) != (rb == 0))
        abort();
    lv_buf_free(&a.events);
    lv_buf_free(&b.events);
    return 0;
}
