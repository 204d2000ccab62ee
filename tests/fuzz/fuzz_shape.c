/* fuzz_shape.c - libFuzzer driver for frame shaping (lv_shape_jpeg, the synchronous pure part of
 * lv_shape: header, scaled decode, resampler, re-encode) on arbitrary bytes. Input: 2 bytes of
 * max_side (1..512), 1 of quality, 1 choosing the output buffer's cap (small caps reach LV_ELIMIT),
 * then the JPEG. Checks the contract of lv_shape.h: known return codes only; out untouched
 * (length and bytes before) on anything but 0; a pass-through only when the image already fits;
 * a shaped JPEG that decodes to exactly the size info reports, longest side == max_side.
 * Frames whose header claims more than 4 Mi pixels (but within LV_SHAPE_MAX_PIXELS) are skipped:
 * decoding garbage at 64 Mi pixels takes seconds and would only find timeouts, not bugs.
 * fuzz-sources: src/backend/lv_shape.c src/common/lv_buf.c src/common/lv_common.c
 * fuzz-pkgs: libuv
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "../../src/backend/lv_shape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PREFIX "PREF" /* what out held before the call */
#define FUZZ_MAX_PIXELS (4u << 20)

/* Decode just the header; 0 when it is not one turbojpeg accepts. */
static int header(const unsigned char *p, size_t n, int *w, int *h, int *subsamp, int *cs)
{
    tjhandle tj = tjInitDecompress();
    if (!tj)
        abort();
    *w = *h = 0;
    *subsamp = *cs = -1;
    int ok = tjDecompressHeader3(tj, p, (unsigned long)n, w, h, subsamp, cs) == 0 && *w > 0 && *h > 0;
    tjDestroy(tj);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    int max_side = 1 + (int)((data[0] | (unsigned)data[1] << 8) % 512);
    int quality = 1 + data[2] % 100;
    size_t cap = data[3] < 32 ? sizeof PREFIX - 1 + 64u * data[3] : 32u << 20;
    const unsigned char *jpeg = data + 4;
    size_t len = size - 4;

    int w, h, subsamp, cs;
    if (header(jpeg, len, &w, &h, &subsamp, &cs)) {
        uint64_t px = (uint64_t)w * (uint64_t)h;
        if (px > FUZZ_MAX_PIXELS && px <= LV_SHAPE_MAX_PIXELS)
            return 0;
    }

    /* An exact-size copy: ASan sees any read past the input. */
    unsigned char *in = malloc(len);
    if (!in)
        return 0;
    memcpy(in, jpeg, len);
    lv_buf_t out;
    lv_buf_init(&out, cap);
    if (lv_buf_append(&out, PREFIX, sizeof PREFIX - 1) != 0)
        abort();
    lv_shape_info_t info;
    int rc = lv_shape_jpeg(in, len, max_side, quality, &out, &info);

    if (rc != 0) {
        if (out.len != sizeof PREFIX - 1 || memcmp(out.data, PREFIX, out.len) != 0)
            abort(); /* out must be left as it was */
    }
    switch (rc) {
    case LV_SHAPE_PASSTHROUGH:
        if (info.in_width < 1 || info.in_height < 1 || LV_MAX(info.in_width, info.in_height) > max_side ||
            info.out_bytes != 0 || info.in_bytes != len)
            abort();
        break;
    case 0: {
        if (LV_MAX(info.out_width, info.out_height) != max_side || info.out_width < 1 || info.out_height < 1 ||
            LV_MAX(info.in_width, info.in_height) <= max_side)
            abort();
        if (out.len != sizeof PREFIX - 1 + info.out_bytes || memcmp(out.data, PREFIX, sizeof PREFIX - 1) != 0)
            abort();
        /* the scaled decode is never smaller than the target on its longest side (lv_shape.h) */
        if (LV_MAX(info.decoded_width, info.decoded_height) < max_side || info.decoded_width > info.in_width ||
            info.decoded_height > info.in_height)
            abort();
        /* the output is a JPEG of the size reported, decodable in full */
        int ow, oh, os, ocs;
        const unsigned char *o = (const unsigned char *)out.data + sizeof PREFIX - 1;
        if (!header(o, info.out_bytes, &ow, &oh, &os, &ocs) || ow != info.out_width || oh != info.out_height)
            abort();
        unsigned char *px = malloc((size_t)ow * (size_t)oh * 3);
        tjhandle tj = tjInitDecompress();
        if (!px || !tj)
            abort();
        if (tjDecompress2(tj, o, (unsigned long)info.out_bytes, px, ow, 0, oh, TJPF_RGB, TJFLAG_STOPONWARNING) != 0)
            abort();
        tjDestroy(tj);
        free(px);
        break;
    }
    case LV_EINVAL:
    case LV_ELIMIT:
    case LV_ENOMEM:
        break;
    default:
        abort();
    }
    lv_buf_free(&out);
    free(in);
    return 0;
}
