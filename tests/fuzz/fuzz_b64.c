/* fuzz_b64.c - libFuzzer driver for base64: lv_b64_encode (what every frame goes through on its
 * way to a backend) round-tripped through fakevlm's decoder (the other end in every test), and
 * that decoder on arbitrary input against a reference written here from RFC 4648 plus its
 * documented leniency (padding optional, only at the end). The first byte picks the output cap,
 * so the all-or-nothing LV_ELIMIT path is reached too.
 * fuzz-sources: src/proto/lv_b64.c src/common/lv_buf.c src/common/lv_common.c src/common/lv_rand.c
 * fuzz-sources: tools/fakevlm/fv_chat.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_b64.h"
#include "lv_buf.h"
#include "lv_common.h"
#include "../../tools/fakevlm/fv_chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PREFIX "b64:"

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Reference decoder: up to two '=' at the very end are dropped, then every character must be in
 * the alphabet and the length must not leave a lone character (len % 4 == 1). Bits below a final
 * partial group are ignored, as fv_base64_decode does. -1 when invalid. */
static long ref_decode(const unsigned char *in, size_t len, unsigned char *out)
{
    if (len >= 1 && in[len - 1] == '=')
        len--;
    if (len >= 1 && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const unsigned char *p = data + 1;
    size_t n = size - 1;
    size_t enc_len = lv_b64_encoded_len(n);
    if (enc_len != (n + 2) / 3 * 4)
        abort();

    /* 1. encode into a buffer whose cap may be too small by a few bytes */
    size_t room = data[0] & 0x80 ? enc_len - LV_MIN(enc_len, (size_t)(data[0] & 7)) : enc_len + (data[0] & 7);
    lv_buf_t out;
    lv_buf_init(&out, sizeof PREFIX - 1 + room);
    if (lv_buf_append(&out, PREFIX, sizeof PREFIX - 1) != 0)
        abort();
    int rc = lv_b64_encode(&out, n ? p : NULL, n);
    if (room < enc_len) {
        if (rc != LV_ELIMIT || out.len != sizeof PREFIX - 1 || memcmp(out.data, PREFIX, out.len) != 0)
            abort();
    } else {
        if (rc != 0 || out.len != sizeof PREFIX - 1 + enc_len || memcmp(out.data, PREFIX, sizeof PREFIX - 1) != 0)
            abort();
        const char *e = out.data + sizeof PREFIX - 1;
        for (size_t i = 0; i < enc_len; i++) /* alphabet, padding only in the last two places */
            if (b64_value((unsigned char)e[i]) < 0 && !(e[i] == '=' && i + 2 >= enc_len))
                abort();
        if (n && out.data[out.len] != '\0')
            abort();
        /* 2. round trip through fakevlm's decoder, with exactly enough room */
        unsigned char *back = malloc(n + 1);
        size_t back_len = 0;
        if (!back || fv_base64_decode(e, enc_len, back, n, &back_len) != 0 || back_len != n ||
            (n && memcmp(back, p, n) != 0))
            abort();
        free(back);
    }
    lv_buf_free(&out);

    /* 3. the decoder on arbitrary text, against the reference */
    unsigned char *in = malloc(n ? n : 1), *got = malloc(n + 3), *want = malloc(n + 3);
    if (!in || !got || !want)
        abort();
    memcpy(in, p, n); /* exact-size copy: ASan sees over-reads */
    size_t got_len = 0;
    rc = fv_base64_decode((const char *)in, n, got, n + 3, &got_len);
    long want_len = ref_decode(in, n, want);
    if (want_len < 0 ? rc != LV_EINVAL : rc != 0 || got_len != (size_t)want_len || memcmp(got, want, got_len) != 0)
        abort();
    /* and with too little room: LV_ELIMIT, never a write past out_cap */
    if (want_len > 0) {
        unsigned char *tight = malloc((size_t)want_len - 1 ? (size_t)want_len - 1 : 1);
        if (!tight || fv_base64_decode((const char *)in, n, tight, (size_t)want_len - 1, &got_len) != LV_ELIMIT)
            abort();
        free(tight);
    }
    free(in);
    free(got);
    free(want);
    return 0;
}
