/* lv_frame.h - the binary WebSocket frame envelope (docs/protocol.md "Frames"): a bare JPEG or
 * "LVF1" + credit id + capture age + reserved, then the JPEG. Pure; the JPEG itself is checked by
 * lv_jpeg_check(). */
#ifndef LV_FRAME_H
#define LV_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define LV_FRAME_MAGIC "LVF1"
#define LV_FRAME_HDR_LEN 16
/* Capture ages above an hour are clock nonsense from the page; cap them so metrics stay sane. */
#define LV_FRAME_MAX_AGE_MS 3600000u

typedef struct {
    uint32_t credit_id;      /* 0 = unsolicited (always 0 for a bare JPEG) */
    uint32_t capture_age_ms; /* as sent, capped at LV_FRAME_MAX_AGE_MS; 0 for a bare JPEG */
    const unsigned char *jpeg; /* view into the parsed message, not owned */
    size_t jpeg_len;
} lv_frame_hdr_t;

/** Split one binary message into header fields and the JPEG bytes.
 * A message starting FF D8 is a bare JPEG; one starting "LVF1" carries the 16-byte header
 * (big-endian u32 credit id at 4, capture age at 8; bytes 12..15 are reserved and ignored so a
 * later protocol revision can use them) and must have at least one byte after it.
 * out->jpeg points into p, so it is valid only as long as the message buffer.
 * Returns 0, or LV_EINVAL for anything else (NULL, too short, unknown start); *out is zeroed then. */
int lv_frame_parse(const void *p, size_t len, lv_frame_hdr_t *out);

/** Write the 16-byte "LVF1" header (reserved bytes zero) into out, for the load generator and
 * tests. Returns LV_FRAME_HDR_LEN (the bytes written), or LV_EINVAL when out is NULL. */
int lv_frame_encode_header(unsigned char out[LV_FRAME_HDR_LEN], uint32_t credit_id, uint32_t age_ms);

#endif
