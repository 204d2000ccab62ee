/* lv_chatreq.c - chat/completions request body from a fixed template, escaped strings and base64. */
#include "lv_chatreq.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lv_b64.h"
#include "lv_common.h"
#include "lv_json_str.h"

/* Locale-independent decimal for a non-negative finite value: up to 6 decimals, trailing zeros
 * dropped (printf's %g would follow LC_NUMERIC and could write a comma). */
static int append_decimal(lv_buf_t *out, double v)
{
    uint64_t micro = (uint64_t)llround(v * 1e6);
    uint64_t ip = micro / 1000000u, fp = micro % 1000000u;
    char frac[8];
    int w = 6;
    while (w > 0 && fp % 10 == 0) {
        fp /= 10;
        w--;
    }
    if (w == 0)
        return lv_buf_printf(out, "%llu", (unsigned long long)ip);
    int n = snprintf(frac, sizeof frac, "%0*llu", w, (unsigned long long)fp);
    if (n < 0 || (size_t)n >= sizeof frac)
        return LV_EINVAL;
    return lv_buf_printf(out, "%llu.%s", (unsigned long long)ip, frac);
}

static int build(lv_buf_t *out, const lv_chatreq_t *req, int debug)
{
    size_t start_len = out->len;
    int rc = LV_EINVAL;

    if (!req || !req->model || !req->model[0] || !req->prompt)
        goto out;
    if (!isfinite(req->temperature) || req->temperature < 0 || req->temperature > 100)
        goto out;
    int has_image = req->jpeg && req->jpeg_len > 0;
    size_t model_len = strlen(req->model), prompt_len = strlen(req->prompt);
    size_t b64_len = has_image ? lv_b64_encoded_len(req->jpeg_len) : 0;

    /* One allocation up front for the common case (strings need no escaping); an estimate past
     * the cap is trimmed to the room left so the exact appends below decide about LV_ELIMIT. */
    size_t est = 320 + model_len + prompt_len + (debug ? 2 * LV_CHATREQ_DEBUG_B64_CHARS : b64_len);
    if ((rc = lv_buf_reserve(out, LV_MIN(est, out->max - out->len))) != 0)
        goto out;

    if ((rc = lv_buf_append_str(out, "{\"model\":")) != 0 ||
        (rc = lv_json_str_append(out, req->model, model_len)) != 0 ||
        (rc = lv_buf_append_str(out, ",\"messages\":[{\"role\":\"user\",\"content\":["
                                     "{\"type\":\"text\",\"text\":")) != 0 ||
        (rc = lv_json_str_append(out, req->prompt, prompt_len)) != 0 ||
        (rc = lv_buf_append_str(out, "}")) != 0)
        goto out;
    if (has_image) {
        if ((rc = lv_buf_append_str(out, ",{\"type\":\"image_url\",\"image_url\":{\"url\":"
                                         "\"data:image/jpeg;base64,")) != 0)
            goto out;
        if (debug && b64_len > LV_CHATREQ_DEBUG_B64_CHARS) {
            /* 90 bytes encode to exactly 120 characters with no padding. */
            rc = lv_b64_encode(out, req->jpeg, LV_CHATREQ_DEBUG_B64_CHARS / 4 * 3);
            if (!rc)
                rc = lv_buf_printf(out, "...<%zu chars total>", b64_len);
        } else {
            rc = lv_b64_encode(out, req->jpeg, req->jpeg_len);
        }
        if (rc || (rc = lv_buf_append_str(out, "\"}}")) != 0)
            goto out;
    }
    if ((rc = lv_buf_append_str(out, "]}]")) != 0)
        goto out;
    if (req->max_tokens > 0 && (rc = lv_buf_printf(out, ",\"max_tokens\":%d", req->max_tokens)) != 0)
        goto out;
    if ((rc = lv_buf_append_str(out, ",\"temperature\":")) != 0 ||
        (rc = append_decimal(out, req->temperature)) != 0)
        goto out;
    if (req->stream)
        rc = lv_buf_append_str(out, req->include_usage
                                        ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
                                        : ",\"stream\":true}");
    else
        rc = lv_buf_append_str(out, ",\"stream\":false}");
out:
    if (rc)
        lv_buf_truncate(out, start_len);
    return rc;
}

int lv_chatreq_build(lv_buf_t *out, const lv_chatreq_t *req) { return build(out, req, 0); }

int lv_chatreq_build_debug(lv_buf_t *out, const lv_chatreq_t *req) { return build(out, req, 1); }
