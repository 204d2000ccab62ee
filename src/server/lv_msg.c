/* lv_msg.c - refcounted outgoing messages: WebSocket frames built once with their header in the
 * headroom (server frames are unmasked, so the same bytes go to every socket), and raw HTTP bytes. */
#include <jansson.h>
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
static lv_msg_t *ws_frame(const void *p, size_t len, int op)
{
    lv_msg_t *m = msg_alloc(len);
    if (!m)
        return NULL;
    uint8_t hdr[10];
    size_t hlen = lv_ws_frame_header(hdr, op, len);
    memcpy(m->buf + LV_MSG_PRE - hlen, hdr, hlen);
    if (len)
        memcpy(m->buf + LV_MSG_PRE, p, len);
    m->binary = op == LV_WS_OP_BINARY;
    m->wire = m->buf + LV_MSG_PRE - hlen;
    m->wire_len = hlen + len;
    return m;
}

lv_msg_t *lv_msg_new(const void *p, size_t len, bool binary)
{
    return ws_frame(p, len, binary ? LV_WS_OP_BINARY : LV_WS_OP_TEXT);
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
