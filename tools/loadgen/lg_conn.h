/* lg_conn.h - one client byte stream for the load generator: libuv TCP from a chosen source
 * address, optionally TLS through OpenSSL memory BIOs (no threads, no blocking calls). */
#ifndef LG_CONN_H
#define LG_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "lv_buf.h"

typedef struct lg_conn lg_conn_t;

typedef struct {
    /** The stream is up (TCP connected and, with TLS, the handshake done): lg_conn_send works. */
    void (*on_open)(lg_conn_t *c);
    /** Plaintext from the peer. p is valid only during the call. The callback may call
     * lg_conn_close(); no more on_data follows then. */
    void (*on_data)(lg_conn_t *c, const char *p, size_t n);
    /** Fires exactly once per lg_conn_start() that returned 0, after the handle is closed, with
     * c->fail set when the stream ended on an error (NULL for a close we asked for or a clean EOF
     * after lg_conn_close). The lg_conn_t may be reused or freed from here on. */
    void (*on_closed)(lg_conn_t *c);
} lg_conn_cb_t;

/* Writes: while nothing is queued, bytes go straight out with uv_try_write; what the kernel does
 * not take is copied into pending, and pending is written with one uv_write at a time (it becomes
 * inflight, which stays untouched until the write completes). The total is capped: a peer that
 * stops reading makes lg_conn_send fail with LV_ELIMIT. */
struct lg_conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    const lg_conn_cb_t *cb;
    void *data;           /* the owner's */
    SSL *ssl;             /* NULL for plain TCP */
    BIO *rbio, *wbio;     /* owned by ssl */
    lv_buf_t pending;
    lv_buf_t inflight;
    const char *fail;     /* first error, a static string; NULL while none */
    bool started;         /* lg_conn_start succeeded: on_closed will fire */
    bool open;            /* on_open fired */
    bool writing;         /* a uv_write is in flight */
    bool closing;         /* uv_close was called */
    bool eof;             /* the peer ended its side */
    bool close_when_flushed;
};

/** Start connecting c (zeroed by the caller or reused after on_closed) to dst from src (NULL: any
 * source address). tls non-NULL: speak TLS with SNI sni (may be NULL). Returns 0 (on_closed will
 * fire exactly once) or an LV_E* code with c->fail set (nothing to close). */
int lg_conn_start(lg_conn_t *c, uv_loop_t *loop, const struct sockaddr *dst, const struct sockaddr *src,
                  SSL_CTX *tls, const char *sni, const lg_conn_cb_t *cb, void *data);

/** Send plaintext (encrypted first with TLS). The bytes are copied or written before this returns,
 * so p may be reused at once. Returns 0, LV_ECLOSED when closing, LV_ELIMIT when the queue is over
 * its cap, LV_EIO on a write error (the connection is then being closed). */
int lg_conn_send(lg_conn_t *c, const void *p, size_t n);

/** Bytes accepted by lg_conn_send but not yet handed to the kernel. */
size_t lg_conn_backlog(const lg_conn_t *c);

/** Close now (queued bytes are dropped); fail is recorded when none was before (NULL: a normal
 * close). Idempotent; on_closed fires later on the loop. */
void lg_conn_close(lg_conn_t *c, const char *fail);

/** Close once everything queued has been written (for a WebSocket close frame). */
void lg_conn_close_after_flush(lg_conn_t *c);

/** A client SSL_CTX for self-signed servers: no verification, TLS 1.2+, ALPN http/1.1.
 * NULL on failure. */
SSL_CTX *lg_conn_tls_ctx(void);

#endif
