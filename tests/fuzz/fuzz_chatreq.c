/* fuzz_chatreq.c - libFuzzer driver for the chat request builder (lv_chatreq_build, its debug form
 * and the JSON string writer it uses, lv_json_str_append and its lossy form). Input: 1 flag byte (stream, include_usage, image, small cap,
 * temperature form), 4 bytes of max_tokens, 8 of temperature, then model NUL prompt NUL image.
 * Checks, against jansson as the reference: the builder refuses exactly the requests with an
 * empty model, invalid UTF-8 (jansson's json_stringn agrees on what is valid) or a temperature
 * outside 0..100; a built body is JSON that says back what was asked (model, prompt bytes,
 * image base64 that decodes to the input, max_tokens, temperature to 6 decimals, stream flags);
 * the debug body is JSON with the base64 cut as documented; every failure leaves out as it was.
 * fuzz-sources: src/proto/lv_chatreq.c src/proto/lv_b64.c src/common/lv_buf.c src/common/lv_common.c
 * fuzz-sources: src/common/lv_json_str.c src/common/lv_utf8.c
 */
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_b64.h"
#include "lv_buf.h"
#include "lv_chatreq.h"
#include "lv_common.h"
#include "lv_json_str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PREFIX "[prefix]"
#define URL_HEAD "data:image/jpeg;base64,"

static int valid_utf8(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    json_decref(j);
    return j != NULL;
}

static void check_untouched(const lv_buf_t *out)
{
    if (out->len != sizeof PREFIX - 1 || memcmp(out->data, PREFIX, out->len) != 0 || out->data[out->len] != '\0')
        abort();
}

static json_t *parse_body(const lv_buf_t *out)
{
    json_error_t err;
    json_t *j = json_loadb(out->data + sizeof PREFIX - 1, out->len - (sizeof PREFIX - 1), JSON_REJECT_DUPLICATES, &err);
    if (!j || !json_is_object(j))
        abort();
    return j;
}

static void check_string(json_t *v, const char *s, size_t n)
{
    if (!json_is_string(v) || json_string_length(v) != n || memcmp(json_string_value(v), s, n) != 0)
        abort();
}

/* The url of the image part: full base64 of the image, or (debug) its first 120 characters and
 * "...<N chars total>". */
static void check_image(json_t *url, const lv_chatreq_t *req, int debug)
{
    if (!json_is_string(url))
        abort();
    const char *u = json_string_value(url);
    size_t ulen = json_string_length(url);
    if (ulen < sizeof URL_HEAD - 1 || memcmp(u, URL_HEAD, sizeof URL_HEAD - 1) != 0)
        abort();
    u += sizeof URL_HEAD - 1;
    ulen -= sizeof URL_HEAD - 1;
    size_t b64_len = lv_b64_encoded_len(req->jpeg_len);
    unsigned char *dec = malloc(b64_len / 4 * 3 + 3);
    if (!dec)
        abort();
    size_t cmp_bytes = req->jpeg_len, use_chars = b64_len;
    if (debug && b64_len > LV_CHATREQ_DEBUG_B64_CHARS) {
        char tail[64];
        int tl = snprintf(tail, sizeof tail, "...<%zu chars total>", b64_len);
        if (ulen != LV_CHATREQ_DEBUG_B64_CHARS + (size_t)tl || memcmp(u + LV_CHATREQ_DEBUG_B64_CHARS, tail, (size_t)tl))
            abort();
        use_chars = LV_CHATREQ_DEBUG_B64_CHARS;
        cmp_bytes = LV_CHATREQ_DEBUG_B64_CHARS / 4 * 3;
    } else if (ulen != b64_len) {
        abort();
    }
    int n = EVP_DecodeBlock(dec, (const unsigned char *)u, (int)use_chars);
    /* EVP_DecodeBlock keeps the bytes the padding stands for: drop them */
    size_t pad = use_chars >= 2 ? (u[use_chars - 1] == '=') + (u[use_chars - 2] == '=') : 0;
    if (n < 0 || (size_t)n - pad != cmp_bytes || memcmp(dec, req->jpeg, cmp_bytes) != 0)
        abort();
    free(dec);
}

static void check_body(const lv_buf_t *out, const lv_chatreq_t *req, int debug)
{
    json_t *j = parse_body(out);
    check_string(json_object_get(j, "model"), req->model, strlen(req->model));
    json_t *msgs = json_object_get(j, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) != 1)
        abort();
    json_t *m = json_array_get(msgs, 0);
    check_string(json_object_get(m, "role"), "user", 4);
    json_t *content = json_object_get(m, "content");
    int has_image = req->jpeg && req->jpeg_len > 0;
    if (!json_is_array(content) || json_array_size(content) != (size_t)(1 + has_image))
        abort();
    json_t *text = json_array_get(content, 0);
    check_string(json_object_get(text, "type"), "text", 4);
    check_string(json_object_get(text, "text"), req->prompt, strlen(req->prompt));
    if (has_image) {
        json_t *img = json_array_get(content, 1);
        check_string(json_object_get(img, "type"), "image_url", 9);
        check_image(json_object_get(json_object_get(img, "image_url"), "url"), req, debug);
    }
    json_t *mt = json_object_get(j, "max_tokens");
    if (req->max_tokens > 0 ? !json_is_integer(mt) || json_integer_value(mt) != req->max_tokens : mt != NULL)
        abort();
    json_t *t = json_object_get(j, "temperature");
    if (!json_is_number(t) || fabs(json_number_value(t) - req->temperature) > 5e-7 + req->temperature * 1e-12)
        abort();
    if (json_is_true(json_object_get(j, "stream")) != (req->stream != 0))
        abort();
    json_t *so = json_object_get(j, "stream_options");
    if (req->stream && req->include_usage ? !json_is_true(json_object_get(so, "include_usage")) : so != NULL)
        abort();
    json_decref(j);
}

