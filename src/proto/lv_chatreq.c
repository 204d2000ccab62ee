/* lv_chatreq.c - chat/completions request body from a fixed template, escaped strings and base64. */
#include "lv_chatreq.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lv_b64.h"
#include "lv_common.h"

/* Length of the valid UTF-8 sequence starting at s[0..n), or 0 when it is invalid
 * (RFC 3629 table: no overlongs, no surrogates, nothing past U+10FFFF). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

int lv_chatreq_json_string(lv_buf_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t start_len = out->len;
    size_t run = 0; /* start of the pending run of bytes copied as they are */
    int rc;

    if ((rc = lv_buf_append(out, "\"", 1)) != 0)
        goto out;
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        char esc[6];
        size_t esc_len = 0;
        if (c >= 0x80) {
            size_t l = utf8_seq_len(u + i, n - i);
            if (l == 0) {
                rc = LV_EINVAL;
                goto out;
            }
            i += l;
            continue;
        }
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            esc_len = 2;
        } else if (c < 0x20) {
            esc[0] = '\\';
            esc_len = 2;
            switch (c) {
            case '\b': esc[1] = 'b'; break;
            case '\f': esc[1] = 'f'; break;
            case '\n': esc[1] = 'n'; break;
            case '\r': esc[1] = 'r'; break;
            case '\t': esc[1] = 't'; break;
            default:
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                esc_len = 6;
                break;
            }
        } else {
            i++;
            continue;
        }
        if ((rc = lv_buf_append(out, s + run, i - run)) != 0)
            goto out;
        if ((rc = lv_buf_append(out, esc, esc_len)) != 0)
            goto out;
        i++;
        run = i;
    }
    if ((rc = lv_buf_append(out, s + run, n - run)) != 0)
        goto out;
    rc = lv_buf_append(out, "\"", 1);
out:
    if (rc) {
        out->len = start_len;
        if (out->data)
            out->data[out->len] = '\0';
    }
    return rc;
}

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
        (rc = lv_chatreq_json_string(out, req->model, model_len)) != 0 ||
        (rc = lv_buf_append_str(out, ",\"messages\":[{\"role\":\"user\",\"content\":["
                                     "{\"type\":\"text\",\"text\":")) != 0 ||
        (rc = lv_chatreq_json_string(out, req->prompt, prompt_len)) != 0 ||
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
    if (rc) {
        out->len = start_len;
        if (out->data)
            out->data[out->len] = '\0';
    }
    return rc;
}

int lv_chatreq_build(lv_buf_t *out, const lv_chatreq_t *req) { return build(out, req, 0); }

int lv_chatreq_build_debug(lv_buf_t *out, const lv_chatreq_t *req) { return build(out, req, 1); }
