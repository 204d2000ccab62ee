/* lv_wsframe.c - RFC 6455 on the server side: the accept key, the client frame reader, and the
 * headers of the frames the server sends. */
#include "lv_wsframe.h"

#include <openssl/evp.h>
#include <string.h>

#include "lv_b64.h"
#include "lv_common.h"

/* A message buffer grown past this is freed between messages, so an idle connection does not
 * keep the memory of its biggest message. */
#define MSG_KEEP_BYTES (64 * 1024)

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static bool is_b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int lv_ws_accept_key(const char *key, size_t key_len, char out[29])
{
    char in[24 + sizeof(ws_guid)];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    lv_buf_t b64;
    int rc = LV_EINVAL;

    lv_buf_init(&b64, 28);
    out[0] = '\0';
    /* Section 4.2.1: the key is "a base64-encoded value that, when decoded, is 16 bytes in
     * length": 22 characters carrying 128 bits, then "==". */
    if (!key || key_len != 24 || key[22] != '=' || key[23] != '=')
        goto out;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64_char(key[i]))
            goto out;
    /* Section 4.2.2: base64(SHA-1(key + GUID)), the key taken as the string it is. */
    memcpy(in, key, 24);
    memcpy(in + 24, ws_guid, sizeof(ws_guid) - 1);
    if (!EVP_Digest(in, 24 + sizeof(ws_guid) - 1, md, &md_len, EVP_sha1(), NULL) || md_len != 20) {
        rc = LV_EIO;
        goto out;
    }
    rc = lv_b64_encode(&b64, md, md_len);
    if (rc)
        goto out;
    if (b64.len != 28) {
        rc = LV_EIO;
        goto out;
    }
    memcpy(out, b64.data, 28);
    out[28] = '\0';
out:
    lv_buf_free(&b64);
    return rc;
}

void lv_ws_reader_init(lv_ws_reader_t *r, size_t max_binary_bytes, size_t max_text_bytes)
{
    memset(r, 0, sizeof(*r));
    r->max_message_bytes = max_binary_bytes;
    r->max_text_bytes = max_text_bytes;
    lv_buf_init(&r->msg, LV_MAX(max_binary_bytes, max_text_bytes));
    lv_utf8_init(&r->utf8);
}

void lv_ws_reader_free(lv_ws_reader_t *r)
{
    lv_buf_free(&r->msg);
}

static void fail(lv_ws_reader_t *r, lv_ws_event_t *ev, int code, const char *why)
{
    r->failed = true;
    r->err_code = code;
    r->err_why = why;
    ev->kind = LV_WS_EV_ERROR;
    ev->close_code = code;
    ev->why = why;
}

/* Header bytes needed so far: 2, then the extended length and the masking key. Every client
 * frame is masked (checked after the first two bytes), so the key is always there. */
static size_t header_need(const lv_ws_reader_t *r)
{
    if (r->hdr_len < 2)
        return 2;
    unsigned len7 = r->hdr[1] & 0x7F;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
}

/* The rules that the first two header bytes settle, checked before the rest arrives. */
static bool check_first_bytes(lv_ws_reader_t *r, lv_ws_event_t *ev)
{
    uint8_t b0 = r->hdr[0], b1 = r->hdr[1];
    int op = b0 & 0x0F;
    bool fin = (b0 & 0x80) != 0;

    /* Section 5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings
     * for non-zero values"; none is negotiated here. */
    if (b0 & 0x70) {
        fail(r, ev, LV_WS_CLOSE_PROTOCOL, "reserved bits set");
        return false;
    }
    /* "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket
     * Connection_." */
    if (op != LV_WS_OP_CONT && op != LV_WS_OP_TEXT && op != LV_WS_OP_BINARY && op != LV_WS_OP_CLOSE &&
        op != LV_WS_OP_PING && op != LV_WS_OP_PONG) {
        fail(r, ev, LV_WS_CLOSE_PROTOCOL, "unknown opcode");
        return false;
    }
    /* Section 5.1: "The server MUST close the connection upon receiving a frame that is not
     * masked ... with a status code of 1002". */
    if (!(b1 & 0x80)) {
        fail(r, ev, LV_WS_CLOSE_PROTOCOL, "unmasked client frame");
        return false;
    }
    if (op & 0x8) {
        /* Section 5.5: "All control frames MUST have a payload length of 125 bytes or less and
         * MUST NOT be fragmented." */
        if (!fin || (b1 & 0x7F) > 125) {
            fail(r, ev, LV_WS_CLOSE_PROTOCOL, fin ? "control frame over 125 bytes" : "fragmented control frame");
            return false;
        }
    } else if (op == LV_WS_OP_CONT) {
        if (!r->in_message) {
            fail(r, ev, LV_WS_CLOSE_PROTOCOL, "continuation frame outside a message");
            return false;
        }
    } else if (r->in_message) {
        /* Section 5.4: fragments of one message are not interleaved with another's. */
        fail(r, ev, LV_WS_CLOSE_PROTOCOL, "new message inside a fragmented message");
        return false;
    }
    return true;
}

