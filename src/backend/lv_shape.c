/* lv_shape.c - frame shaping: turbojpeg DCT-scaled decode, a separable fixed-point resampler,
 * re-encode; and a uv_queue_work wrapper so it never runs on the loop thread. */
#include "lv_shape.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "lv_common.h"

/*
 * The resampler. Weights are Q8 fixed point, non-negative, and sum to exactly 256 for every
 * output sample, so a weighted sum of 8-bit samples is at most 255 * 256 + 128 < 65536: it fits
 * a 16-bit lane with no overflow and needs no clamping; rounding each weight to 1/256 costs well
 * under one grey level.
 *
 * Separable and fused per output row: the vertical filter makes one intermediate row (16-bit
 * samples, source width) from a few source rows, and the horizontal filter turns it into the
 * output row at once, so the intermediate stays in L1 cache. The vertical filter uses GCC/clang
 * generic vectors (SSE2 on x86-64, NEON on arm64; gcc 12 does not vectorise it at -O2 by
 * itself). The horizontal filter on RGB is SWAR: one unaligned 64-bit load picks up a pixel's
 * three 16-bit samples (r | g << 16 | b << 32 once the fourth lane is masked off), so one
 * multiply-add filters all three channels; no lane can carry into the next, by the bound above.
 */
#define SHAPE_WEIGHT_BITS 8
#define SHAPE_WEIGHT_ONE (1 << SHAPE_WEIGHT_BITS)
#define SHAPE_ROW_PAD 4 /* 16-bit samples after an intermediate row: the 64-bit load overhangs */

typedef uint8_t shape_u8x8 __attribute__((vector_size(8)));
typedef uint16_t shape_u16x8 __attribute__((vector_size(16)));

/* Per-axis plan: output i reads taps[i] source samples from first[i] on, with weights
 * w[i * stride ...]. With uniform set every output has the same number of taps (zero-weight
 * padding), which keeps the horizontal inner loop free of unpredictable branches. */
typedef struct {
    int *first;
    int *taps;
    uint16_t *w;
    int stride;
} axis_plan_t;

static void plan_free(axis_plan_t *p)
{
    free(p->first);
    free(p->taps);
    free(p->w);
    memset(p, 0, sizeof(*p));
}

/*
 * Map in_size samples onto out_size. scale = in/out.
 *   scale > 2: area averaging - each output sample is the mean of the source interval it covers,
 *     partial source samples weighted by their overlap. Exact for any ratio; no aliasing.
 *   scale <= 2: a tent (bilinear) filter widened to max(1, scale) source samples each side, so
 *     plain bilinear when enlarging or keeping size and an antialiased one when shrinking a bit
 *     (a plain 2-tap bilinear would skip source samples and shimmer on fine texture).
 * Taps falling outside the image are dropped and the rest renormalised, so edges do not darken.
 */
