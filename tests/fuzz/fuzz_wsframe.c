/* fuzz_wsframe.c - libFuzzer driver for the WebSocket client-frame reader. The input is either
 * raw wire bytes or, with the mode bit set, a list of frame descriptions the driver masks and
 * frames itself (so deep states are reached without guessing masks). The wire is fed in pieces
 * whose sizes come from the input, and the events must equal those of a one-piece read.
 * fuzz-sources: src/common/lv_buf.c src/common/lv_utf8.c src/proto/lv_b64.c src/proto/lv_wsframe.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_utf8.h"
#include "lv_wsframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static bool inside(const uint8_t *p, size_t n, const void *base, size_t base_len)
{
    const uint8_t *b = base;
    return p >= b && p + n <= b + base_len;
}

/* Read the wire in pieces; record every event (kind, flags, code, length, payload) into log. */
static void read_wire(const uint8_t *wire, size_t n, size_t max_bin, size_t max_text, const uint8_t *cuts, size_t ncuts,
                      lv_buf_t *log)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy)
        abort();
    memcpy(copy, wire, n);
    lv_ws_reader_t r;
    lv_ws_reader_init(&r, max_bin, max_text);
    size_t pos = 0, k = 0;
    bool failed = false;
    while (pos < n && !failed) {
        size_t piece = ncuts ? 1 + cuts[k++ % ncuts] % 64 : n;
        if (piece > n - pos)
            piece = n - pos;
        size_t off = 0;
        for (int guard = 0;; guard++) {
            check(guard < 100000);
            size_t used = (size_t)-1;
            lv_ws_event_t ev;
            lv_ws_reader_feed(&r, copy + pos + off, piece - off, &used, &ev);
            check(used <= piece - off);
            off += used;
            if (ev.kind == LV_WS_EV_NONE) {
                check(off == piece);
                break;
            }
            check(used > 0); /* every event but a repeated ERROR consumes the byte that made it */
            uint8_t kind = (uint8_t)ev.kind;
            lv_buf_append(log, &kind, 1);
            switch (ev.kind) {
            case LV_WS_EV_MESSAGE:
                check(ev.data != NULL);
                check(ev.len <= (ev.binary ? max_bin : max_text));
                check(ev.len == 0 || inside(ev.data, ev.len, r.msg.data, r.msg.len));
                if (!ev.binary)
                    check(lv_utf8_valid(ev.data, ev.len));
                break;
            case LV_WS_EV_PING:
            case LV_WS_EV_PONG:
                check(ev.len <= 125 && inside(ev.data, ev.len, r.ctl, sizeof(r.ctl)));
                break;
            case LV_WS_EV_CLOSE:
                check(ev.len <= 123 && (ev.len == 0 || inside(ev.data, ev.len, r.ctl, sizeof(r.ctl))));
                check(ev.close_code == 1005 || (ev.close_code >= 1000 && ev.close_code <= 4999));
                check(lv_utf8_valid(ev.data, ev.len));
                break;
            case LV_WS_EV_TOO_BIG:
                check(ev.len > (ev.binary ? max_bin : max_text));
                check(r.msg.len == 0);
                break;
            case LV_WS_EV_ERROR:
                check(ev.why != NULL);
                check(ev.close_code == LV_WS_CLOSE_PROTOCOL || ev.close_code == LV_WS_CLOSE_INVALID_DATA ||
                      ev.close_code == LV_WS_CLOSE_INTERNAL);
                failed = true;
                break;
            default:
                abort();
            }
            lv_buf_printf(log, "%d:%d:%zu:", (int)ev.binary, ev.close_code, ev.len);
            if (ev.kind != LV_WS_EV_TOO_BIG && ev.kind != LV_WS_EV_ERROR && ev.len)
                lv_buf_append(log, ev.data, ev.len);
            if (failed) {
                /* sticky, consuming nothing */
                lv_ws_event_t ev2;
                size_t used2 = 1;
                lv_ws_reader_feed(&r, copy, n, &used2, &ev2);
                check(ev2.kind == LV_WS_EV_ERROR && used2 == 0 && ev2.close_code == ev.close_code);
                break;
            }
        }
        pos += piece;
    }
    lv_ws_reader_free(&r);
    free(copy);
}

