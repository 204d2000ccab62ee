/* test_shape.c - frame shaping on JPEGs made here: sizes, colours per quadrant, pass-through,
 * odd sizes, grayscale, corrupt input, the thread-pool wrapper on a real loop, and a benchmark. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <uv.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_shape.h"

#define OUT_CAP (16u << 20)

/* Quadrant colours: top-left, top-right, bottom-left, bottom-right. */
static const uint8_t quad_rgb[4][3] = {{200, 40, 40}, {40, 180, 60}, {40, 60, 200}, {220, 200, 50}};
static const uint8_t quad_gray[4] = {40, 100, 160, 220};

static uint32_t hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static int quadrant(int x, int y, int w, int h) { return (y >= h / 2) * 2 + (x >= w / 2); }

/* Pixels of a test image. PAT_QUADRANTS: four flat colours with +-6 of noise (so the encoder
 * has something to do but every quadrant's mean is known). PAT_SCENE: gradients, stripes and
 * mild noise, closer to a camera frame, for the benchmark. */
enum { PAT_QUADRANTS, PAT_SCENE };

static unsigned char *make_pixels(int w, int h, int ch, int pattern)
{
    unsigned char *px = malloc((size_t)w * (size_t)h * (size_t)ch);
    assert_non_null(px);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = px + ((size_t)y * (size_t)w + (size_t)x) * (size_t)ch;
            int noise = (int)(hash32((uint32_t)(y * 131071 + x)) % 13) - 6;
            for (int c = 0; c < ch; c++) {
                int v;
                if (pattern == PAT_QUADRANTS) {
                    int q = quadrant(x, y, w, h);
                    v = (ch == 1 ? quad_gray[q] : quad_rgb[q][c]) + noise;
                } else {
                    /* Scaled to the frame, so every size shows the same scene. */
                    double u = (double)x / w, t = (double)y / h;
                    v = (int)(90 + 80 * u + 40 * t + 30 * c - 20 * c * u);
                    v += (int)(35 * sin(u * 40 + c) * cos(t * 25)); /* soft texture */
                    if ((int)(u * 16) % 3 == 0 && (int)(t * 9) % 2 == 0)
                        v = 255 - v; /* hard edges: "objects" */
                    v += noise / 2;  /* sensor noise, +-3 */
                }
                p[c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    return px;
}

/* A JPEG of w x h in its own exact-size malloc block (ASan sees any over-read). */
static unsigned char *make_jpeg(int w, int h, int subsamp, int pattern, size_t *len)
{
    int gray = subsamp == TJSAMP_GRAY;
    unsigned char *px = make_pixels(w, h, gray ? 1 : 3, pattern);
    tjhandle tj = tjInitCompress();
    assert_non_null(tj);
    unsigned char *jpeg = NULL;
    unsigned long jlen = 0;
    assert_int_equal(tjCompress2(tj, px, w, 0, h, gray ? TJPF_GRAY : TJPF_RGB, &jpeg, &jlen,
                                 subsamp, 85, 0),
                     0);
    unsigned char *copy = malloc(jlen);
    assert_non_null(copy);
    memcpy(copy, jpeg, jlen);
    tjFree(jpeg);
    tjDestroy(tj);
    free(px);
    *len = jlen;
    return copy;
}

typedef struct {
    int w, h, subsamp;
    unsigned char *px; /* RGB, or gray when subsamp == TJSAMP_GRAY */
} decoded_t;

static void decode(const unsigned char *jpeg, size_t len, decoded_t *d)
{
    tjhandle tj = tjInitDecompress();
    assert_non_null(tj);
    int cs;
    assert_int_equal(tjDecompressHeader3(tj, jpeg, (unsigned long)len, &d->w, &d->h, &d->subsamp, &cs), 0);
    int gray = d->subsamp == TJSAMP_GRAY;
    d->px = malloc((size_t)d->w * (size_t)d->h * (gray ? 1u : 3u));
    assert_non_null(d->px);
    assert_int_equal(tjDecompress2(tj, jpeg, (unsigned long)len, d->px, d->w, 0, d->h,
                                   gray ? TJPF_GRAY : TJPF_RGB, 0),
                     0);
    tjDestroy(tj);
}

/* Each quadrant's mean colour over its middle (away from the edges where colours meet and
 * chroma is shared between blocks) must match what was drawn, within tol. */
static void check_quadrants(const decoded_t *d, double tol)
{
    int gray = d->subsamp == TJSAMP_GRAY;
    int ch = gray ? 1 : 3;
    for (int q = 0; q < 4; q++) {
        int x0 = (q & 1) ? d->w / 2 : 0, y0 = (q & 2) ? d->h / 2 : 0;
        int qw = (q & 1) ? d->w - d->w / 2 : d->w / 2, qh = (q & 2) ? d->h - d->h / 2 : d->h / 2;
        int xa = x0 + qw / 5, xb = x0 + qw - qw / 5, ya = y0 + qh / 5, yb = y0 + qh - qh / 5;
        if (xb <= xa)
            xb = xa + 1;
        if (yb <= ya)
            yb = ya + 1;
        double sum[3] = {0, 0, 0};
        long n = 0;
        for (int y = ya; y < yb; y++)
            for (int x = xa; x < xb; x++, n++)
                for (int c = 0; c < ch; c++)
                    sum[c] += d->px[((size_t)y * (size_t)d->w + (size_t)x) * (size_t)ch + (size_t)c];
        for (int c = 0; c < ch; c++) {
            double want = gray ? quad_gray[q] : quad_rgb[q][c];
            double got = sum[c] / (double)n;
            if (fabs(got - want) > tol)
                fail_msg("%dx%d quadrant %d channel %d: mean %.1f, drawn %.0f", d->w, d->h, q, c,
                         got, want);
        }
    }
}

/* Shape and check the size, the chosen DCT scale, the subsampling and the colours. */
static void shape_and_check(int w, int h, int subsamp, int max_side, int want_w, int want_h,
                            int want_num, int want_denom)
{
    size_t len;
    unsigned char *jpeg = make_jpeg(w, h, subsamp, PAT_QUADRANTS, &len);
    lv_buf_t out;
    lv_buf_init(&out, OUT_CAP);
    lv_shape_info_t info;
    assert_int_equal(lv_shape_jpeg(jpeg, len, max_side, 85, &out, &info), 0);
    assert_int_equal(info.in_width, w);
    assert_int_equal(info.in_height, h);
    assert_int_equal(info.out_width, want_w);
    assert_int_equal(info.out_height, want_h);
    assert_int_equal(LV_MAX(info.out_width, info.out_height), max_side);
    assert_int_equal(info.in_bytes, len);
    assert_int_equal(info.out_bytes, out.len);
    assert_int_equal(info.in_subsamp, subsamp);
    assert_int_equal(info.out_subsamp, subsamp);
    assert_true(LV_MAX(info.decoded_width, info.decoded_height) >= max_side);
    if (want_num) {
        assert_int_equal(info.dct_num, want_num);
        assert_int_equal(info.dct_denom, want_denom);
    }
    decoded_t d;
    decode((const unsigned char *)out.data, out.len, &d);
    assert_int_equal(d.w, want_w);
    assert_int_equal(d.h, want_h);
    assert_int_equal(d.subsamp, subsamp);
    check_quadrants(&d, 8.0);
    free(d.px);
    lv_buf_free(&out);
    free(jpeg);
}

/* ---- synchronous ---- */

static void test_common_sizes(void **state)
{
    (void)state;
    /* 3/4 or 5/8 would also reach 448 / 768, but those scales decode slower than 1/1. */
    shape_and_check(640, 480, TJSAMP_420, 448, 448, 336, 1, 1);     /* 640 -> 448 */
    shape_and_check(1280, 720, TJSAMP_420, 768, 768, 432, 1, 1);    /* 1280 -> 768 */
    shape_and_check(1920, 1080, TJSAMP_420, 768, 768, 432, 1, 2);   /* 960 -> 768 */
    shape_and_check(4000, 3000, TJSAMP_420, 768, 768, 576, 1, 4);   /* 1000 -> 768 */
    shape_and_check(4000, 3000, TJSAMP_420, 1000, 1000, 750, 1, 4); /* exact N/8: no resize */
    shape_and_check(2400, 1600, TJSAMP_420, 100, 100, 67, 1, 8);    /* 300 -> 100: area average */
    shape_and_check(1280, 720, TJSAMP_444, 768, 768, 432, 1, 1);    /* subsampling kept */
    shape_and_check(1280, 720, TJSAMP_422, 512, 512, 288, 1, 2);
}

static void test_passthrough(void **state)
{
    (void)state;
    size_t len;
    unsigned char *jpeg = make_jpeg(640, 480, TJSAMP_420, PAT_QUADRANTS, &len);
    lv_buf_t out;
    lv_buf_init(&out, OUT_CAP);
    assert_int_equal(lv_buf_append_str(&out, "keep"), 0);
    char *before = out.data;
    lv_shape_info_t info;
    const int sides[] = {640, 641, 4096};
    for (size_t i = 0; i < LV_ARRAY_LEN(sides); i++) {
        assert_int_equal(lv_shape_jpeg(jpeg, len, sides[i], 80, &out, &info), LV_SHAPE_PASSTHROUGH);
        assert_int_equal(out.len, 4);
        assert_ptr_equal(out.data, before);
        assert_string_equal(out.data, "keep");
        assert_int_equal(info.in_width, 640);
        assert_int_equal(info.in_height, 480);
        assert_int_equal(info.out_width, 640);
        assert_int_equal(info.out_height, 480);
        assert_int_equal(info.out_bytes, 0);
    }
    assert_int_equal(lv_shape_jpeg(jpeg, len, 640, 80, &out, NULL), LV_SHAPE_PASSTHROUGH);
    /* One pixel over: shaped, and appended after what out held. */
    assert_int_equal(lv_shape_jpeg(jpeg, len, 639, 80, &out, &info), 0);
    assert_int_equal(info.out_width, 639);
    assert_int_equal(info.out_height, 479); /* 480 * 639 / 640 = 479.25 */
    assert_memory_equal(out.data, "keep", 4);
    assert_int_equal(out.len, 4 + info.out_bytes);
    assert_int_equal((unsigned char)out.data[4], 0xFF);
    assert_int_equal((unsigned char)out.data[5], 0xD8);
    lv_buf_free(&out);
    free(jpeg);
}

static void test_exact_longest_side(void **state)
{
    (void)state;
    size_t len_l, len_p;
    unsigned char *land = make_jpeg(1280, 720, TJSAMP_420, PAT_QUADRANTS, &len_l);
    unsigned char *port = make_jpeg(720, 1280, TJSAMP_420, PAT_QUADRANTS, &len_p);
    const int sides[] = {1, 7, 100, 257, 320, 512, 640, 767, 768, 1000, 1279};
    for (size_t i = 0; i < LV_ARRAY_LEN(sides); i++) {
        int s = sides[i];
        int short_side = LV_MAX(1, (int)lround(720.0 * s / 1280.0));
        lv_buf_t out;
        lv_shape_info_t info;
        lv_buf_init(&out, OUT_CAP);
        assert_int_equal(lv_shape_jpeg(land, len_l, s, 80, &out, &info), 0);
        assert_int_equal(info.out_width, s);
        assert_int_equal(info.out_height, short_side);
        decoded_t d;
        decode((const unsigned char *)out.data, out.len, &d);
        assert_int_equal(d.w, s);
        assert_int_equal(d.h, short_side);
        if (s >= 64)
            check_quadrants(&d, 10.0);
        free(d.px);
        lv_buf_reset(&out);
        assert_int_equal(lv_shape_jpeg(port, len_p, s, 80, &out, &info), 0);
        assert_int_equal(info.out_width, short_side);
        assert_int_equal(info.out_height, s);
        decode((const unsigned char *)out.data, out.len, &d);
        assert_int_equal(d.w, short_side);
        assert_int_equal(d.h, s);
        if (s >= 64)
            check_quadrants(&d, 10.0);
        free(d.px);
        lv_buf_free(&out);
    }
    free(land);
    free(port);
}

static void test_odd_sizes(void **state)
{
    (void)state;
    const struct {
        int w, h, max_side, want_w, want_h;
    } cases[] = {
        {1281, 721, 512, 512, 288}, /* 721 * 512 / 1281 = 288.2 */
        {1279, 719, 768, 768, 432}, /* 431.7 */
        {999, 333, 500, 500, 167},  /* 166.7 */
        {17, 2000, 100, 1, 100},    /* 0.85 rounds to 1 */
        {2000, 3, 64, 64, 1},       /* 0.096: at least 1 */
        {1001, 1001, 1000, 1000, 1000},
        {4097, 2049, 1023, 1023, 512}, /* 511.6 */
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        size_t len;
        unsigned char *jpeg = make_jpeg(cases[i].w, cases[i].h, TJSAMP_420, PAT_QUADRANTS, &len);
        lv_buf_t out;
        lv_shape_info_t info;
        lv_buf_init(&out, OUT_CAP);
        assert_int_equal(lv_shape_jpeg(jpeg, len, cases[i].max_side, 80, &out, &info), 0);
        assert_int_equal(info.out_width, cases[i].want_w);
        assert_int_equal(info.out_height, cases[i].want_h);
        decoded_t d;
        decode((const unsigned char *)out.data, out.len, &d);
        assert_int_equal(d.w, cases[i].want_w);
        assert_int_equal(d.h, cases[i].want_h);
        if (d.w >= 64 && d.h >= 64)
            check_quadrants(&d, 10.0);
        free(d.px);
        lv_buf_free(&out);
        free(jpeg);
    }
}

static void test_grayscale(void **state)
{
    (void)state;
    shape_and_check(1280, 720, TJSAMP_GRAY, 768, 768, 432, 1, 1);
    shape_and_check(4000, 3000, TJSAMP_GRAY, 300, 300, 225, 1, 8); /* 500 -> 300 */
}

/* Offset of the first SOF0 marker (FF C0), or 0. */
static size_t find_sof0(const unsigned char *b, size_t len)
{
    size_t i = 2;
    while (i + 4 <= len && b[i] == 0xFF) {
        if (b[i + 1] == 0xC0)
            return i;
        i += 2 + (((size_t)b[i + 2] << 8) | b[i + 3]);
    }
    return 0;
}

static void test_corrupt_and_limits(void **state)
{
    (void)state;
    size_t len;
    unsigned char *jpeg = make_jpeg(1280, 720, TJSAMP_420, PAT_QUADRANTS, &len);
    lv_buf_t out;
    lv_buf_init(&out, OUT_CAP);
    assert_int_equal(lv_buf_append_str(&out, "x"), 0);

    /* Not a JPEG at all. */
    static const unsigned char junk[] = "GIF89a this is not a jpeg at all, not even close....";
    assert_int_equal(lv_shape_jpeg(junk, sizeof junk, 512, 80, &out, NULL), LV_EINVAL);
    /* Cut short: the header parses, the scan does not finish. */
    assert_int_equal(lv_shape_jpeg(jpeg, len / 2, 512, 80, &out, NULL), LV_EINVAL);
    assert_int_equal(lv_shape_jpeg(jpeg, 300, 512, 80, &out, NULL), LV_EINVAL);
    assert_int_equal(lv_shape_jpeg(jpeg, 2, 512, 80, &out, NULL), LV_EINVAL);
    /* SOI then EOI: a "tables-only" datastream, which parses but has no image (TurboJPEG 2.1
     * reports success and leaves the size unwritten; valgrind caught this once). */
    static const unsigned char tables_only[] = {0xFF, 0xD8, 0xFF, 0xD9};
    assert_int_equal(lv_shape_jpeg(tables_only, sizeof tables_only, 512, 80, &out, NULL), LV_EINVAL);
    /* Garbage over the tables and the first part of the scan. */
    unsigned char *bad = malloc(len);
    assert_non_null(bad);
    memcpy(bad, jpeg, len);
    memset(bad + 200, 0x55, 400);
    assert_int_equal(lv_shape_jpeg(bad, len, 512, 80, &out, NULL), LV_EINVAL);
    /* Zero width in the frame header. */
    memcpy(bad, jpeg, len);
    size_t sof = find_sof0(bad, len);
    assert_true(sof > 0);
    bad[sof + 7] = 0;
    bad[sof + 8] = 0;
    assert_int_equal(lv_shape_jpeg(bad, len, 512, 80, &out, NULL), LV_EINVAL);
    /* Over 64 Mi pixels (9000 x 8000 declared): refused from the header, before any decoding. */
    memcpy(bad, jpeg, len);
    bad[sof + 5] = 8000 >> 8;
    bad[sof + 6] = 8000 & 0xFF;
    bad[sof + 7] = 9000 >> 8;
    bad[sof + 8] = 9000 & 0xFF;
    assert_int_equal(lv_shape_jpeg(bad, len, 512, 80, &out, NULL), LV_ELIMIT);
    free(bad);

    /* Arguments. */
    assert_int_equal(lv_shape_jpeg(NULL, len, 512, 80, &out, NULL), LV_EINVAL);
    assert_int_equal(lv_shape_jpeg(jpeg, 0, 512, 80, &out, NULL), LV_EINVAL);
    assert_int_equal(lv_shape_jpeg(jpeg, len, 512, 80, NULL, NULL), LV_EINVAL);
    assert_int_equal(lv_shape_jpeg(jpeg, len, 0, 80, &out, NULL), LV_EINVAL);
    assert_int_equal(lv_shape_jpeg(jpeg, len, LV_SHAPE_MAX_SIDE + 1, 80, &out, NULL), LV_EINVAL);
    assert_int_equal(lv_shape_jpeg(jpeg, len, 512, 0, &out, NULL), LV_EINVAL);
    assert_int_equal(lv_shape_jpeg(jpeg, len, 512, 101, &out, NULL), LV_EINVAL);

    /* out's cap too small for the result: LV_ELIMIT, out as it was. */
    lv_buf_t tiny;
    lv_buf_init(&tiny, 1000);
    assert_int_equal(lv_shape_jpeg(jpeg, len, 512, 80, &tiny, NULL), LV_ELIMIT);
    assert_int_equal(tiny.len, 0);
    lv_buf_free(&tiny);

    /* None of the failures above touched out. */
    assert_int_equal(out.len, 1);
    assert_string_equal(out.data, "x");
    lv_buf_free(&out);
    free(jpeg);
}

/* ---- on a real uv loop ---- */

#define N_JOBS 20

typedef struct {
    lv_shape_req_t req;
    lv_buf_t out;
    int rc;
    int calls;
    int want_w, want_h;
    int *done_count;
} job_t;

static void job_done(lv_shape_req_t *req, int rc)
{
    job_t *j = LV_CONTAINER_OF(req, job_t, req);
    assert_ptr_equal(req->data, j);
    j->rc = rc;
    j->calls++;
    (*j->done_count)++;
}

static void test_async_concurrent(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    const struct {
        int w, h, max_side, want_w, want_h;
    } kinds[] = {
        {1280, 720, 768, 768, 432},
        {1920, 1080, 768, 768, 432},
        {640, 480, 448, 448, 336},
        {4000, 3000, 768, 768, 576},
    };
    unsigned char *jpegs[LV_ARRAY_LEN(kinds)];
    size_t lens[LV_ARRAY_LEN(kinds)];
    for (size_t k = 0; k < LV_ARRAY_LEN(kinds); k++)
        jpegs[k] = make_jpeg(kinds[k].w, kinds[k].h, TJSAMP_420, PAT_QUADRANTS, &lens[k]);

    int done_count = 0;
    job_t *jobs = calloc(N_JOBS, sizeof(job_t));
    assert_non_null(jobs);
    for (int i = 0; i < N_JOBS; i++) {
        size_t k = (size_t)i % LV_ARRAY_LEN(kinds);
        job_t *j = &jobs[i];
        lv_buf_init(&j->out, OUT_CAP);
        j->want_w = kinds[k].want_w;
        j->want_h = kinds[k].want_h;
        j->done_count = &done_count;
        j->rc = 12345;
        j->req.data = j;
        assert_int_equal(lv_shape_submit(&loop, &j->req, jpegs[k], lens[k], kinds[k].max_side, 80,
                                         &j->out, job_done),
                         0);
    }
    /* The last one is still queued behind 19 others on a 4-thread pool: taken off the queue. */
    const int cancelled = N_JOBS - 1;
    int crc = lv_shape_cancel(&jobs[cancelled].req);
    assert_true(crc == 0 || crc == 1);
    assert_int_equal(lv_shape_cancel(&jobs[cancelled].req), 1); /* twice: harmless */
    assert_int_equal(done_count, 0); /* done never runs inside submit or cancel */

    uint64_t t0 = lv_now_us();
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    uint64_t wall = lv_now_us() - t0;
    assert_int_equal(done_count, N_JOBS);
    for (int i = 0; i < N_JOBS; i++) {
        job_t *j = &jobs[i];
        assert_int_equal(j->calls, 1);
        if (i == cancelled) {
            assert_int_equal(j->rc, LV_ECLOSED);
            assert_int_equal(j->out.len, 0);
        } else {
            assert_int_equal(j->rc, 0);
            assert_int_equal(j->req.info.out_width, j->want_w);
            assert_int_equal(j->req.info.out_height, j->want_h);
            decoded_t d;
            decode((const unsigned char *)j->out.data, j->out.len, &d);
            assert_int_equal(d.w, j->want_w);
            assert_int_equal(d.h, j->want_h);
            check_quadrants(&d, 8.0);
            free(d.px);
        }
        lv_buf_free(&j->out);
    }
    print_message("async: %d shapes (1 cancelled %s start) in %.1f ms wall on the uv pool\n",
                  N_JOBS - 1, crc == 0 ? "before" : "after", (double)wall / 1000.0);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(jobs);
    for (size_t k = 0; k < LV_ARRAY_LEN(kinds); k++)
        free(jpegs[k]);
}

/* Cancel after the work has finished but before done was delivered: the result is dropped. */
static void test_async_cancel_after_work(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    size_t len;
    unsigned char *jpeg = make_jpeg(640, 480, TJSAMP_420, PAT_QUADRANTS, &len);
    int done_count = 0;
    job_t j;
    memset(&j, 0, sizeof j);
    lv_buf_init(&j.out, OUT_CAP);
    assert_int_equal(lv_buf_append_str(&j.out, "prefix"), 0);
    j.done_count = &done_count;
    j.req.data = &j;
    assert_int_equal(lv_shape_submit(&loop, &j.req, jpeg, len, 320, 80, &j.out, job_done), 0);
    uv_sleep(300); /* a 640x480 shape takes about a millisecond; the loop has not run */
    assert_int_equal(lv_shape_cancel(&j.req), 1);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(done_count, 1);
    assert_int_equal(j.rc, LV_ECLOSED);
    assert_int_equal(j.out.len, 6); /* its output was appended, then taken back */
    assert_string_equal(j.out.data, "prefix");

    /* The same req again, now not cancelled: pass-through and errors arrive through done. */
    done_count = 0;
    assert_int_equal(lv_shape_submit(&loop, &j.req, jpeg, len, 640, 80, &j.out, job_done), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(j.rc, LV_SHAPE_PASSTHROUGH);
    assert_int_equal(j.req.info.in_width, 640);
    assert_int_equal(lv_shape_submit(&loop, &j.req, jpeg, len / 3, 320, 80, &j.out, job_done), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(j.rc, LV_EINVAL);
    assert_int_equal(done_count, 2);
    assert_int_equal(j.out.len, 6);

    /* Bad arguments are refused at once and done is never called. */
    assert_int_equal(lv_shape_submit(&loop, &j.req, jpeg, len, 0, 80, &j.out, job_done), LV_EINVAL);
    assert_int_equal(lv_shape_submit(&loop, &j.req, jpeg, len, 320, 101, &j.out, job_done), LV_EINVAL);
    assert_int_equal(lv_shape_submit(&loop, &j.req, jpeg, len, 320, 80, &j.out, NULL), LV_EINVAL);
    assert_int_equal(lv_shape_submit(NULL, &j.req, jpeg, len, 320, 80, &j.out, job_done), LV_EINVAL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(done_count, 2);

    lv_buf_free(&j.out);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(jpeg);
}

/* The caller may free the job (and the input) inside done. */
typedef struct {
    lv_shape_req_t req;
    lv_buf_t out;
    unsigned char *input;
    int *results;
} heap_job_t;

static void heap_job_done(lv_shape_req_t *req, int rc)
{
    heap_job_t *j = LV_CONTAINER_OF(req, heap_job_t, req);
    if (rc == 0)
        (*j->results)++;
    lv_buf_free(&j->out);
    free(j->input);
    free(j);
}

static void test_async_free_in_done(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int results = 0;
    for (int i = 0; i < 6; i++) {
        heap_job_t *j = calloc(1, sizeof(*j));
        assert_non_null(j);
        size_t len;
        j->input = make_jpeg(800 + i, 600, TJSAMP_420, PAT_SCENE, &len);
        j->results = &results;
        lv_buf_init(&j->out, OUT_CAP);
        assert_int_equal(lv_shape_submit(&loop, &j->req, j->input, len, 400, 80, &j->out,
                                         heap_job_done),
                         0);
        if (i == 5)
            lv_shape_cancel(&j->req);
    }
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(results, 5);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- benchmark: printed, not asserted ---- */

static void bench_one(int w, int h, int max_side, int pattern, int iters)
{
    size_t len;
    unsigned char *jpeg = make_jpeg(w, h, TJSAMP_420, pattern, &len);
    lv_buf_t out;
    lv_buf_init(&out, OUT_CAP);
    lv_shape_info_t info;
    uint64_t best = UINT64_MAX, total = 0, dec = 0, rs = 0, enc = 0;
    assert_int_equal(lv_shape_jpeg(jpeg, len, max_side, 80, &out, &info), 0); /* warm-up */
    for (int i = 0; i < iters; i++) {
        lv_buf_reset(&out);
        uint64_t t0 = lv_now_us();
        assert_int_equal(lv_shape_jpeg(jpeg, len, max_side, 80, &out, &info), 0);
        uint64_t dt = lv_now_us() - t0;
        total += dt;
        best = LV_MIN(best, dt);
        dec += info.decode_us;
        rs += info.resize_us;
        enc += info.encode_us;
    }
    print_message("shape %4dx%-4d -> %-4d (%dx%d, dct %d/%d, %s %5.1f KB -> %5.1f KB q80): "
                  "mean %6.0f us, min %6llu us  [decode %5.0f, resize %4.0f, encode %4.0f]\n",
                  w, h, max_side, info.out_width, info.out_height, info.dct_num, info.dct_denom,
                  pattern == PAT_SCENE ? "scene" : "quads", (double)len / 1024.0,
                  (double)info.out_bytes / 1024.0, (double)total / iters, (unsigned long long)best,
                  (double)dec / iters, (double)rs / iters, (double)enc / iters);
    lv_buf_free(&out);
    free(jpeg);
}

static void test_bench(void **state)
{
    (void)state;
    const char *it = getenv("LV_SHAPE_BENCH_ITERS");
    int iters = it ? (int)strtol(it, NULL, 10) : 30;
    if (iters < 1)
        iters = 1;
    bench_one(1280, 720, 768, PAT_SCENE, iters);
    bench_one(1920, 1080, 768, PAT_SCENE, iters);
    bench_one(640, 480, 448, PAT_SCENE, iters);
    bench_one(1280, 720, 768, PAT_QUADRANTS, iters);
    bench_one(1920, 1080, 768, PAT_QUADRANTS, iters);
    bench_one(640, 480, 448, PAT_QUADRANTS, iters);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_sizes),
        cmocka_unit_test(test_passthrough),
        cmocka_unit_test(test_exact_longest_side),
        cmocka_unit_test(test_odd_sizes),
        cmocka_unit_test(test_grayscale),
        cmocka_unit_test(test_corrupt_and_limits),
        cmocka_unit_test(test_async_concurrent),
        cmocka_unit_test(test_async_cancel_after_work),
        cmocka_unit_test(test_async_free_in_done),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
