/* lv_shape.h - frame shaping: scale a JPEG down to a model's useful size (scaled decode, own
 * resampler, re-encode), synchronously or on the libuv thread pool. */
#ifndef LV_SHAPE_H
#define LV_SHAPE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_buf.h"

/** lv_shape_jpeg() result: the image already fits; out was not touched (send the original). */
#define LV_SHAPE_PASSTHROUGH 1
/** Largest input accepted, in pixels (width * height): 64 Mi, e.g. 8192 x 8192. */
#define LV_SHAPE_MAX_PIXELS (64u * 1024u * 1024u)
/** Largest max_side accepted. */
#define LV_SHAPE_MAX_SIDE 16384

/** What one shaping did. Times are wall-clock microseconds on the thread that did the work. */
typedef struct {
    int in_width, in_height;   /* the input's size (also filled for a pass-through) */
    int out_width, out_height; /* the output's size; equal to the input's for a pass-through */
    int dct_num, dct_denom;    /* the DCT scaling factor decoded at, e.g. 1/2 (1/1 if none) */
    int decoded_width, decoded_height; /* the size after the scaled decode */
    int in_subsamp, out_subsamp;       /* TJSAMP_* values of turbojpeg.h */
    size_t in_bytes, out_bytes;        /* JPEG sizes; out_bytes is 0 for a pass-through */
    uint32_t decode_us, resize_us, encode_us;
} lv_shape_info_t;

/**
 * Shape one JPEG so that its longest side is exactly max_side.
 *
 * When the longest side is already <= max_side, returns LV_SHAPE_PASSTHROUGH (1) without
 * touching out. Otherwise decodes at the smallest libjpeg DCT scale (from tjGetScalingFactors)
 * whose longest side is still >= max_side, among 1/1, 1/2, 1/4 and 1/8 only: the other N/8
 * scales have no SIMD IDCT in libjpeg-turbo and decode slower than the full size does (numbers
 * in lv_shape.c). Then resamples to exactly max_side on the longest side (the other side scaled
 * in proportion and rounded, at least 1) with a separable resampler of its own (bilinear,
 * widened to stay antialiased, when shrinking by up to 2x; exact area averaging beyond), and
 * encodes at quality (1..100) with the input's chroma subsampling (4:2:0 when libjpeg reports
 * none it knows). Grayscale stays grayscale; colour is decoded as RGB.
 *
 * The new JPEG is appended to out (out->len grows by info->out_bytes); on any failure out is
 * left as it was. It carries pixels only: EXIF, ICC and comment markers are not copied and an
 * EXIF orientation is not applied (browser and camera frames carry none). info may be NULL; when given it is filled on success and pass-through (on
 * failure its contents are unspecified).
 *
 * Returns 0 (shaped), LV_SHAPE_PASSTHROUGH, or:
 *   LV_EINVAL  NULL jpeg or out, len 0, max_side outside 1..LV_SHAPE_MAX_SIDE, quality outside
 *              1..100; or the bytes are not a JPEG libjpeg can decode completely. Any libjpeg
 *              warning counts (truncated data, "extraneous bytes", bad Huffman codes): such a
 *              frame is refused rather than shaped into a half-grey picture. CMYK/YCCK input is
 *              refused too (no colour conversion to RGB).
 *   LV_ELIMIT  more than LV_SHAPE_MAX_PIXELS pixels, or out's cap is too small for the result.
 *   LV_ENOMEM  allocation failed.
 *
 * Memory: allocates the decoded and resampled pixels (about 3 bytes per pixel of the scaled
 * decode plus the output) and frees them before returning.
 * Thread safety: pure apart from allocation; each call makes and destroys its own turbojpeg
 * handles (measured at under a microsecond each, against milliseconds of pixel work), so any
 * number of threads may call it at once with no per-thread state left behind.
 */
int lv_shape_jpeg(const unsigned char *jpeg, size_t len, int max_side, int quality, lv_buf_t *out,
                  lv_shape_info_t *info);

typedef struct lv_shape_req lv_shape_req_t;

/** Completion callback: runs on the loop thread, exactly once per accepted submit. rc is as
 * lv_shape_jpeg() returns, or LV_ECLOSED when the request was cancelled. */
typedef void (*lv_shape_done_cb)(lv_shape_req_t *req, int rc);

/**
 * One asynchronous shaping. The caller owns the memory, usually embedded in its job struct
 * (get back with LV_CONTAINER_OF), and may keep its own pointer in data. Only data and info are
 * for the caller; the rest is private. info is valid inside done when rc is 0 or
 * LV_SHAPE_PASSTHROUGH.
 */
struct lv_shape_req {
    void *data;           /* the caller's; never touched here */
    lv_shape_info_t info; /* filled by the work, read in done */

    /* private */
    uv_work_t work;
    const unsigned char *jpeg;
    size_t len;
    int max_side, quality;
    lv_buf_t *out;
    size_t out_len_at_submit;
    lv_shape_done_cb done;
    int rc;
    atomic_int cancelled;
};

/**
 * Shape jpeg[0..len) on the libuv thread pool (uv_queue_work); done(req, rc) then runs on the
 * loop thread, on a later loop iteration, never from inside this call.
 *
 * Lifetimes, from a successful submit until done has been called:
 *   - req, the input bytes and out must stay valid and untouched (out is written by a pool
 *     thread). The caller must not free or reuse any of them, even after lv_shape_cancel().
 *   - done is the last time this module touches req: inside done or any time after, the caller
 *     may free req (or the job embedding it), the input and out, or submit req again.
 * On rc 0 the shaped JPEG has been appended to out; on any other rc out holds what it held at
 * submit (its allocation may have grown).
 * The pool is shared with other libuv work (file system, DNS, the system monitor) and has
 * UV_THREADPOOL_SIZE threads (4 by default): callers should bound how many shapes they keep in
 * flight (the scheduler's per-backend windows do).
 * A caller that already knows the frame's size (lv_jpeg_check() gives it for 0.5 us) should not
 * submit frames that fit: the pass-through answer costs a trip through the pool.
 * Must be called on the loop's thread. Returns 0 (done will be called), or LV_EINVAL for NULL
 * arguments or max_side/quality out of range (done will not be called).
 */
int lv_shape_submit(uv_loop_t *loop, lv_shape_req_t *req, const unsigned char *jpeg, size_t len,
                    int max_side, int quality, lv_buf_t *out, lv_shape_done_cb done);

/**
 * Cancel a submitted request whose done has not run yet (on the loop thread only). If the work
 * has not started, it is taken off the pool's queue (uv_cancel) and never runs. If it is running
 * or has finished, it is marked: a running shape stops at its next stage boundary, its output is
 * discarded and out restored. Either way done still runs exactly once, later, on the loop thread,
 * with rc LV_ECLOSED, and until then req, the input and out must stay valid (see
 * lv_shape_submit()). Returns 0 when the work was dequeued before starting, 1 when it was
 * already running or done and only marked (and on any later call for the same submit, which is
 * harmless). Calling it after done has run is a use after free.
 */
int lv_shape_cancel(lv_shape_req_t *req);

#endif
