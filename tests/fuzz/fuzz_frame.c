/* fuzz_frame.c - libFuzzer driver for the binary frame envelope (then the JPEG check behind it).
 * fuzz-sources: src/proto/lv_frame.c src/proto/lv_jpeg.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_frame.h"
#include "lv_jpeg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const lv_jpeg_caps_t caps = {4u << 20, 8192, 16777216u};
    lv_frame_hdr_t h;
    if (lv_frame_parse(data, size, &h) != 0)
        return 0;
    if (!h.jpeg || h.jpeg_len == 0 || h.jpeg < data || h.jpeg + h.jpeg_len != data + size ||
        h.capture_age_ms > LV_FRAME_MAX_AGE_MS)
        abort();
    (void)lv_jpeg_check(h.jpeg, h.jpeg_len, &caps, NULL, NULL);

    /* Re-encoding the parsed header gives back the same fields. */
    if (h.jpeg != data) {
        unsigned char hdr[LV_FRAME_HDR_LEN + 1];
        lv_frame_hdr_t again;
        if (lv_frame_encode_header(hdr, h.credit_id, h.capture_age_ms) != LV_FRAME_HDR_LEN)
            abort();
        hdr[LV_FRAME_HDR_LEN] = 0xFF;
        if (lv_frame_parse(hdr, sizeof(hdr), &again) != 0 || again.credit_id != h.credit_id ||
            again.capture_age_ms != h.capture_age_ms)
            abort();
    }
    return 0;
}
