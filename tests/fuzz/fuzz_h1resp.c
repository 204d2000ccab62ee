/* fuzz_h1resp.c - libFuzzer driver for the HTTP/1.1 response parser: the input (after its first
 * byte) is a backend's bytes, parsed whole, cut in two at a place the first byte picks, and for
 * short inputs byte by byte; the results (status, framing, body, done, error, bytes used) must
 * all be the same, and header lookups must point inside the head.
 * fuzz-sources: src/common/lv_buf.c src/common/lv_common.c src/proto/lv_h1resp.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_h1resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    int rc;
    bool head_done, done, conn_close, reusable;
    int status, minor;
    int framing;
    uint64_t content_length;
    size_t used;
    lv_buf_t body;
} res_t;

static int on_body(void *ud, const char *d, size_t len)
{
    res_t *r = ud;
    if (len == 0)
        abort();
    if (lv_buf_append(&r->body, d, len) != 0)
        abort();
    return 0;
}

static void check_header(const lv_h1resp_t *p, const char *name)
{
    size_t len = 0;
    int count = -1;
    const char *v = lv_h1resp_header(p, name, &len, &count);
    if (count < 0 || (v == NULL) != (count == 0))
        abort();
    if (v && (v < p->head.data || v + len > p->head.data + p->head.len))
        abort();
}

/* step 0: one cut at cut; else pieces of step bytes. */
static void parse(const char *in, size_t n, size_t cut, size_t step, res_t *r)
{
    lv_h1resp_t p;
    lv_h1resp_init(&p);
    memset(r, 0, sizeof *r);
    lv_buf_init(&r->body, 1 << 24);
    size_t off = 0;
    int rc = 0;
    for (int piece = 0; off < n || piece == 0; piece++) {
        size_t len = step ? LV_MIN(step, n - off) : piece == 0 ? cut : n - off;
        size_t used = 0;
        rc = lv_h1resp_feed(&p, in + off, len, &used, on_body, r);
        if (used > len || (!rc && !p.done && used != len))
            abort();
        r->used += used;
        off += len;
        if (rc || p.done)
            break;
    }
    if (!rc && !p.done)
        rc = lv_h1resp_eof(&p);
    if (rc != 0 && (lv_h1resp_feed(&p, "x", 1, NULL, on_body, r) != rc || lv_h1resp_eof(&p) != rc))
        abort(); /* errors are sticky */
    if (p.head_done) {
        check_header(&p, "content-type");
        check_header(&p, "content-length");
        check_header(&p, "transfer-encoding");
        if (p.status < 200 && p.status != 101)
            abort();
    }
    r->rc = rc;
    r->head_done = p.head_done;
    r->done = p.done;
    r->conn_close = p.conn_close;
    r->reusable = lv_h1resp_reusable(&p);
    r->status = p.status;
    r->minor = p.minor;
    r->framing = (int)p.framing;
    r->content_length = p.content_length;
    lv_h1resp_free(&p);
}

static void same(const res_t *a, const res_t *b)
{
    if (a->rc != b->rc || a->head_done != b->head_done || a->done != b->done || a->conn_close != b->conn_close ||
        a->reusable != b->reusable || a->status != b->status || a->minor != b->minor || a->framing != b->framing ||
        a->content_length != b->content_length || (a->rc == 0 && a->used != b->used) || a->body.len != b->body.len ||
        (a->body.len && memcmp(a->body.data, b->body.data, a->body.len) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    size_t cut = n * data[0] / 255;
    res_t whole, split, bytes;
    parse(in, n, n, 0, &whole);
    parse(in, n, cut, 0, &split);
    same(&whole, &split);
    if (n <= 2048) {
        parse(in, n, 0, 1, &bytes);
        same(&whole, &bytes);
        lv_buf_free(&bytes.body);
    }
    lv_buf_free(&whole.body);
    lv_buf_free(&split.body);
    return 0;
}