/* The whole header is in: set up the frame, and start or continue the message. */
static void start_frame(lv_ws_reader_t *r, lv_ws_event_t *ev)
{
    const uint8_t *h = r->hdr;
    unsigned len7 = h[1] & 0x7F;
    uint64_t len = len7;
    size_t at = 2;

    if (len7 == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        at = 4;
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        at = 10;
        /* Section 5.2: "the most significant bit MUST be 0". */
        if (len >> 63) {
            fail(r, ev, LV_WS_CLOSE_PROTOCOL, "64-bit length with the top bit set");
            return;
        }
    }
    memcpy(r->mask, h + at, 4);
    r->mask_pos = 0;
    r->frame_left = len;
    r->frame_op = h[0] & 0x0F;
    r->frame_fin = (h[0] & 0x80) != 0;
    r->in_frame = true;

    if (r->frame_op & 0x8) {
        r->ctl_len = 0;
        return;
    }
    if (r->frame_op != LV_WS_OP_CONT) {
        r->in_message = true;
        r->msg_binary = r->frame_op == LV_WS_OP_BINARY;
        r->skipping = false;
        r->skipped = 0;
        lv_buf_reset(&r->msg);
        lv_utf8_init(&r->utf8);
    }
    if (r->skipping)
        return;
    /* The cap is checked against the announced length, so a message that will not fit is
     * refused before any of it is buffered. The buffer still grows only as bytes arrive: an
     * announced length costs no memory until it is sent. */
    size_t cap = r->msg_binary ? r->max_message_bytes : r->max_text_bytes;
    if (len > (uint64_t)(cap - LV_MIN(cap, r->msg.len))) {
        uint64_t total = (uint64_t)r->msg.len + len;
        r->skipping = true;
        r->skipped = total > SIZE_MAX ? SIZE_MAX : (size_t)total;
        lv_buf_reset(&r->msg);
        ev->kind = LV_WS_EV_TOO_BIG;
        ev->binary = r->msg_binary;
        ev->len = r->skipped;
    }
}

/* Section 5.3: "octet i of the transformed data is the XOR of octet i of the original data with
 * octet at index i modulo 4 of the masking key". */
static void unmask(lv_ws_reader_t *r, uint8_t *p, size_t n)
{
    size_t m = r->mask_pos, i = 0;
    /* Video frames are the bulk of client traffic: XOR eight bytes at a time with the key
     * repeated from the current position. */
    if (n >= 16) {
        uint8_t k8[8];
        uint64_t k, w;
        for (size_t j = 0; j < 8; j++)
            k8[j] = r->mask[(m + j) & 3];
        memcpy(&k, k8, 8);
        for (; i + 8 <= n; i += 8) {
            memcpy(&w, p + i, 8);
            w ^= k;
            memcpy(p + i, &w, 8);
        }
    }
    for (; i < n; i++)
        p[i] ^= r->mask[(m + i) & 3];
    r->mask_pos = (m + n) & 3;
}

/* Section 7.4.1 and the IANA registry: the codes a peer may send. 1004 is reserved; 1005, 1006
 * and 1015 "MUST NOT be set as a status code in a Close control frame"; 1016..2999 are
 * unassigned or for extensions; 3000..4999 belong to libraries and applications. */
