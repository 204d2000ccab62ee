/* lv_sse.c - incremental text/event-stream parser (WHATWG HTML 9.2.6 "Interpreting an event
 * stream"), restricted to the "data" field and llama.cpp's "error" field. */
#include "lv_sse.h"

#include <string.h>

#include "lv_common.h"

void lv_sse_init(lv_sse_t *s, size_t max_line_bytes)
{
    lv_buf_init(&s->line, max_line_bytes);
    lv_buf_init(&s->data, max_line_bytes);
    s->have_data = 0;
    s->skip_lf = 0;
    s->first_line = 1;
    s->err = 0;
    s->event_is_error = 0;
}

void lv_sse_free(lv_sse_t *s)
{
    lv_buf_free(&s->line);
    lv_buf_free(&s->data);
}

/* "If the data buffer is an empty string, set the data buffer and the event type buffer to the
 * empty string and return" - here: nothing is dispatched unless a data field was seen. */
static int dispatch(lv_sse_t *s, lv_sse_data_cb on_data, void *ud)
{
    if (!s->have_data)
        return 0;
    s->have_data = 0;
    const char *d = s->data.len ? s->data.data : "";
    size_t len = s->data.len;
    int rc = on_data(ud, d, len);
    lv_buf_reset(&s->data);
    s->event_is_error = 0;
    return rc;
}

/* One complete line, without its terminator. */
static int process_line(lv_sse_t *s, const char *l, size_t n, lv_sse_data_cb on_data, void *ud)
{
    if (s->first_line) {
        s->first_line = 0;
        /* "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are present." */
        if (n >= 3 && memcmp(l, "\xEF\xBB\xBF", 3) == 0) {
            l += 3;
            n -= 3;
        }
    }
    if (n == 0)
        return dispatch(s, on_data, ud);
    if (l[0] == ':')
        return 0; /* comment (keep-alives) */
    const char *colon = memchr(l, ':', n);
    size_t name_len = colon ? (size_t)(colon - l) : n;
    if (name_len == 5 && memcmp(l, "error", 5) == 0)
        s->event_is_error = 1; /* llama.cpp: "error: {...}" then "data: [DONE]" */
    else if (name_len != 4 || memcmp(l, "data", 4) != 0)
        return 0; /* event, id, retry and unknown fields: not used */
    const char *v = colon ? colon + 1 : l + n;
    size_t vlen = (size_t)(l + n - v);
    if (vlen && v[0] == ' ') {
        v++;
        vlen--;
    }
    /* Lines are joined with '\n'; the standard appends '\n' after each and strips the last one,
     * which is the same thing. */
    int rc;
    if (s->have_data && (rc = lv_buf_append(&s->data, "\n", 1)) != 0)
        return rc;
    if ((rc = lv_buf_append(&s->data, v, vlen)) != 0)
        return rc;
    s->have_data = 1;
    return 0;
}

/* A line is complete: either it lies wholly in the input (no buffered tail), or it is the
 * buffered tail plus p[0..n). */
static int complete_line(lv_sse_t *s, const char *p, size_t n, lv_sse_data_cb on_data, void *ud)
{
    int rc;
    if (s->line.len == 0) {
        if (n > s->line.max)
            return LV_ELIMIT;
        return process_line(s, p, n, on_data, ud);
    }
    if ((rc = lv_buf_append(&s->line, p, n)) != 0)
        return rc;
    rc = process_line(s, s->line.data, s->line.len, on_data, ud);
    lv_buf_reset(&s->line);
    return rc;
}

int lv_sse_feed(lv_sse_t *s, const char *p, size_t n, lv_sse_data_cb on_data, void *ud)
{
    int rc = 0;
    size_t i = 0;
    if (s->err)
        return s->err;
    if (n == 0)
        return 0;
    if (s->skip_lf) {
        s->skip_lf = 0;
        if (p[0] == '\n')
            i = 1;
    }
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] != '\n' && p[j] != '\r')
            j++;
        if (j == n) { /* unterminated tail: keep it for the next feed */
            rc = lv_buf_append(&s->line, p + i, n - i);
            goto out;
        }
        if ((rc = complete_line(s, p + i, j - i, on_data, ud)) != 0)
            goto out;
        if (p[j] == '\r') {
            if (j + 1 < n) {
                if (p[j + 1] == '\n')
                    j++;
            } else {
                s->skip_lf = 1; /* a CRLF pair may be split across feeds */
            }
        }
        i = j + 1;
    }
out:
    if (rc)
        s->err = rc;
    return rc;
}

int lv_sse_finish(lv_sse_t *s, lv_sse_data_cb on_data, void *ud)
{
    int rc = 0;
    if (s->err)
        return s->err;
    if (s->line.len) {
        rc = process_line(s, s->line.data, s->line.len, on_data, ud);
        lv_buf_reset(&s->line);
        if (rc)
            goto out;
    }
    rc = dispatch(s, on_data, ud);
out:
    if (rc)
        s->err = rc;
    return rc;
}