static void try_build(const lv_chatreq_t *req, int debug, int expect_valid, size_t cap)
{
    lv_buf_t out;
    lv_buf_init(&out, cap);
    if (lv_buf_append(&out, PREFIX, sizeof PREFIX - 1) != 0)
        abort();
    int rc = debug ? lv_chatreq_build_debug(&out, req) : lv_chatreq_build(&out, req);
    if (rc == 0) {
        if (!expect_valid)
            abort();
        check_body(&out, req, debug);
    } else {
        check_untouched(&out);
        if (rc == LV_EINVAL ? expect_valid : rc != LV_ELIMIT && rc != LV_ENOMEM)
            abort();
        if (rc == LV_ELIMIT && cap >= (1u << 22))
            abort(); /* the big cap holds any body built from a fuzz input */
    }
    lv_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 13)
        return 0;
    uint8_t flags = data[0];
    int32_t max_tokens;
    double temp;
    memcpy(&max_tokens, data + 1, 4);
    memcpy(&temp, data + 5, 8);
    if (!(flags & 0x30)) /* mostly in range, to reach the body checks */
        temp = (double)(data[5] | (unsigned)data[6] << 8) / 600.0;
    const char *rest = (const char *)data + 13;
    size_t rest_len = size - 13;

    /* model NUL prompt NUL image: copies in exact-size blocks, so ASan sees over-reads */
    const char *z1 = memchr(rest, '\0', rest_len);
    size_t model_len = z1 ? (size_t)(z1 - rest) : rest_len;
    const char *p2 = z1 ? z1 + 1 : rest + rest_len;
    size_t left = rest_len - (size_t)(p2 - rest);
    const char *z2 = memchr(p2, '\0', left);
    size_t prompt_len = z2 ? (size_t)(z2 - p2) : left;
    const char *img = z2 ? z2 + 1 : p2 + left;
    size_t img_len = rest_len - (size_t)(img - rest);
    char *model = strndup(rest, model_len), *prompt = strndup(p2, prompt_len);
    unsigned char *jpeg = img_len ? malloc(img_len) : NULL;
    if (!model || !prompt || (img_len && !jpeg))
        abort();
    if (img_len)
        memcpy(jpeg, img, img_len);

    lv_chatreq_t req = {.model = model,
                        .prompt = prompt,
                        .max_tokens = max_tokens,
                        .temperature = temp,
                        .jpeg = (flags & 4) ? jpeg : NULL,
                        .jpeg_len = (flags & 4) ? img_len : 0,
                        .stream = flags & 1,
                        .include_usage = (flags >> 1) & 1};
    int valid = model_len > 0 && valid_utf8(model, model_len) && valid_utf8(prompt, prompt_len) && isfinite(temp) &&
                temp >= 0 && temp <= 100;
    size_t cap = (flags & 8) ? sizeof PREFIX - 1 + (size_t)data[12] * 4 : 1u << 22;
    try_build(&req, 0, valid, cap);
    try_build(&req, 1, valid, cap);

    /* the string writer alone, on all the bytes (NULs included) */
    lv_buf_t out;
    lv_buf_init(&out, (flags & 8) ? sizeof PREFIX - 1 + (size_t)data[12] : 1u << 22);
    if (lv_buf_append(&out, PREFIX, sizeof PREFIX - 1) != 0)
        abort();
    int rc = lv_json_str_append(&out, rest, rest_len);
    if (rc == 0) {
        if (!valid_utf8(rest, rest_len))
            abort();
        json_error_t err;
        json_t *s = json_loadb(out.data + sizeof PREFIX - 1, out.len - (sizeof PREFIX - 1),
                               JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!s)
            abort();
        check_string(s, rest, rest_len);
        json_decref(s);
    } else {
        check_untouched(&out);
        if (rc == LV_EINVAL ? valid_utf8(rest, rest_len) : rc != LV_ELIMIT && rc != LV_ENOMEM)
            abort();
    }
    /* the lossy form: never LV_EINVAL, always JSON, and the same bytes when they were UTF-8 */
    lv_buf_reset(&out);
    if (lv_buf_append(&out, PREFIX, sizeof PREFIX - 1) != 0)
        abort();
    rc = lv_json_str_append_lossy(&out, rest, rest_len);
    if (rc == 0) {
        json_error_t err;
        json_t *s = json_loadb(out.data + sizeof PREFIX - 1, out.len - (sizeof PREFIX - 1),
                               JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!s || !json_is_string(s))
            abort();
        if (valid_utf8(rest, rest_len))
            check_string(s, rest, rest_len);
        json_decref(s);
    } else {
        check_untouched(&out);
        if (rc != LV_ELIMIT && rc != LV_ENOMEM)
            abort();
    }
    lv_buf_free(&out);
    free(model);
    free(prompt);
    free(jpeg);
    return 0;
}