static int plan_axis(int in_size, int out_size, int uniform, axis_plan_t *p)
{
    double scale = (double)in_size / (double)out_size;
    int area = scale > 2.0;
    double support = area ? scale / 2.0 : (scale > 1.0 ? scale : 1.0);
    p->stride = LV_MIN((int)ceil(support) * 2 + 2, in_size);
    p->first = malloc((size_t)out_size * sizeof(int));
    p->taps = malloc((size_t)out_size * sizeof(int));
    p->w = malloc((size_t)out_size * (size_t)p->stride * sizeof(uint16_t));
    double *wf = malloc((size_t)p->stride * sizeof(double));
    if (!p->first || !p->taps || !p->w || !wf) {
        free(wf);
        plan_free(p);
        return LV_ENOMEM;
    }
    int most = 1;
    for (int i = 0; i < out_size; i++) {
        double center = (i + 0.5) * scale;
        int lo = LV_MAX((int)floor(center - support), 0);
        int hi = LV_MIN((int)ceil(center + support), in_size); /* exclusive */
        if (hi - lo > p->stride)
            hi = lo + p->stride; /* cannot happen with the sizes above; keeps writes in bounds */
        double sum = 0;
        for (int j = lo; j < hi; j++) {
            double wj;
            if (area) {
                double a = center - support, b = center + support; /* [i*scale, (i+1)*scale) */
                double s0 = j > a ? j : a, s1 = j + 1 < b ? j + 1 : b;
                wj = s1 > s0 ? s1 - s0 : 0;
            } else {
                double d = fabs((j + 0.5 - center) / support);
                wj = d < 1 ? 1 - d : 0;
            }
            wf[j - lo] = wj;
            sum += wj;
        }
        if (sum <= 0) { /* degenerate (cannot happen for in, out >= 1): nearest sample */
            wf[0] = 1;
            sum = 1;
        }
        /* Quantise by rounding the running sum: the weights then add up to exactly
         * SHAPE_WEIGHT_ONE (unit gain, so flat areas stay exactly flat), none goes negative, and
         * each is off by less than one step. */
        uint16_t *w = p->w + (size_t)i * (size_t)p->stride;
        int n = hi - lo;
        double run = 0;
        long prev = 0;
        for (int k = 0; k < n; k++) {
            run += wf[k];
            long upto = lround(run / sum * SHAPE_WEIGHT_ONE);
            w[k] = (uint16_t)(upto - prev);
            prev = upto;
        }
        /* Drop taps that quantised to zero at either end. */
        int skip = 0;
        while (skip < n - 1 && w[skip] == 0)
            skip++;
        while (n > skip + 1 && w[n - 1] == 0)
            n--;
        if (skip)
            memmove(w, w + skip, (size_t)(n - skip) * sizeof(uint16_t));
        p->first[i] = lo + skip;
        p->taps[i] = n - skip;
        most = LV_MAX(most, n - skip);
    }
    free(wf);
    for (int i = 0; uniform && i < out_size; i++) {
        /* Pad with zero weights to `most` taps, moving the window left at the right edge. */
        uint16_t *w = p->w + (size_t)i * (size_t)p->stride;
        int n = p->taps[i], shift = LV_MAX(p->first[i] + most - in_size, 0);
        memmove(w + shift, w, (size_t)n * sizeof(uint16_t));
        memset(w, 0, (size_t)shift * sizeof(uint16_t));
        for (int k = shift + n; k < most; k++)
            w[k] = 0;
        p->first[i] -= shift;
        p->taps[i] = most;
    }
    return 0;
}

/* One intermediate row: row_len samples, the weighted sum of taps source rows. */
static void filter_vertical(const uint8_t *s, size_t src_stride, size_t row_len,
                            const uint16_t *w, int taps, uint16_t *row)
{
    size_t x = 0;
    /* Two 8-lane accumulators per step: independent chains keep both multipliers busy. */
    for (; x + 2 * sizeof(shape_u8x8) <= row_len; x += 2 * sizeof(shape_u8x8)) {
        shape_u16x8 acc0 = {0}, acc1 = {0};
        acc0 += SHAPE_WEIGHT_ONE / 2;
        acc1 += SHAPE_WEIGHT_ONE / 2;
        for (int k = 0; k < taps; k++) {
            const uint8_t *sk = s + (size_t)k * src_stride + x;
            shape_u8x8 v0, v1;
            memcpy(&v0, sk, sizeof v0);
            memcpy(&v1, sk + sizeof v0, sizeof v1);
            acc0 += __builtin_convertvector(v0, shape_u16x8) * w[k];
            acc1 += __builtin_convertvector(v1, shape_u16x8) * w[k];
        }
        acc0 >>= SHAPE_WEIGHT_BITS;
        acc1 >>= SHAPE_WEIGHT_BITS;
        memcpy(row + x, &acc0, sizeof acc0);
        memcpy(row + x + 8, &acc1, sizeof acc1);
    }
    for (; x < row_len; x++) {
        unsigned acc = SHAPE_WEIGHT_ONE / 2;
        for (int k = 0; k < taps; k++)
            acc += w[k] * (unsigned)s[(size_t)k * src_stride + x];
        row[x] = (uint16_t)(acc >> SHAPE_WEIGHT_BITS);
    }
}

