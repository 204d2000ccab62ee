/* lv_jpeg.c - JPEG frame validation from the header alone (markers + tjDecompressHeader3). */
#include "lv_jpeg.h"

#include <turbojpeg.h>

#include "lv_common.h"

/* tjInitDecompress() allocates and sets up a full libjpeg decompressor (tens of KB); doing that
 * per frame on the loop thread would dominate the cost of the check, so each thread keeps one. A
 * handle must not be used by two threads at once, hence thread-local rather than global. */
static _Thread_local tjhandle tls_handle;

void lv_jpeg_thread_cleanup(void)
{
    if (tls_handle) {
        tjDestroy(tls_handle);
        tls_handle = NULL;
    }
}

static int fail(const char **why, const char *reason, int rc)
{
    if (why)
        *why = reason;
    return rc;
}

static int over_caps(const lv_jpeg_caps_t *caps, long w, long h)
{
    if (!caps)
        return 0;
    if (caps->max_side > 0 && (w > caps->max_side || h > caps->max_side))
        return 1;
    if (caps->max_pixels > 0 && (uint64_t)w * (uint64_t)h > caps->max_pixels)
        return 1;
    return 0;
}

/* Walk the marker segments after SOI up to the first SOFn and report its declared size.
 * Returns 1 and fills *w and *h when found, 0 otherwise (then libjpeg has the final word). Only
 * used to classify an oversized frame as "too large" rather than "bad": libjpeg refuses sides
 * above 65500 with a generic error, and we never want to hand it more work than needed.
 * ITU T.81 B.1.1: a segment is FF <marker> <u16 length including itself> <payload>; any number
 * of FF fill bytes may precede a marker; SOF0..SOF15 are C0..CF except C4 (DHT), C8 (JPG) and
 * CC (DAC), with payload P(1) Y(2) X(2). */
static int find_sof_size(const unsigned char *b, size_t len, long *w, long *h)
{
    size_t i = 2;
    while (i + 1 < len) {
        if (b[i] != 0xFF)
            return 0;
        while (i < len && b[i] == 0xFF)
            i++;
        if (i >= len)
            return 0;
        unsigned m = b[i++];
        if (m == 0xD8 || m == 0xD9 || m == 0xDA || (m >= 0xD0 && m <= 0xD7) || m == 0x01 || m == 0x00)
            return 0; /* SOI/EOI/SOS/RST/TEM/stuffing before any SOF: leave it to libjpeg */
        if (i + 2 > len)
            return 0;
        size_t seg = ((size_t)b[i] << 8) | b[i + 1];
        if (seg < 2)
            return 0;
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (seg < 7 || i + 7 > len)
                return 0;
            *h = ((long)b[i + 3] << 8) | b[i + 4];
            *w = ((long)b[i + 5] << 8) | b[i + 6];
            return 1;
        }
        if (seg > len - i)
            return 0;
        i += seg;
    }
    return 0;
}

int lv_jpeg_check(const void *p, size_t len, const lv_jpeg_caps_t *caps, lv_jpeg_info_t *out,
                  const char **why)
{
    const unsigned char *b = p;
    long sof_w = 0, sof_h = 0;
    int w = 0, h = 0, subsamp = -1, colorspace = -1;

    if (!b || len == 0)
        return fail(why, "empty frame", LV_EINVAL);
    /* The byte cap first: it is the cheapest check and bounds everything after it. */
    if (caps && caps->max_bytes > 0 && len > caps->max_bytes)
        return fail(why, "frame over the byte cap", LV_ELIMIT);
    /* SOI followed by the FF of the next marker; libjpeg would accept a bit more slack. */
    if (len < 4 || b[0] != 0xFF || b[1] != 0xD8 || b[2] != 0xFF)
        return fail(why, "not a JPEG (no SOI marker)", LV_EINVAL);
    if (find_sof_size(b, len, &sof_w, &sof_h) && over_caps(caps, sof_w, sof_h))
        return fail(why, "image over the side or pixel cap", LV_ELIMIT);
    /* tjDecompressHeader3 takes an unsigned long size; on LP64 that is size_t, but be explicit. */
    if ((unsigned long)len != len)
        return fail(why, "frame over the byte cap", LV_ELIMIT);

    if (!tls_handle) {
        tls_handle = tjInitDecompress();
        if (!tls_handle)
            return fail(why, "cannot create JPEG decoder", LV_ENOMEM);
    }
    /* Parses markers up to the first SOS; a datastream that ends before it (truncated header)
     * or has an unsupported layout fails here. libjpeg errors longjmp back inside turbojpeg,
     * and its warnings are recorded on the handle, not printed. */
    if (tjDecompressHeader3(tls_handle, b, (unsigned long)len, &w, &h, &subsamp, &colorspace) != 0) {
        /* libjpeg-turbo 2.1 longjmps out of jpeg_read_header() without aborting the
         * decompressor, so the handle keeps a half-read marker state and the next (valid)
         * header fails too. Start over with a fresh handle; bad frames are the rare case. */
        lv_jpeg_thread_cleanup();
        return fail(why, "JPEG header does not parse", LV_EINVAL);
    }
    /* A tables-only datastream parses but has no image. */
    if (w <= 0 || h <= 0)
        return fail(why, "JPEG has zero width or height", LV_EINVAL);
    if (over_caps(caps, w, h))
        return fail(why, "image over the side or pixel cap", LV_ELIMIT);

    if (out) {
        out->width = w;
        out->height = h;
        out->subsamp = subsamp;
    }
    return 0;
}
