/* lg_ws.c - RFC 6455 client codec for the load generator (upgrade, masking, frame parsing). */
#include "lg_ws.h"

#include <ctype.h>
#include <string.h>

#include <openssl/evp.h>

#include "lv_common.h"

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void lg_ws_make_key(const unsigned char rnd[16], char out[LG_WS_KEY_LEN + 1])
{
    EVP_EncodeBlock((unsigned char *)out, rnd, 16);
    out[LG_WS_KEY_LEN] = '\0';
}

int lg_ws_accept_for(const char *key, char out[LG_WS_ACCEPT_LEN + 1])
{
    char cat[128];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int n = snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    if (n < 0 || (size_t)n >= sizeof(cat))
        return LV_EINVAL;
    if (!EVP_Digest(cat, (size_t)n, md, &md_len, EVP_sha1(), NULL) || md_len != 20)
        return LV_EIO;
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    out[LG_WS_ACCEPT_LEN] = '\0';
    return 0;
}

int lg_ws_upgrade_request(lv_buf_t *out, const char *host, const char *path, const char *token,
                          const char *key)
{
    int rc = lv_buf_printf(out,
                           "GET %s HTTP/1.1\r\n"
                           "Host: %s\r\n"
                           "Upgrade: websocket\r\n"
                           "Connection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Protocol: livevlm.v1\r\n"
                           "User-Agent: livevlm-loadgen/0.1\r\n",
                           path, host, key);
    if (!rc && token)
        rc = lv_buf_printf(out, "Authorization: Bearer %s\r\n", token);
    if (!rc)
        rc = lv_buf_append_str(out, "\r\n");
    return rc;
}

size_t lg_ws_http_header_end(const char *p, size_t n)
{
    for (size_t i = 3; i < n; i++) {
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r')
            return i + 1;
    }
    return 0;
}

/* Case-insensitive search for a token in a comma-separated header value ("keep-alive, Upgrade"). */
static int value_has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return 1;
    }
    return 0;
}

int lg_ws_check_upgrade(const char *p, size_t hdr_len, const char *key, int *status)
{
    int st = 0;
    int have_upgrade = 0, have_connection = 0, have_accept = 0;
    char want[LG_WS_ACCEPT_LEN + 1];
    *status = 0;
    /* "HTTP/1.1 101 Switching Protocols" */
    if (hdr_len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' || !isdigit((unsigned char)p[9]) ||
        !isdigit((unsigned char)p[10]) || !isdigit((unsigned char)p[11]))
        return LV_EPARSE;
    st = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    *status = st;
    if (st != 101)
        return st == 401 || st == 403 ? LV_EAUTH : st == 429 ? LV_ELIMIT : LV_EPARSE;
    if (lg_ws_accept_for(key, want))
        return LV_EIO;
    const char *line = memchr(p, '\n', hdr_len);
    const char *end = p + hdr_len;
    while (line && line + 1 < end) {
        const char *ls = line + 1;
        const char *le = memchr(ls, '\n', (size_t)(end - ls));
        if (!le)
            break;
        size_t ll = (size_t)(le - ls);
        if (ll > 0 && ls[ll - 1] == '\r')
            ll--;
        const char *colon = memchr(ls, ':', ll);
        if (colon) {
            size_t nl = (size_t)(colon - ls);
            const char *v = colon + 1;
            size_t vl = ll - nl - 1;
            while (vl > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                vl--;
            }
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (nl == 7 && strncasecmp(ls, "upgrade", 7) == 0)
                have_upgrade = value_has_token(v, vl, "websocket");
            else if (nl == 10 && strncasecmp(ls, "connection", 10) == 0)
                have_connection = value_has_token(v, vl, "upgrade");
            else if (nl == 20 && strncasecmp(ls, "sec-websocket-accept", 20) == 0)
                have_accept = vl == LG_WS_ACCEPT_LEN && memcmp(v, want, LG_WS_ACCEPT_LEN) == 0;
        }
        line = le;
    }
    return have_upgrade && have_connection && have_accept ? 0 : LV_EPARSE;
}

size_t lg_ws_frame_header(unsigned char *out, int opcode, uint64_t len, const unsigned char key[4])
{
    size_t h;
    out[0] = (unsigned char)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (unsigned char)(0x80 | len);
        h = 2;
    } else if (len <= 0xffff) {
        out[1] = 0x80 | 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        h = 4;
    } else {
        out[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        h = 10;
    }
    memcpy(out + h, key, 4);
    return h + 4;
}

void lg_ws_mask(unsigned char *dst, const unsigned char *src, size_t n, const unsigned char key[4],
                size_t offset)
{
    unsigned char k8[8];
    uint64_t m;
    size_t i = 0;
    for (int j = 0; j < 8; j++)
        k8[j] = key[(offset + (size_t)j) & 3];
    memcpy(&m, k8, 8); /* the same byte pattern in memory order, whatever the host's endianness */
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= m;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k8[i & 3]; /* i is a multiple of 8 where this starts, so k8 stays in phase */
}

int lg_ws_append_frame(lv_buf_t *out, int opcode, const void *payload, size_t len, const unsigned char key[4])
{
    unsigned char hdr[LG_WS_MAX_HDR];
    size_t h = lg_ws_frame_header(hdr, opcode, len, key);
    int rc = lv_buf_reserve(out, h + len);
    if (rc)
        return rc;
    memcpy(out->data + out->len, hdr, h);
    if (len)
        lg_ws_mask((unsigned char *)out->data + out->len + h, payload, len, key, 0);
    out->len += h + len;
    out->data[out->len] = '\0';
    return 0;
}

