/* lv_wsframe.h - the WebSocket wire protocol on the server side (RFC 6455): the opening
 * handshake's accept key, an incremental reader of client frames that assembles messages, and
 * frame headers for what the server sends. Pure: no I/O; the reader allocates only the message
 * being assembled, capped. */
#ifndef LV_WSFRAME_H
#define LV_WSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_buf.h"
#include "lv_utf8.h"

enum {
    LV_WS_OP_CONT = 0x0,
    LV_WS_OP_TEXT = 0x1,
    LV_WS_OP_BINARY = 0x2,
    LV_WS_OP_CLOSE = 0x8,
    LV_WS_OP_PING = 0x9,
    LV_WS_OP_PONG = 0xA,
};

/* Close status codes used by the server (RFC 6455 section 7.4.1). */
enum {
    LV_WS_CLOSE_NORMAL = 1000,
    LV_WS_CLOSE_GOING_AWAY = 1001,    /* server shutting down */
    LV_WS_CLOSE_PROTOCOL = 1002,      /* unmasked client frame, bad opcode, bad fragmentation */
    LV_WS_CLOSE_INVALID_DATA = 1007,  /* text message that is not UTF-8 */
    LV_WS_CLOSE_POLICY = 1008,
    LV_WS_CLOSE_TOO_BIG = 1009,
    LV_WS_CLOSE_INTERNAL = 1011,
};

/** Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 section 4.2.2: base64 of
 * SHA-1 of key + the GUID). out gets 28 characters and a NUL. LV_EINVAL unless key is 24 base64
 * characters that decode to 16 bytes. */
int lv_ws_accept_key(const char *key, size_t key_len, char out[29]);

/* What one call of lv_ws_reader_feed() found. */
typedef enum {
    LV_WS_EV_NONE = 0,     /* consumed everything given; need more bytes */
    LV_WS_EV_MESSAGE,      /* a whole text or binary message (fragments joined) */
    LV_WS_EV_PING,         /* a ping; answer with a pong carrying the same payload */
    LV_WS_EV_PONG,
    LV_WS_EV_CLOSE,        /* the peer's close frame; code 1005 when it carried none */
    LV_WS_EV_TOO_BIG,      /* a message passed max_message_bytes: its bytes are being skipped,
                              without buffering, until it ends; reported once, when it starts
                              passing the cap (as soon as a frame header announces a length
                              past it), with len = the message's bytes so far, that frame's
                              announced length included */
    LV_WS_EV_ERROR,        /* protocol violation: close with ev->close_code and stop reading */
} lv_ws_event_kind_t;

typedef struct {
    lv_ws_event_kind_t kind;
    bool binary;                 /* MESSAGE / TOO_BIG: the message's type */
    const uint8_t *data;         /* MESSAGE/PING/PONG/CLOSE payload (CLOSE: the reason text);
                                    valid until the next feed */
    size_t len;
    int close_code;              /* CLOSE: the peer's code; ERROR: the code to close with */
    const char *why;             /* ERROR: a short static reason for the log and close frame */
} lv_ws_event_t;

/* Reader of client-to-server frames. Enforces: every client frame is masked (section 5.1: else
 * close 1002); reserved bits clear (no extension is negotiated); known opcodes; control frames
 * final with at most 125 bytes; continuation only inside a fragmented message and a new data
 * frame never inside one; 64-bit lengths with the top bit clear; text messages valid UTF-8
 * (1007); close payloads of 0 or >= 2 bytes with a valid code and UTF-8 reason. */
typedef struct {
    size_t max_message_bytes;    /* cap of a binary message (lv_ws_reader_init) */
    size_t max_text_bytes;       /* cap of a text message */
    /* frame header being read */
    uint8_t hdr[14];
    size_t hdr_len;
    uint64_t frame_left;         /* payload bytes of the current frame still to come */
    uint8_t mask[4];
    size_t mask_pos;
    int frame_op;
    bool frame_fin;
    bool in_frame;
    /* message being assembled */
    bool in_message;
    bool msg_binary;
    bool skipping;               /* over the cap: bytes are dropped until the message ends */
    size_t skipped;
    lv_buf_t msg;
    lv_utf8_state_t utf8;        /* a text message is checked as it arrives */
    uint8_t ctl[125];            /* control frame payload */
    size_t ctl_len;
    bool failed;                 /* sticky after an ERROR event */
    int err_code;                /* the ERROR event repeated while failed */
    const char *err_why;
} lv_ws_reader_t;

/** Start a reader; binary messages are capped at max_binary_bytes, text at max_text_bytes. */
void lv_ws_reader_init(lv_ws_reader_t *r, size_t max_binary_bytes, size_t max_text_bytes);
void lv_ws_reader_free(lv_ws_reader_t *r);

/** Unmask and consume bytes from in[0..len) (the buffer is modified in place) until one event is
 * found or the input runs out. *used gets the bytes consumed; call again with the rest while
 * the event is not LV_WS_EV_NONE. After LV_WS_EV_ERROR every call returns it again. Events'
 * data stay valid until the next call. */
void lv_ws_reader_feed(lv_ws_reader_t *r, uint8_t *in, size_t len, size_t *used, lv_ws_event_t *ev);

/** Write a server frame header (FIN set, unmasked, as section 5.1 requires of servers) for a
 * payload of len bytes with opcode op into out; returns its length (2, 4 or 10). */
size_t lv_ws_frame_header(uint8_t out[10], int op, uint64_t len);

/** A whole close frame (header, code, reason cut to 123 bytes at a UTF-8 boundary) into out;
 * returns its length. A code that must not be sent (outside 1000..4999, or 1005, 1006, 1015:
 * RFC 6455 section 7.4.1) gives a close frame without a payload; a reason that is not valid
 * UTF-8 is left out. reason may be NULL. */
size_t lv_ws_close_frame(uint8_t out[127], int code, const char *reason);

#endif
