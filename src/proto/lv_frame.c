/* lv_frame.c - binary frame envelope parsing and encoding. */
#include "lv_frame.h"

#include <string.h>

#include "lv_common.h"

static uint32_t get_be32(const unsigned char *b)
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

static void put_be32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

int lv_frame_parse(const void *p, size_t len, lv_frame_hdr_t *out)
{
    const unsigned char *b = p;

    if (!out)
        return LV_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!b)
        return LV_EINVAL;
    /* Bare JPEG: SOI is FF D8, which can never start "LVF1", so the two forms cannot collide. */
    if (len >= 2 && b[0] == 0xFF && b[1] == 0xD8) {
        out->jpeg = b;
        out->jpeg_len = len;
        return 0;
    }
    if (len <= LV_FRAME_HDR_LEN || memcmp(b, LV_FRAME_MAGIC, 4) != 0)
        return LV_EINVAL;
    uint32_t age = get_be32(b + 8);
    out->credit_id = get_be32(b + 4);
    out->capture_age_ms = age > LV_FRAME_MAX_AGE_MS ? LV_FRAME_MAX_AGE_MS : age;
    out->jpeg = b + LV_FRAME_HDR_LEN;
    out->jpeg_len = len - LV_FRAME_HDR_LEN;
    return 0;
}

int lv_frame_encode_header(unsigned char out[LV_FRAME_HDR_LEN], uint32_t credit_id, uint32_t age_ms)
{
    if (!out)
        return LV_EINVAL;
    memcpy(out, LV_FRAME_MAGIC, 4);
    put_be32(out + 4, credit_id);
    put_be32(out + 8, age_ms);
    memset(out + 12, 0, 4);
    return LV_FRAME_HDR_LEN;
}
