/* lv_traceparent.c - the W3C traceparent header, parsed and formatted (lv_traceparent.h). */
#include "lv_traceparent.h"

#include <stdio.h>
#include <string.h>

#include "lv_common.h"
#include "lv_rand.h"

/* Lowercase hex only: section 3.2.2.1 ("HEXDIGLC"); an upper-case id is not the same id. */
static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool lv_trace_id_valid(const char *s, size_t n, size_t hex_len)
{
    if (!s || n != hex_len || hex_len == 0)
        return false;
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        int v = hex_value(s[i]);
        if (v < 0)
            return false;
        nonzero |= v != 0;
    }
    return nonzero; /* all zeros is "invalid" (sections 3.2.2.3 and 3.2.2.4) */
}

static int hex_byte(const char *s, uint8_t *out)
{
    int hi = hex_value(s[0]), lo = hex_value(s[1]);
    if (hi < 0 || lo < 0)
        return LV_EINVAL;
    *out = (uint8_t)(hi << 4 | lo);
    return 0;
}

int lv_traceparent_parse(const char *s, size_t n, lv_traceparent_t *out)
{
    int rc = LV_EINVAL;
    if (!out)
        return LV_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!s || n < LV_TRACEPARENT_LEN)
        goto out;
    if (hex_byte(s, &out->version) != 0 || out->version == 0xff)
        goto out;
    /* version 00 is exactly 55 bytes; a later version may append fields after a '-' */
    if (out->version == 0 ? n != LV_TRACEPARENT_LEN : n > LV_TRACEPARENT_LEN && s[LV_TRACEPARENT_LEN] != '-')
        goto out;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        goto out;
    if (!lv_trace_id_valid(s + 3, LV_TRACE_ID_HEX, LV_TRACE_ID_HEX) ||
        !lv_trace_id_valid(s + 36, LV_SPAN_ID_HEX, LV_SPAN_ID_HEX) || hex_byte(s + 53, &out->flags) != 0)
        goto out;
    memcpy(out->trace_id, s + 3, LV_TRACE_ID_HEX);
    memcpy(out->parent_id, s + 36, LV_SPAN_ID_HEX);
    rc = 0;
out:
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}

int lv_traceparent_format(const char *trace_id, const char *span_id, uint8_t flags, char *out, size_t out_size)
{
    if (!out || out_size < LV_TRACEPARENT_LEN + 1 || !trace_id || !span_id ||
        !lv_trace_id_valid(trace_id, strnlen(trace_id, LV_TRACE_ID_HEX + 1), LV_TRACE_ID_HEX) ||
        !lv_trace_id_valid(span_id, strnlen(span_id, LV_SPAN_ID_HEX + 1), LV_SPAN_ID_HEX))
        return LV_EINVAL;
    snprintf(out, out_size, "00-%s-%s-%02x", trace_id, span_id, (unsigned)flags);
    return 0;
}

bool lv_tracestate_ok(const char *s, size_t n)
{
    if (!s || n == 0 || n > LV_TRACESTATE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c > 0x7e)
            return false;
    }
    return true;
}

int lv_trace_new_id(char *out, size_t out_size, size_t hex_len)
{
    if (!out || hex_len == 0 || hex_len % 2 || out_size <= hex_len)
        return LV_EINVAL;
    int rc = lv_rand_fast_hex(out, out_size, hex_len / 2);
    if (rc)
        return rc;
    /* all zeros is invalid; with 64 or 128 random bits it never happens, but it must not go out */
    if (!lv_trace_id_valid(out, hex_len, hex_len))
        out[hex_len - 1] = '1';
    return 0;
}