/* One output row of dw pixels from an intermediate row (ch interleaved 16-bit samples). */
static void filter_horizontal(const uint16_t *row, int ch, uint8_t *d, int dw,
                              const axis_plan_t *p)
{
    if (ch == 3) {
        const uint64_t half = SHAPE_WEIGHT_ONE / 2;
        const uint64_t round3 = half | half << 16 | half << 32;
        const uint64_t lanes3 = 0xFFFFFFFFFFFFull;
        const int taps = p->taps[0]; /* uniform plan: the same for every x */
        for (int x = 0; x < dw; x++) {
            const uint16_t *sp = row + (size_t)p->first[x] * 3;
            const uint16_t *w = p->w + (size_t)x * (size_t)p->stride;
            uint64_t acc = round3;
#define SHAPE_TAP(k)                                                                               \
    do {                                                                                           \
        uint64_t px;                                                                               \
        memcpy(&px, sp + 3 * (k), sizeof px); /* r, g, b and the next pixel's r: masked */       \
        acc += w[k] * (px & lanes3);                                                               \
    } while (0)
            /* The common small tap counts unrolled: no inner loop, more work in flight. */
            switch (taps) {
            case 2:
                SHAPE_TAP(0);
                SHAPE_TAP(1);
                break;
            case 3:
                SHAPE_TAP(0);
                SHAPE_TAP(1);
                SHAPE_TAP(2);
                break;
            case 4:
                SHAPE_TAP(0);
                SHAPE_TAP(1);
                SHAPE_TAP(2);
                SHAPE_TAP(3);
                break;
            default:
                for (int k = 0; k < taps; k++)
                    SHAPE_TAP(k);
                break;
            }
#undef SHAPE_TAP
            d[0] = (uint8_t)(acc >> SHAPE_WEIGHT_BITS);
            d[1] = (uint8_t)(acc >> (16 + SHAPE_WEIGHT_BITS));
            d[2] = (uint8_t)(acc >> (32 + SHAPE_WEIGHT_BITS));
            d += 3;
        }
        return;
    }
    for (int x = 0; x < dw; x++) {
        const uint16_t *sp = row + (size_t)p->first[x] * (size_t)ch;
        const uint16_t *w = p->w + (size_t)x * (size_t)p->stride;
        for (int c = 0; c < ch; c++) {
            unsigned a = SHAPE_WEIGHT_ONE / 2;
            for (int k = 0; k < p->taps[x]; k++)
                a += w[k] * (unsigned)sp[(size_t)k * (size_t)ch + (size_t)c];
            *d++ = (uint8_t)(a >> SHAPE_WEIGHT_BITS);
        }
    }
}

/* Resample sw x sh -> dw x dh (ch channels, 8 bits each) into dst. */
static int resample(const uint8_t *src, int sw, int sh, int ch, uint8_t *dst, int dw, int dh)
{
    axis_plan_t ph = {0}, pv = {0};
    uint16_t *row = NULL;
    size_t row_len = (size_t)sw * (size_t)ch;
    int rc = plan_axis(sw, dw, 1, &ph);
    if (!rc)
        rc = plan_axis(sh, dh, 0, &pv);
    if (!rc && !(row = calloc(row_len + SHAPE_ROW_PAD, sizeof(uint16_t))))
        rc = LV_ENOMEM;
    for (int y = 0; !rc && y < dh; y++) {
        filter_vertical(src + (size_t)pv.first[y] * row_len, row_len, row_len,
                        pv.w + (size_t)y * (size_t)pv.stride, pv.taps[y], row);
        filter_horizontal(row, ch, dst + (size_t)y * (size_t)dw * (size_t)ch, dw, &ph);
    }
    free(row);
    plan_free(&ph);
    plan_free(&pv);
    return rc;
}

