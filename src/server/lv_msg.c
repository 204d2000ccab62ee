/* lv_msg.c - refcounted outgoing messages: WebSocket frames built once with their header in the
 * headroom (server frames are unmasked, so the same bytes go to every socket), and raw HTTP bytes. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_net.h"
#include "lv_wsframe.h"

static lv_msg_t *msg_alloc(size_t len)
{
    lv_msg_t *m = malloc(sizeof(*m) + LV_MSG_PRE + len);
    if (!m)
        return NULL;
    m->refs = 1;
    m->binary = false;
    m->len = len;
    return m;
}

/* Write the frame header right before the payload so header + payload are contiguous. */
static void frame_header(lv_msg_t *m, int op, size_t len)
{
    uint8_t hdr[10];
    size_t hlen = lv_ws_frame_header(hdr, op, len);
    memcpy(m->buf + LV_MSG_PRE - hlen, hdr, hlen);
    m->len = len;
    m->binary = op == LV_WS_OP_BINARY;
    m->wire = m->buf + LV_MSG_PRE - hlen;
    m->wire_len = hlen + len;
}

static lv_msg_t *ws_frame(const void *p, size_t len, int op)
{
    lv_msg_t *m = msg_alloc(len);
    if (!m)
        return NULL;
    if (len)
        memcpy(m->buf + LV_MSG_PRE, p, len);
    frame_header(m, op, len);
    return m;
}

lv_msg_t *lv_msg_new(const void *p, size_t len, bool binary)
{
    return ws_frame(p, len, binary ? LV_WS_OP_BINARY : LV_WS_OP_TEXT);
}

/* The writer is an lv_buf over the message's own memory with max == cap: lv_buf reallocates only
 * when an append needs more than cap, and with max == cap such an append fails with LV_ELIMIT
 * before that, so the memory is never moved or freed under the writer. The spare byte past cap is
 * lv_buf's NUL. */
lv_msg_t *lv_msg_text_start(size_t max_payload, lv_buf_t *w)
{
    memset(w, 0, sizeof(*w));
    if (max_payload > SIZE_MAX / 2)
        return NULL;
    lv_msg_t *m = msg_alloc(max_payload + 1);
    if (!m)
        return NULL;
    m->len = 0;
    m->wire = NULL;
    m->wire_len = 0;
    w->data = (char *)m->buf + LV_MSG_PRE;
    w->data[0] = '\0';
    w->cap = w->max = max_payload;
    return m;
}

/* Give memory back only when the estimate left this much unused: a shrinking realloc costs a call
 * and, for the small messages, would save nothing the allocator's size classes do not round away. */
#define MSG_SHRINK_SLACK 1024

lv_msg_t *lv_msg_text_finish(lv_msg_t *m, lv_buf_t *w)
{
    size_t len = w->len, room = w->cap;
    memset(w, 0, sizeof(*w)); /* the message owns the memory now */
    if (room - len >= MSG_SHRINK_SLACK) {
        lv_msg_t *small = realloc(m, sizeof(*m) + LV_MSG_PRE + len);
        if (small)
            m = small;
    }
    frame_header(m, LV_WS_OP_TEXT, len);
    return m;
}

lv_msg_t *lv_msg_from_json(const void *json_value)
{
    char *text = json_dumps((const json_t *)json_value, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (!text)
        return NULL;
    lv_msg_t *m = lv_msg_new(text, strlen(text), false);
    free(text);
    return m;
}

lv_msg_t *lv_msg_ws_control(int op, const void *p, size_t len)
{
    return ws_frame(p, len > 125 ? 125 : len, op);
}

lv_msg_t *lv_msg_raw(const void *p, size_t len)
{
    lv_msg_t *m = msg_alloc(len);
    if (!m)
        return NULL;
    if (len)
        memcpy(m->buf + LV_MSG_PRE, p, len);
    m->wire = m->buf + LV_MSG_PRE;
    m->wire_len = len;
    return m;
}

lv_msg_t *lv_msg_static(const void *p, size_t len)
{
    lv_msg_t *m = msg_alloc(0);
    if (!m)
        return NULL;
    m->len = len;
    m->wire = p;
    m->wire_len = len;
    return m;
}

void lv_msg_unref(lv_msg_t *m)
{
    if (m && --m->refs == 0)
        free(m);
}
