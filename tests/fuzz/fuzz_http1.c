/* fuzz_http1.c - libFuzzer driver for the HTTP/1.1 request parser and chunked decoder, walked
 * the way the server walks a connection's input: parse a head, skip its Content-Length body or
 * decode its chunked body (in pieces whose sizes come from the input, compared with a one-piece
 * decode), then parse the next pipelined request from what is left.
 * fuzz-sources: src/common/lv_common.c src/proto/lv_http1.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lv_http1_req_t req, req2;

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_view(lv_view_t v, const char *buf, size_t len)
{
    if (v.len == 0)
        return;
    check(v.ptr >= buf && v.ptr + v.len <= buf + len);
}

/* Decode a chunked body at in[0..n) in pieces (sizes from cuts), into a fresh copy. Returns the
 * rc; *used = input consumed, out/out_n = decoded bytes. */
static int chunked(const char *in, size_t n, size_t cap, const uint8_t *cuts, size_t ncuts, char *out, size_t *out_n,
                   size_t *used)
{
    char *copy = malloc(n ? n : 1);
    if (!copy)
        abort();
    memcpy(copy, in, n);
    lv_http1_chunked_t c;
    lv_http1_chunked_init(&c, cap);
    size_t pos = 0, o = 0, k = 0;
    int rc = 0;
    while (rc == 0 && pos < n) {
        size_t piece = ncuts ? 1 + cuts[k++ % ncuts] % 32 : n;
        if (piece > n - pos)
            piece = n - pos;
        size_t len = piece, dec = 0;
        rc = lv_http1_chunked_feed(&c, copy + pos, &len, &dec);
        check(len <= piece && dec <= len);
        check(rc == 0 || rc == 1 || rc == LV_EPARSE || rc == LV_ELIMIT);
        if (rc == 0)
            check(len == piece); /* short only when the body ended */
        memcpy(out + o, copy + pos, dec);
        o += dec;
        pos += len;
        check(c.body_len == o && o <= cap);
    }
    free(copy);
    *out_n = o;
    *used = pos;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t max_head = 64 + (size_t)data[0] * 16; /* 64..4144: caps are hit often */
    size_t body_cap = (size_t)1 << (data[1] % 16);
    size_t ncuts = data[2] % 8;
    if (3 + ncuts > size)
        return 0;
    const uint8_t *cuts = data + 3;
    const char *buf = (const char *)data + 3 + ncuts;
    size_t len = size - 3 - ncuts;

    char *out_a = malloc(len + 1), *out_b = malloc(len + 1);
    if (!out_a || !out_b)
        abort();
    size_t off = 0;
    for (int n_req = 0; n_req < 64 && off < len; n_req++) {
        const char *p = buf + off;
        size_t left = len - off;
        int status = -1;
        int rc = lv_http1_parse_request(p, left, max_head, &req, &status);
        if (rc == LV_EAGAIN) {
            check(status == 0 && left < max_head);
            break;
        }
        if (rc == LV_EPARSE) {
            check(status == 400 || status == 501 || status == 505);
            break;
        }
        if (rc == LV_ELIMIT) {
            check(status == 431 || status == 414);
            break;
        }
        check(rc == 0 && status == 0);
        check(req.head_len > 0 && req.head_len <= left && req.head_len <= max_head);
        check(req.n_headers <= LV_HTTP1_MAX_HEADERS);
        check(req.minor_version == 0 || req.minor_version == 1);
        check(req.method.len > 0 && req.target.len > 0 && req.target.len <= LV_HTTP1_MAX_TARGET);
        check(req.target.ptr[0] == '/');
        check(req.path.len + (req.query.len ? req.query.len + 1 : 0) <= req.target.len);
        check_view(req.method, p, req.head_len);
        check_view(req.target, p, req.head_len);
        check_view(req.path, p, req.head_len);
        check_view(req.query, p, req.head_len);
        for (size_t i = 0; i < req.n_headers; i++) {
            check(req.headers[i].name.len > 0);
            check_view(req.headers[i].name, p, req.head_len);
            check_view(req.headers[i].value, p, req.head_len);
            /* looking a header up by its own name finds one (the first of that name) */
            char name[64];
            size_t nl = req.headers[i].name.len;
            if (nl < sizeof(name)) {
                memcpy(name, req.headers[i].name.ptr, nl);
                name[nl] = '\0';
                check(lv_http1_header(&req, name) != NULL);
            }
        }
        check(!(req.chunked && req.content_length >= 0));
        check(req.content_length >= -1);
        check(!req.upgrade_websocket || req.minor_version == 1);
        char copy[64];
        int crc = lv_http1_header_copy(&req, "host", copy, sizeof(copy));
        check(crc == 0 || crc == LV_ENOTFOUND || crc == LV_ELIMIT);
        if (crc == 0)
            check(strlen(copy) < sizeof(copy));

        /* A prefix of a valid head is never refused: EAGAIN, since it is valid so far. */
        size_t k = ncuts ? cuts[n_req % ncuts] % req.head_len : req.head_len - 1;
        check(lv_http1_parse_request(p, k, max_head, &req2, NULL) == LV_EAGAIN);
        /* More bytes after the head do not change it. */
        check(lv_http1_parse_request(p, req.head_len, max_head, &req2, NULL) == 0);
        check(req2.head_len == req.head_len && req2.n_headers == req.n_headers);

        off += req.head_len;
        if (req.chunked) {
            size_t na, nb, ua, ub;
            int ra = chunked(buf + off, len - off, body_cap, NULL, 0, out_a, &na, &ua);
            int rb = chunked(buf + off, len - off, body_cap, cuts, ncuts, out_b, &nb, &ub);
            /* splitting never changes the outcome */
            check(ra == rb);
            if (ra >= 0) {
                check(na == nb && ua == ub && memcmp(out_a, out_b, na) == 0);
            }
            if (ra != 1)
                break;
            off += ua;
        } else if (req.content_length > 0) {
            if ((uint64_t)req.content_length > len - off)
                break;
            off += (size_t)req.content_length;
        }
        if (!req.keep_alive)
            break;
    }
    free(out_a);
    free(out_b);
    (void)lv_http1_reason((int)data[0] * 3);
    return 0;
}