static uint32_t elapsed_us(uint64_t since)
{
    uint64_t d = lv_now_us() - since;
    return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

/* libjpeg-turbo has SIMD inverse DCTs for 8x8, 4x4, 2x2 and 1x1 blocks only, i.e. the scales
 * 1/1, 1/2, 1/4 and 1/8. The other N/8 scales (7/8, 3/4, 5/8, 3/8) run plain C IDCTs and were
 * measured slower than a full-size decode (libjpeg-turbo 2.1.5, x86-64, 1280x720 4:2:0 frame:
 * 1/1 1.6 ms, 7/8 4.6 ms, 3/4 3.4 ms, 5/8 2.7 ms, 1/2 1.2 ms, 3/8 1.5 ms, 1/4 0.9 ms), so they
 * are never worth choosing: decoding bigger and resampling more is cheaper. */
static int fast_factor(tjscalingfactor f)
{
    return f.num == 1 && (f.denom == 1 || f.denom == 2 || f.denom == 4 || f.denom == 8);
}

static int is_cancelled(atomic_int *cancel) { return cancel && atomic_load(cancel); }

/* The whole shaping; cancel (may be NULL) is polled between stages. */
static int shape(const unsigned char *jpeg, size_t len, int max_side, int quality, lv_buf_t *out,
                 lv_shape_info_t *info, atomic_int *cancel)
{
    lv_shape_info_t dummy;
    tjhandle dec = NULL, enc = NULL;
    uint8_t *decoded = NULL, *resized = NULL;
    unsigned char *jbuf = NULL;
    unsigned long jlen = 0;
    int rc = LV_EINVAL;

    if (!info)
        info = &dummy;
    memset(info, 0, sizeof(*info));
    if (!jpeg || !len || !out || max_side < 1 || max_side > LV_SHAPE_MAX_SIDE || quality < 1 ||
        quality > 100 || len > ULONG_MAX)
        return LV_EINVAL;
    info->in_bytes = len;

    uint64_t t0 = lv_now_us();
    if (!(dec = tjInitDecompress()))
        return LV_ENOMEM;
    /* Initialised: for a tables-only datastream (SOI then EOI) TurboJPEG 2.1 returns 0 without
     * writing any of these. */
    int w = 0, h = 0, subsamp = -1, colorspace = -1;
    if (tjDecompressHeader3(dec, jpeg, (unsigned long)len, &w, &h, &subsamp, &colorspace) != 0 ||
        w < 1 || h < 1)
        goto out;
    info->in_width = info->out_width = info->decoded_width = w;
    info->in_height = info->out_height = info->decoded_height = h;
    info->in_subsamp = info->out_subsamp = subsamp;
    info->dct_num = info->dct_denom = 1;
    if ((uint64_t)w * (uint64_t)h > LV_SHAPE_MAX_PIXELS) {
        rc = LV_ELIMIT;
        goto out;
    }
    int longest = LV_MAX(w, h);
    if (longest <= max_side) {
        rc = LV_SHAPE_PASSTHROUGH;
        goto out;
    }
    if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK)
        goto out;
    int gray = colorspace == TJCS_GRAY || subsamp == TJSAMP_GRAY;
    int ch = gray ? 1 : 3;
    int pf = gray ? TJPF_GRAY : TJPF_RGB;

    /* The smallest fast DCT scale that still leaves the longest side >= max_side: libjpeg then
     * skips most of the IDCT work and our resampler has less than 2x left to do (unless the
     * image is over 8x too big, where area averaging takes the rest). TJSCALED rounds up, like
     * libjpeg. */
    int n_factors = 0;
    tjscalingfactor *factors = tjGetScalingFactors(&n_factors);
    tjscalingfactor best = {1, 1};
    int best_long = longest;
    for (int i = 0; factors && i < n_factors; i++) {
        tjscalingfactor f = factors[i];
        if (!fast_factor(f))
            continue;
        int scaled = TJSCALED(longest, f);
        if (scaled >= max_side && scaled < best_long) {
            best = f;
            best_long = scaled;
        }
    }
    int dw = TJSCALED(w, best), dh = TJSCALED(h, best);
    info->dct_num = best.num;
    info->dct_denom = best.denom;
    info->decoded_width = dw;
    info->decoded_height = dh;

    /* Exactly max_side on the longest side, the other in proportion (rounded, at least 1),
     * computed from the original size so the N/8 rounding does not skew the aspect ratio. */
    int ow, oh;
    if (w >= h) {
        ow = max_side;
        oh = (int)(((int64_t)h * max_side * 2 + w) / ((int64_t)w * 2));
    } else {
        oh = max_side;
        ow = (int)(((int64_t)w * max_side * 2 + h) / ((int64_t)h * 2));
    }
    ow = LV_MAX(ow, 1);
    oh = LV_MAX(oh, 1);

    decoded = malloc((size_t)dw * (size_t)dh * (size_t)ch);
    resized = malloc((size_t)ow * (size_t)oh * (size_t)ch);
    if (!decoded || !resized) {
        rc = LV_ENOMEM;
        goto out;
    }
    /* STOPONWARNING: libjpeg reports damaged data as warnings and carries on with grey blocks;
     * TurboJPEG 2.x cannot tell those from fatal errors afterwards, so stop at the first. */
    if (tjDecompress2(dec, jpeg, (unsigned long)len, decoded, dw, 0, dh, pf,
                      TJFLAG_STOPONWARNING) != 0)
        goto out;
    info->decode_us = elapsed_us(t0);
    if (is_cancelled(cancel)) {
        rc = LV_ECLOSED;
        goto out;
    }

    uint64_t t1 = lv_now_us();
    if ((rc = resample(decoded, dw, dh, ch, resized, ow, oh)) != 0)
        goto out;
    info->resize_us = elapsed_us(t1);
    free(decoded);
    decoded = NULL;
    if (is_cancelled(cancel)) {
        rc = LV_ECLOSED;
        goto out;
    }

    uint64_t t2 = lv_now_us();
    int out_samp = gray ? TJSAMP_GRAY
                        : (subsamp >= 0 && subsamp < TJ_NUMSAMP && subsamp != TJSAMP_GRAY)
                              ? subsamp
                              : TJSAMP_420;
    if (!(enc = tjInitCompress())) {
        rc = LV_ENOMEM;
        goto out;
    }
    if (tjCompress2(enc, resized, ow, 0, oh, pf, &jbuf, &jlen, out_samp, quality, 0) != 0) {
        rc = LV_ENOMEM; /* our own pixels are valid: only allocation can fail here */
        goto out;
    }
    if ((rc = lv_buf_append(out, jbuf, jlen)) != 0)
        goto out;
    info->encode_us = elapsed_us(t2);
    info->out_width = ow;
    info->out_height = oh;
    info->out_subsamp = out_samp;
    info->out_bytes = jlen;
    rc = 0;
out:
    if (jbuf)
        tjFree(jbuf);
    if (enc)
        tjDestroy(enc);
    if (dec)
        tjDestroy(dec);
    free(decoded);
    free(resized);
    return rc;
}

