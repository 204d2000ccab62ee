/* lg_ws.h - the client side of RFC 6455 for the load generator: the upgrade request and its
 * answer check, masked frame encoding and an incremental, I/O-free frame parser. Pure: no sockets. */
#ifndef LG_WS_H
#define LG_WS_H

#include <stddef.h>
#include <stdint.h>

#include "lv_buf.h"

enum {
    LG_WS_CONT = 0x0,
    LG_WS_TEXT = 0x1,
    LG_WS_BINARY = 0x2,
    LG_WS_CLOSE = 0x8,
    LG_WS_PING = 0x9,
    LG_WS_PONG = 0xA,
};

#define LG_WS_KEY_LEN 24         /* base64 of 16 random bytes */
#define LG_WS_ACCEPT_LEN 28      /* base64 of a SHA-1 digest */
#define LG_WS_MAX_HDR 14         /* client frame header: 2 + 8 (length) + 4 (mask key) */
#define LG_WS_HTTP_MAX 8192      /* the upgrade answer's header block */

/** Write the Sec-WebSocket-Key for 16 random bytes into out (24 chars + NUL). */
void lg_ws_make_key(const unsigned char rnd[16], char out[LG_WS_KEY_LEN + 1]);

/** Sec-WebSocket-Accept for key: base64(SHA-1(key + RFC 6455 GUID)) into out (28 chars + NUL).
 * Returns 0, or LV_EIO when the digest is unavailable. */
int lg_ws_accept_for(const char *key, char out[LG_WS_ACCEPT_LEN + 1]);

/** Append the HTTP/1.1 upgrade request to out. host is what goes into Host (host[:port]), path
 * starts with '/', token may be NULL (no Authorization header). Returns 0 or an lv_buf error. */
int lg_ws_upgrade_request(lv_buf_t *out, const char *host, const char *path, const char *token,
                          const char *key);

/** Look for the end of the answer's header block (CRLF CRLF) in p[0..n).
 * Returns the header length including the blank line, 0 when more bytes are needed. */
size_t lg_ws_http_header_end(const char *p, size_t n);

/** Check a complete header block (hdr_len from lg_ws_http_header_end) against RFC 6455 4.1:
 * status 101, "Upgrade: websocket", "Connection" naming upgrade, and the Sec-WebSocket-Accept that
 * matches key. *status gets the HTTP status (0 when the status line does not parse).
 * Returns 0 when the upgrade is accepted, LV_EAUTH for 401/403, LV_ELIMIT for 429, LV_EPARSE
 * otherwise. */
int lg_ws_check_upgrade(const char *p, size_t hdr_len, const char *key, int *status);

/** Write a client frame header (FIN set, MASK set, key as its 4 bytes in wire order) for a payload
 * of len bytes into out (LG_WS_MAX_HDR bytes of room). Returns the header length (6, 8 or 14). */
size_t lg_ws_frame_header(unsigned char *out, int opcode, uint64_t len, const unsigned char key[4]);

/** dst[i] = src[i] ^ key[(offset + i) % 4] for i < n, eight bytes at a time. dst and src may be
 * the same buffer; otherwise they must not overlap. */
void lg_ws_mask(unsigned char *dst, const unsigned char *src, size_t n, const unsigned char key[4],
                size_t offset);

/** Append one whole masked frame (header + masked payload) to out; for small control and text
 * messages. Returns 0 or an lv_buf error. */
int lg_ws_append_frame(lv_buf_t *out, int opcode, const void *payload, size_t len,
                       const unsigned char key[4]);

/* Incremental server-frame parser. Bytes that do not yet form a whole frame are kept in partial
 * (at most one frame: max_msg + 10 bytes); a fragmented message is rebuilt in msg (max_msg bytes).
 * The common case, whole frames inside one read, is parsed in place without copying. */
typedef struct {
    lv_buf_t partial;
    lv_buf_t msg;
    int msg_opcode;   /* opcode of the fragmented message being rebuilt; 0 when none */
    size_t max_msg;   /* cap on one message's payload */
} lg_ws_rx_t;

/** Called once per complete message (text or binary, reassembled) and per control frame (close,
 * ping, pong). p is valid only during the call. Return 0 to go on, nonzero to stop parsing
 * (the connection is going away). */
typedef int (*lg_ws_msg_cb)(void *ud, int opcode, const char *p, size_t n);

void lg_ws_rx_init(lg_ws_rx_t *rx, size_t max_msg);
void lg_ws_rx_free(lg_ws_rx_t *rx);

/** Feed bytes from the server. Returns 0 when all were consumed, 1 when the callback asked to
 * stop, LV_EPARSE on a protocol error (the caller closes with 1002), LV_ELIMIT when a message is
 * over max_msg (close 1009), LV_ENOMEM. After an error the parser must not be fed again. */
int lg_ws_rx_feed(lg_ws_rx_t *rx, const char *data, size_t len, lg_ws_msg_cb cb, void *ud);

#endif