static bool close_code_ok(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

static void finish_control(lv_ws_reader_t *r, lv_ws_event_t *ev)
{
    ev->data = r->ctl;
    ev->len = r->ctl_len;
    if (r->frame_op == LV_WS_OP_PING) {
        ev->kind = LV_WS_EV_PING;
        return;
    }
    if (r->frame_op == LV_WS_OP_PONG) {
        ev->kind = LV_WS_EV_PONG;
        return;
    }
    /* Section 5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte
     * unsigned integer ... Following the 2-byte integer, the body MAY contain UTF-8-encoded
     * data". */
    if (r->ctl_len == 0) {
        ev->kind = LV_WS_EV_CLOSE;
        ev->close_code = 1005; /* section 7.1.5: no status code was present */
        return;
    }
    if (r->ctl_len == 1) {
        fail(r, ev, LV_WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload");
        return;
    }
    int code = r->ctl[0] << 8 | r->ctl[1];
    if (!close_code_ok(code)) {
        fail(r, ev, LV_WS_CLOSE_PROTOCOL, "invalid close code");
        return;
    }
    if (!lv_utf8_valid(r->ctl + 2, r->ctl_len - 2)) {
        fail(r, ev, LV_WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
        return;
    }
    ev->kind = LV_WS_EV_CLOSE;
    ev->close_code = code;
    ev->data = r->ctl + 2;
    ev->len = r->ctl_len - 2;
}

static void finish_frame(lv_ws_reader_t *r, lv_ws_event_t *ev)
{
    r->in_frame = false;
    r->hdr_len = 0;
    if (r->frame_op & 0x8) {
        finish_control(r, ev);
        return;
    }
    if (!r->frame_fin)
        return;
    r->in_message = false;
    if (r->skipping) {
        r->skipping = false; /* the over-cap message is over; TOO_BIG was its only event */
        return;
    }
    /* Section 8.1: text that is not valid UTF-8 fails the connection, 1007 (section 7.4.1). */
    if (!r->msg_binary && !lv_utf8_done(&r->utf8)) {
        fail(r, ev, LV_WS_CLOSE_INVALID_DATA, "text message is not UTF-8");
        return;
    }
    ev->kind = LV_WS_EV_MESSAGE;
    ev->binary = r->msg_binary;
    ev->data = r->msg.data ? (const uint8_t *)r->msg.data : r->ctl; /* non-NULL even when empty */
    ev->len = r->msg.len;
}

/* Unmasked payload bytes of the current frame. */
static void take_payload(lv_ws_reader_t *r, const uint8_t *p, size_t n, lv_ws_event_t *ev)
{
    if (r->frame_op & 0x8) {
        memcpy(r->ctl + r->ctl_len, p, n); /* n <= 125 - ctl_len: the length was checked */
        r->ctl_len += n;
        return;
    }
    if (r->skipping)
        return; /* dropped bytes are never interpreted, so not checked as UTF-8 either */
    if (lv_buf_append(&r->msg, p, n)) {
        fail(r, ev, LV_WS_CLOSE_INTERNAL, "out of memory for a message");
        return;
    }
    /* Checked as the bytes arrive, so a bad byte fails the connection at once, not at the end
     * of a long fragmented message. */
    if (!r->msg_binary && !lv_utf8_feed(&r->utf8, p, n))
        fail(r, ev, LV_WS_CLOSE_INVALID_DATA, "text message is not UTF-8");
}

void lv_ws_reader_feed(lv_ws_reader_t *r, uint8_t *in, size_t len, size_t *used, lv_ws_event_t *ev)
{
    size_t pos = 0;

    memset(ev, 0, sizeof(*ev));
    ev->kind = LV_WS_EV_NONE;
    if (r->failed) {
        ev->kind = LV_WS_EV_ERROR;
        ev->close_code = r->err_code;
        ev->why = r->err_why;
        goto out;
    }
    /* The previous event's data is no longer in use (it was valid until this call). */
    if (!r->in_message && r->msg.cap > MSG_KEEP_BYTES) {
        size_t max = r->msg.max;
        lv_buf_free(&r->msg);
        lv_buf_init(&r->msg, max);
    }

    /* One event at most per call; every pass consumes bytes or ends the loop. */
    while (ev->kind == LV_WS_EV_NONE) {
        if (!r->in_frame) {
            size_t need = header_need(r);
            while (r->hdr_len < need && pos < len) {
                r->hdr[r->hdr_len++] = in[pos++];
                if (r->hdr_len == 2) {
                    if (!check_first_bytes(r, ev))
                        goto out;
                    need = header_need(r);
                }
            }
            if (r->hdr_len < need)
                break;
            start_frame(r, ev);
            if (r->failed)
                break;
            /* An empty frame ends with its header (and never passes a cap: no TOO_BIG). */
            if (r->frame_left == 0 && ev->kind == LV_WS_EV_NONE)
                finish_frame(r, ev);
            continue;
        }
        if (pos == len)
            break;
        size_t n = (size_t)LV_MIN(r->frame_left, (uint64_t)(len - pos));
        uint8_t *p = in + pos;
        unmask(r, p, n);
        pos += n;
        r->frame_left -= n;
        take_payload(r, p, n, ev);
        if (r->failed)
            break;
        if (r->frame_left == 0)
            finish_frame(r, ev);
    }
out:
    *used = pos;
}

size_t lv_ws_frame_header(uint8_t out[10], int op, uint64_t len)
{
    /* Section 5.2: FIN, no RSV bits, the opcode; the length in the fewest bytes ("the minimal
     * number of bytes MUST be used to encode the length"); servers never mask (section 5.1). */
    out[0] = (uint8_t)(0x80 | (op & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    len &= INT64_MAX; /* the top bit MUST be 0; no payload comes near it */
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

size_t lv_ws_close_frame(uint8_t out[127], int code, const char *reason)
{
    bool sendable = code >= 1000 && code <= 4999 && code != 1005 && code != 1006 && code != 1015;
    size_t rlen = 0;

    if (!sendable)
        return lv_ws_frame_header(out, LV_WS_OP_CLOSE, 0);
    if (reason) {
        /* Section 5.5: a control payload is at most 125 bytes, two of them the code. */
        rlen = lv_utf8_cut(reason, strlen(reason), 123);
        if (!lv_utf8_valid(reason, rlen))
            rlen = 0;
    }
    size_t h = lv_ws_frame_header(out, LV_WS_OP_CLOSE, 2 + rlen);
    out[h] = (uint8_t)(code >> 8);
    out[h + 1] = (uint8_t)code;
    if (rlen)
        memcpy(out + h + 2, reason, rlen);
    return h + 2 + rlen;
}