/* ---------- parser ---------- */

void lg_ws_rx_init(lg_ws_rx_t *rx, size_t max_msg)
{
    lv_buf_init(&rx->partial, max_msg + 10);
    lv_buf_init(&rx->msg, max_msg);
    rx->msg_opcode = 0;
    rx->max_msg = max_msg;
}

void lg_ws_rx_free(lg_ws_rx_t *rx)
{
    lv_buf_free(&rx->partial);
    lv_buf_free(&rx->msg);
    rx->msg_opcode = 0;
}

/* Bytes the frame starting at p needs in total: the header length while the header is
 * incomplete, header + payload once it is known. 0 with *err set on a protocol error. */
static size_t frame_need(const lg_ws_rx_t *rx, const unsigned char *p, size_t n, int *err, size_t *hl_out,
                         uint64_t *plen_out)
{
    *err = 0;
    if (n < 2)
        return 2;
    unsigned op = p[0] & 0x0f;
    /* RFC 6455 5.2: RSV bits must be 0 without a negotiated extension; 5.1: a server must not mask */
    if ((p[0] & 0x70) || (p[1] & 0x80)) {
        *err = LV_EPARSE;
        return 0;
    }
    if ((op >= 3 && op <= 7) || op >= 0xB) {
        *err = LV_EPARSE;
        return 0;
    }
    uint64_t plen = p[1] & 0x7f;
    size_t hl = 2;
    if (plen == 126) {
        hl = 4;
        if (n < hl)
            return hl;
        plen = ((uint64_t)p[2] << 8) | p[3];
    } else if (plen == 127) {
        hl = 10;
        if (n < hl)
            return hl;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | p[2 + i];
        if (plen >> 63) {
            *err = LV_EPARSE;
            return 0;
        }
    }
    /* 5.5: control frames are not fragmented and carry at most 125 bytes */
    if (op >= 8 && (!(p[0] & 0x80) || plen > 125)) {
        *err = LV_EPARSE;
        return 0;
    }
    if (plen > rx->max_msg) {
        *err = LV_ELIMIT;
        return 0;
    }
    *hl_out = hl;
    *plen_out = plen;
    return hl + (size_t)plen;
}

/* One complete frame: deliver it, or add it to the message being rebuilt. */
static int frame_done(lg_ws_rx_t *rx, const unsigned char *p, size_t hl, size_t plen, lg_ws_msg_cb cb, void *ud)
{
    int fin = p[0] & 0x80;
    int op = p[0] & 0x0f;
    const char *pl = (const char *)p + hl;
    if (op >= 8)
        return cb(ud, op, pl, plen) ? 1 : 0;
    if (op == LG_WS_CONT) {
        if (!rx->msg_opcode)
            return LV_EPARSE; /* a continuation with nothing to continue */
        if (rx->msg.len + plen > rx->max_msg)
            return LV_ELIMIT;
        if (lv_buf_append(&rx->msg, pl, plen))
            return LV_ENOMEM;
        if (!fin)
            return 0;
        int mop = rx->msg_opcode;
        rx->msg_opcode = 0;
        int stop = cb(ud, mop, rx->msg.data ? rx->msg.data : "", rx->msg.len);
        lv_buf_reset(&rx->msg);
        return stop ? 1 : 0;
    }
    if (rx->msg_opcode)
        return LV_EPARSE; /* 5.4: a new data message may not start inside a fragmented one */
    if (fin)
        return cb(ud, op, pl, plen) ? 1 : 0;
    rx->msg_opcode = op;
    lv_buf_reset(&rx->msg);
    return lv_buf_append(&rx->msg, pl, plen) ? LV_ENOMEM : 0;
}

int lg_ws_rx_feed(lg_ws_rx_t *rx, const char *data, size_t len, lg_ws_msg_cb cb, void *ud)
{
    const unsigned char *d = (const unsigned char *)data;
    int err, rc;
    size_t hl = 0;
    uint64_t plen = 0;

    /* Finish the frame carried over from the last feed, taking only the bytes it still needs so
     * that partial never holds more than one frame. */
    while (rx->partial.len > 0 && len > 0) {
        size_t need = frame_need(rx, (unsigned char *)rx->partial.data, rx->partial.len, &err, &hl, &plen);
        if (err)
            return err;
        size_t take = LV_MIN(need - rx->partial.len, len);
        if (lv_buf_append(&rx->partial, d, take))
            return LV_ENOMEM;
        d += take;
        len -= take;
        need = frame_need(rx, (unsigned char *)rx->partial.data, rx->partial.len, &err, &hl, &plen);
        if (err)
            return err;
        if (rx->partial.len < need)
            continue; /* header grew, or still short: loop asks again */
        rc = frame_done(rx, (unsigned char *)rx->partial.data, hl, (size_t)plen, cb, ud);
        lv_buf_reset(&rx->partial);
        if (rc)
            return rc;
    }
    /* Whole frames straight from the caller's bytes. */
    while (len > 0) {
        size_t need = frame_need(rx, d, len, &err, &hl, &plen);
        if (err)
            return err;
        if (len < need)
            break;
        rc = frame_done(rx, d, hl, (size_t)plen, cb, ud);
        if (rc)
            return rc;
        d += need;
        len -= need;
    }
    if (len > 0 && lv_buf_append(&rx->partial, d, len))
        return LV_ENOMEM;
    return 0;
}
