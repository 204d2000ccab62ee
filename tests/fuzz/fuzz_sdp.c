/* fuzz_sdp.c - libFuzzer driver for the WebRTC offer check (lv_sdp.h).
 * fuzz-sources: src/proto/lv_sdp.c src/common/lv_common.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_sdp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lv_sdp_info_t info;
    char why[256];
    int rc = lv_sdp_check((const char *)data, size, NULL, &info, why, sizeof(why));
    if (rc == 0) {
        /* accepted: a video section that sends a codec we decode, and no error left behind */
        if (info.video_index < 0 || (unsigned)info.video_index >= info.n_media || !info.video_codecs ||
            info.n_video == 0 || info.code || why[0])
            abort();
    } else if ((rc != LV_EINVAL && rc != LV_ELIMIT) || !info.code || !why[0] || !memchr(why, '\0', sizeof(why))) {
        abort();
    }
    /* tight caps and no message buffer: every cap path and a NULL why */
    lv_sdp_caps_t caps = {512, 16, 64};
    (void)lv_sdp_check((const char *)data, size, &caps, &info, NULL, 0);
    return 0;
}
