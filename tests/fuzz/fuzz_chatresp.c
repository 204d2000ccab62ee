/* fuzz_chatresp.c - libFuzzer driver for chat.completion(.chunk) parsing: the first byte picks
 * chunk or completion; every pointer a successful parse hands out is read in full. A chunk also
 * goes through lv_chatresp_parse_chunk_full() (no fast scanner): both must return the same and
 * read the same content, id, model, finish reason, usage and error, or the driver aborts.
 * fuzz-sources: src/common/lv_buf.c src/common/lv_common.c src/common/lv_utf8.c src/proto/lv_chatresp.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_chatresp.h"
#include "lv_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t touch(const char *s) { return s ? strlen(s) : 0; }

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

/* The fast scanner may refuse anything, but what it takes must read as jansson reads it. */
static void check_same_as_full(const lv_chatresp_t *a, int rca, const char *p, size_t n)
{
    lv_chatresp_t b;
    lv_chatresp_init(&b);
    int rcb = lv_chatresp_parse_chunk_full(&b, p, n, 64 * 1024);
    if (rca != rcb || a->is_done != b.is_done || a->content_len != b.content_len ||
        memcmp(a->content, b.content, a->content_len) != 0 || !same_str(a->finish_reason, b.finish_reason) ||
        a->has_usage != b.has_usage || a->prompt_tokens != b.prompt_tokens ||
        a->completion_tokens != b.completion_tokens || !same_str(a->error_message, b.error_message) ||
        !same_str(a->id, b.id) || !same_str(a->model, b.model))
        abort();
    if (a->priv_fast && (rcb != 0 || !b.priv_doc))
        abort(); /* the scanner took text jansson refuses */
    lv_chatresp_clear(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    lv_chatresp_t r;
    lv_chatresp_init(&r);
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    int is_chunk = !(data[0] & 1);
    int rc = is_chunk ? lv_chatresp_parse_chunk(&r, p, n, 64 * 1024) : lv_chatresp_parse_completion(&r, p, n, 64 * 1024);
    volatile size_t sink = 0;
    if (rc == 0) {
        if (!r.content || strlen(r.content) > r.content_len || r.content[r.content_len] != '\0')
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
    if (is_chunk)
        check_same_as_full(&r, rc, p, n);
    (void)sink;
    lv_chatresp_clear(&r);
    return 0;
}
