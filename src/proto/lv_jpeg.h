/* lv_jpeg.h - header-only validation of camera frames: is it a JPEG, and is it within the caps.
 * Pixels are never decoded here; the backend decodes. Pure apart from a per-thread decoder handle. */
#ifndef LV_JPEG_H
#define LV_JPEG_H

#include <stddef.h>
#include <stdint.h>

/* Caps on one frame (docs/protocol.md "Caps"). A field of 0 means "no cap" for that field. */
typedef struct {
    size_t max_bytes;    /* whole JPEG, e.g. 4 MiB */
    int max_side;        /* width and height each, e.g. 8192 */
    uint64_t max_pixels; /* width * height, e.g. 16777216 */
} lv_jpeg_caps_t;

typedef struct {
    int width, height;
    int subsamp; /* a TJSAMP_* value from turbojpeg.h (TJSAMP_420 for typical browser frames) */
} lv_jpeg_info_t;

/** Check that p[0..len) is a JPEG whose header parses and whose size is within caps.
 * Checks, in order: len within caps->max_bytes; SOI (FF D8 FF); the declared frame size of the
 * first SOFn marker against max_side/max_pixels (so oversized images are reported as LV_ELIMIT
 * even when libjpeg itself would refuse them); then tjDecompressHeader3() for the authoritative
 * width, height and subsampling. Entropy-coded data after the header is not examined, so a frame
 * cut short inside its scan still passes (browsers always send whole frames; the backend copes).
 * caps may be NULL (no caps); out and why may be NULL. On success fills *out.
 * Returns 0; LV_EINVAL when it is not a JPEG (empty, no SOI, header truncated or unparsable,
 * zero width or height); LV_ELIMIT when over a cap; LV_ENOMEM when the decoder handle cannot be
 * created. *why receives a short static reason on failure, meant for logs and error messages.
 * Thread safety: uses one turbojpeg handle per thread, created lazily on the first call and kept
 * for the thread's life, because tjInitDecompress() allocates a whole libjpeg decompressor and
 * this runs on the loop thread for every frame. Safe to call from several threads at once. */
int lv_jpeg_check(const void *p, size_t len, const lv_jpeg_caps_t *caps, lv_jpeg_info_t *out,
                  const char **why);

/** Destroy the calling thread's turbojpeg handle, if any (the next lv_jpeg_check() makes a new
 * one). Call it before a thread that used lv_jpeg_check() exits, and at shutdown, so leak
 * checkers stay quiet. */
void lv_jpeg_thread_cleanup(void);

#endif