int lv_shape_jpeg(const unsigned char *jpeg, size_t len, int max_side, int quality, lv_buf_t *out,
                  lv_shape_info_t *info)
{
    return shape(jpeg, len, max_side, quality, out, info, NULL);
}

/* ---- on the thread pool ---- */

static void shape_work(uv_work_t *work)
{
    lv_shape_req_t *req = LV_CONTAINER_OF(work, lv_shape_req_t, work);
    if (atomic_load(&req->cancelled)) {
        req->rc = LV_ECLOSED;
        return;
    }
    req->rc = shape(req->jpeg, req->len, req->max_side, req->quality, req->out, &req->info,
                    &req->cancelled);
}

/* Loop thread. libuv's queue hand-off (a mutex) orders the pool thread's writes before this. */
static void shape_after(uv_work_t *work, int status)
{
    lv_shape_req_t *req = LV_CONTAINER_OF(work, lv_shape_req_t, work);
    int rc = req->rc;
    if (status == UV_ECANCELED || atomic_load(&req->cancelled)) {
        lv_buf_t *out = req->out;
        if (out->len > req->out_len_at_submit) { /* finished before the mark: drop its output */
            out->len = req->out_len_at_submit;
            out->data[out->len] = '\0';
        }
        rc = LV_ECLOSED;
    }
    req->done(req, rc); /* last touch: req may be freed inside */
}

int lv_shape_submit(uv_loop_t *loop, lv_shape_req_t *req, const unsigned char *jpeg, size_t len,
                    int max_side, int quality, lv_buf_t *out, lv_shape_done_cb done)
{
    if (!loop || !req || !jpeg || !out || !done || max_side < 1 || max_side > LV_SHAPE_MAX_SIDE ||
        quality < 1 || quality > 100)
        return LV_EINVAL;
    memset(&req->info, 0, sizeof(req->info));
    req->jpeg = jpeg;
    req->len = len;
    req->max_side = max_side;
    req->quality = quality;
    req->out = out;
    req->out_len_at_submit = out->len;
    req->done = done;
    req->rc = LV_ECLOSED;
    atomic_init(&req->cancelled, 0);
    if (uv_queue_work(loop, &req->work, shape_work, shape_after) != 0)
        return LV_EINVAL;
    return 0;
}

int lv_shape_cancel(lv_shape_req_t *req)
{
    if (atomic_exchange(&req->cancelled, 1))
        return 1; /* already marked; a second uv_cancel could requeue the cancelled request */
    return uv_cancel((uv_req_t *)&req->work) == 0 ? 0 : 1;
}
