/* fuzz_jpeg.c - libFuzzer driver for header-only JPEG validation.
 * fuzz-sources: src/proto/lv_jpeg.c
 */
#include <stdint.h>
#include <stdlib.h>

#include "lv_common.h"
#include "lv_jpeg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const lv_jpeg_caps_t caps = {4u << 20, 8192, 16777216u};
    lv_jpeg_info_t info;
    const char *why = NULL;
    int rc = lv_jpeg_check(data, size, &caps, &info, &why);
    if (rc == 0) {
        if (info.width <= 0 || info.height <= 0 || info.width > 8192 || info.height > 8192 ||
            (uint64_t)info.width * (uint64_t)info.height > 16777216u)
            abort();
    } else if ((rc != LV_EINVAL && rc != LV_ELIMIT) || !why) {
        abort();
    }
    /* And without caps: the header parser alone must cope with anything. */
    (void)lv_jpeg_check(data, size, NULL, NULL, NULL);
    return 0;
}