/* Structured mode: each frame is [b0][len byte][payload...]. The len byte's low 6 bits are the
 * payload length, times 4 with bit 0x80 (so the 16-bit form is reached); bit 0x40 picks the 64-bit
 * form; both bits together send the frame unmasked (rare on purpose). The driver masks the
 * payload with a key of its own. */
static size_t build_wire(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    size_t i = 0, o = 0;
    while (i + 2 <= n && o + 14 + 256 <= cap) {
        uint8_t b0 = in[i], lb = in[i + 1];
        i += 2;
        size_t plen = (size_t)(lb & 0x3F) * ((lb & 0x80) ? 4 : 1);
        if (plen > n - i)
            plen = n - i;
        bool unmasked = (lb & 0xC0) == 0xC0;
        bool len64 = (lb & 0x40) != 0;
        uint8_t mbit = unmasked ? 0 : 0x80;
        out[o++] = b0;
        if (len64) {
            out[o++] = mbit | 127;
            for (int k = 0; k < 6; k++)
                out[o++] = 0;
            out[o++] = (uint8_t)(plen >> 8);
            out[o++] = (uint8_t)plen;
        } else if (plen < 126) {
            out[o++] = (uint8_t)(mbit | plen);
        } else {
            out[o++] = mbit | 126;
            out[o++] = (uint8_t)(plen >> 8);
            out[o++] = (uint8_t)plen;
        }
        uint8_t mask[4] = {(uint8_t)(b0 * 31), (uint8_t)(lb * 7), 0x5A, (uint8_t)i};
        if (!unmasked) {
            memcpy(out + o, mask, 4);
            o += 4;
        }
        for (size_t k = 0; k < plen; k++)
            out[o++] = in[i + k] ^ (unmasked ? 0 : mask[k & 3]);
        i += plen;
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    bool structured = data[0] & 1;
    size_t max_bin = (size_t)data[0] >> 1; /* 0..127: small caps, so TOO_BIG is common */
    size_t max_text = (size_t)data[1] % 200;
    size_t ncuts = data[2] % 8;
    if (3 + ncuts > size)
        return 0;
    const uint8_t *cuts = data + 3;
    const uint8_t *in = data + 3 + ncuts;
    size_t n = size - 3 - ncuts;

    uint8_t *wire = NULL;
    size_t wn = n;
    if (structured) {
        size_t cap = n * 8 + 512;
        wire = malloc(cap);
        if (!wire)
            abort();
        wn = build_wire(in, n, wire, cap);
        in = wire;
    }
    lv_buf_t a, b;
    lv_buf_init(&a, 1 << 24);
    lv_buf_init(&b, 1 << 24);
    read_wire(in, wn, max_bin, max_text, NULL, 0, &a);
    read_wire(in, wn, max_bin, max_text, cuts, ncuts, &b);
    check(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
    lv_buf_free(&a);
    lv_buf_free(&b);

    if (n >= 24) {
        char key[24], acc[29];
        memcpy(key, data + size - 24, 24);
        if (data[1] & 1) { /* mostly well-formed keys, so the digest path is reached */
            key[22] = '=';
            key[23] = '=';
        }
        int rc = lv_ws_accept_key(key, 24, acc);
        check(rc == 0 ? strlen(acc) == 28 : rc == LV_EINVAL);
    }
    uint8_t cf[127];
    char reason[200];
    size_t rl = n < sizeof(reason) - 1 ? n : sizeof(reason) - 1;
    memcpy(reason, in, rl);
    reason[rl] = '\0';
    size_t cl = lv_ws_close_frame(cf, 1000 + data[1], reason);
    check(cl >= 2 && cl <= 127 && cf[0] == 0x88 && cf[1] == cl - 2);
    if (cl > 4)
        check(lv_utf8_valid(cf + 4, cl - 4));
    free(wire);
    return 0;
}
