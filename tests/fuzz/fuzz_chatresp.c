/* fuzz_chatresp.c - libFuzzer driver for chat.completion(.chunk) parsing: the first byte picks
 * chunk or completion; every pointer a successful parse hands out is read in full.
 * fuzz-sources: src/common/lv_buf.c src/common/lv_common.c src/proto/lv_chatresp.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_chatresp.h"
#include "lv_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t touch(const char *s) { return s ? strlen(s) : 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    lv_chatresp_t r;
    lv_chatresp_init(&r);
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    int rc = data[0] & 1 ? lv_chatresp_parse_completion(&r, p, n, 64 * 1024)
                         : lv_chatresp_parse_chunk(&r, p, n, 64 * 1024);
    volatile size_t sink = 0;
    if (rc == 0) {
        if (!r.content || strlen(r.content) > r.content_len)
            abort();
        for (size_t i = 0; i < r.content_len; i++)
            sink += (unsigned char)r.content[i];
        sink += touch(r.finish_reason) + touch(r.id) + touch(r.model);
        if (r.prompt_tokens < 0 || r.completion_tokens < 0)
            abort();
    } else if (rc == LV_EBACKEND) {
        if (!r.error_message)
            abort();
        sink += touch(r.error_message);
    } else if (rc != LV_EPARSE && rc != LV_ELIMIT && rc != LV_ENOMEM) {
        abort();
    }
    (void)sink;
    lv_chatresp_clear(&r);
    return 0;
}
