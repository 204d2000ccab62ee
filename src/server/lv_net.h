/* lv_net.h - the front door's sockets on the app's libuv loop: listeners, accepted connections
 * (plain TCP or TLS), a bounded write queue of refcounted messages per socket, time boxes per
 * phase, and the caps that keep one peer address from crowding out the others before a request
 * says who its client is (lv_sock_t.ip vs client_ip). The protocol
 * on top (HTTP/1.1, then WebSocket after an upgrade) plugs in through lv_sock_ops_t. Everything
 * here runs on the loop thread. */
#ifndef LV_NET_H
#define LV_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_buf.h"
#include "lv_queue.h"
#include "lv_tlist.h"

/* ---------- outgoing messages ---------- */

/* Headroom before a payload: room for the longest WebSocket frame header (RFC 6455 section 5.2:
 * 2 + 8 bytes for a server frame, which is never masked), so header and payload leave in one
 * write without a copy. */
#define LV_MSG_PRE 10

/* Bytes queued to one or more sockets. Refcounted because one delta fans out to every socket of
 * a session; immutable once built. */
typedef struct lv_msg {
    int refs;
    bool binary;
    size_t len;                  /* payload bytes */
    const unsigned char *wire;   /* what goes on the wire: frame header (if any), then payload */
    size_t wire_len;
    unsigned char buf[];         /* LV_MSG_PRE bytes of headroom, then the payload (unless static) */
} lv_msg_t;

/** A WebSocket data message (text or binary) with its frame header; the payload is copied. */
lv_msg_t *lv_msg_new(const void *p, size_t len, bool binary);
/** A WebSocket text message written in place, with no copy: returns a message with room for
 * max_payload bytes and points *w at that room (an lv_buf whose cap and max are max_payload: an
 * append past it fails with LV_ELIMIT, nothing is reallocated). Write the payload with the lv_buf
 * and lv_json_str functions, then lv_msg_text_finish; to give up, lv_msg_unref the message. Never
 * lv_buf_free *w: its memory is the message's. NULL (out of memory) leaves *w empty. */
lv_msg_t *lv_msg_text_start(size_t max_payload, lv_buf_t *w);
/** Put the frame header in front of the w->len bytes written and return the finished message
 * (possibly moved: its unused room is given back when large); *w is emptied. */
lv_msg_t *lv_msg_text_finish(lv_msg_t *m, lv_buf_t *w);
/** A WebSocket text message holding a JSON value (jansson json_t); the value is not consumed. */
lv_msg_t *lv_msg_from_json(const void *json_value);
/** A WebSocket control frame (close, ping, pong; payload <= 125 bytes). */
lv_msg_t *lv_msg_ws_control(int op, const void *p, size_t len);
/** Raw bytes (an HTTP head or body), copied. */
lv_msg_t *lv_msg_raw(const void *p, size_t len);
/** Raw bytes that outlive every socket (embedded assets): not copied. */
lv_msg_t *lv_msg_static(const void *p, size_t len);
void lv_msg_unref(lv_msg_t *m);

/* ---------- defaults (the one place they are set; `livevlm serve --help` lists them) ---------- */

#define LV_NET_HANDSHAKE_TIMEOUT_MS 10000 /* TLS handshake, from accept */
#define LV_NET_HEADER_TIMEOUT_MS 10000    /* a whole request head, from accept or its first byte */
#define LV_NET_BODY_TIMEOUT_MS 30000      /* a whole request body, from the end of its head */
#define LV_NET_KEEPALIVE_TIMEOUT_MS 5000  /* idle between requests on a kept-alive connection */
#define LV_NET_WRITE_STALL_MS 30000       /* queued output that makes no progress */
#define LV_NET_WS_PING_MS 30000           /* a WebSocket silent this long is pinged ... */
#define LV_NET_WS_HANGUP_MS 10000         /* ... and closed if still silent this much later (40 s) */
#define LV_NET_LINGER_MS 2000             /* after our FIN, wait this long for the peer's */
#define LV_NET_MAX_PENDING_PER_IP 64      /* sockets per address still in handshake or head */
#define LV_NET_FD_RESERVE 256             /* descriptors kept for backends, files, Redis */

/* Per-socket queue: the WebSocket layer caps messages at LV_CONN_TXQ_MAX (256, lv_wsconn.h); the
 * rest is room for control frames (pong, close) that must never be refused. */
#define LV_SOCK_TXQ_MAX 272

typedef enum {
    LV_TMO_NONE = 0,
    LV_TMO_HANDSHAKE,   /* internal: TLS handshake */
    LV_TMO_HEAD,        /* protocol: a request head */
    LV_TMO_BODY,        /* protocol: a request body */
    LV_TMO_KEEPALIVE,   /* protocol: waiting for the next request */
    LV_TMO_WS_IDLE,     /* protocol: WebSocket silent, send a ping */
    LV_TMO_WS_PONG,     /* protocol: WebSocket still silent after the ping */
    LV_TMO_LINGER,      /* internal: closing, waiting for the peer's FIN */
    LV_TMO__COUNT
} lv_tmo_kind_t;

typedef struct {
    unsigned timeout_ms[LV_TMO__COUNT];  /* per kind; 0 entries get the defaults above */
    unsigned write_stall_ms;
    size_t max_pending_per_ip;
    size_t max_conns;                    /* 0: RLIMIT_NOFILE minus LV_NET_FD_RESERVE */
} lv_net_limits_t;

/** Fill l with the defaults above. */
void lv_net_limits_defaults(lv_net_limits_t *l);

/* ---------- sockets ---------- */

typedef struct lv_net lv_net_t;
typedef struct lv_sock lv_sock_t;

/* What the protocol on a socket is told. Every callback runs on the loop thread; none is called
 * after lv_sock_close() except on_close. A callback may call lv_sock_close() on its own socket:
 * the socket is only freed later, after on_close. */
typedef struct {
    /** The socket can carry the protocol now (plain: at once; TLS: after the handshake). */
    void (*on_ready)(lv_sock_t *s);
    /** Bytes arrived: data[0..len) may be modified in place and is valid during the call only.
     * Return how many were used; the rest is kept (up to the socket's input cap) and offered
     * again, first, with whatever arrives next or after lv_sock_resume_read(). */
    size_t (*on_data)(lv_sock_t *s, char *data, size_t len);
    /** The write queue became empty (optional). */
    void (*on_drain)(lv_sock_t *s);
    /** A protocol time box (lv_sock_arm) passed. The protocol decides (usually: close). */
    void (*on_timeout)(lv_sock_t *s, lv_tmo_kind_t kind);
    /** The server is shutting down (optional; default: close after flushing). */
    void (*on_shutdown)(lv_sock_t *s);
    /** The socket is gone: release the protocol state. Exactly once, from a later loop turn than
     * the lv_sock_close() that caused it. */
    void (*on_close)(lv_sock_t *s);
} lv_sock_ops_t;

struct lv_sock {
    /* public (read-only except data) */
    void *data;                   /* the protocol's state */
    const lv_sock_ops_t *ops;
    lv_net_t *net;
    char ip[48];                  /* the peer's address as text (IPv4-mapped IPv6 shown as IPv4,
                                     lv_ip_text): what the limits before a request head count */
    char client_ip[48];           /* the client's, as text alike: ip, or for the request being served
                                     the address a trusted proxy forwarded (set by the protocol,
                                     lv_httpd.c, once per request head); everything that acts for
                                     a request or a WebSocket counts this one */
    bool tls;
    bool closing;                 /* lv_sock_close or lv_sock_close_after_flush was called */
    /* private */
    int fd;
    uv_poll_t poll;
    int poll_events;              /* events currently asked of poll */
    void *ssl;                    /* SSL *, or NULL */
    bool handshaking;
    bool tls_read_wants_write, tls_write_wants_read;
    bool tls_drained;             /* OpenSSL's last read of the socket left it empty (lv_tlsio_new) */
    bool tls_shutdown_sent;
    size_t tls_wlen;              /* an SSL_write to repeat after WANT_*: its length, 0 = none */
    size_t tls_wmsgs;             /* ... and how many whole messages it covered */
    bool read_paused;
    bool eof;                     /* the peer sent FIN (or TLS close_notify) */
    bool flush_then_close;        /* closing gracefully: flush, FIN, linger */
    bool fin_sent;
    bool closed;                  /* handle closing; freed in its close callback */
    bool pending;                 /* counted in the per-address "handshake or head" cap */
    bool write_blocked;           /* the last write hit EAGAIN: wait for writability */
    lv_buf_t in;                  /* input the protocol has not used yet (capped at in_max) */
    size_t in_max;
    lv_msg_t *txq[LV_SOCK_TXQ_MAX];
    size_t tx_head, tx_len;       /* ring of queued messages */
    size_t tx_off;                /* bytes of the head message already written */
    size_t tx_bytes;              /* wire bytes queued, tx_off not subtracted */
    lv_tlist_entry_t phase_tmo;   /* one protocol or internal time box at a time */
    lv_tmo_kind_t phase_kind;
    lv_tlist_entry_t write_tmo;   /* write stall */
    lv_queue_t link;              /* in net->socks */
    lv_queue_t posted_link;       /* in net->posted while work is posted */
    bool post_read, post_flush;
};

/** Queue m on s (takes a new reference). Writing starts on a later loop turn, so messages queued
 * together leave together. LV_ECLOSED when s is closing, LV_ELIMIT when the queue is full. */
int lv_sock_send(lv_sock_t *s, lv_msg_t *m);
/** Wire bytes and messages queued and not yet written. */
size_t lv_sock_queued_bytes(const lv_sock_t *s);
size_t lv_sock_queued_msgs(const lv_sock_t *s);
/** Stop reading from the socket (pull-based backpressure); input already buffered stays. */
void lv_sock_pause_read(lv_sock_t *s);
/** Read again; buffered input is offered to on_data on a later loop turn. */
void lv_sock_resume_read(lv_sock_t *s);
/** Cap on input kept for the protocol (default 16 KiB; at most 64 KiB). */
void lv_sock_set_input_cap(lv_sock_t *s, size_t max_bytes);
/** Arm the socket's one time box (HEAD, BODY, KEEPALIVE, WS_IDLE, WS_PONG), replacing any other;
 * arming the same kind again restarts it. */
void lv_sock_arm(lv_sock_t *s, lv_tmo_kind_t kind);
void lv_sock_disarm(lv_sock_t *s);
/** Count s in (or out of) its address's "still in handshake or head" sockets. LV_ELIMIT when
 * counting it in passes max_pending_per_ip (it is then not counted; close it). */
int lv_sock_set_pending(lv_sock_t *s, bool pending);
/** Close now; queued output is dropped. Idempotent. */
void lv_sock_close(lv_sock_t *s);
/** Stop taking input, write what is queued, then end the connection cleanly (TLS close_notify,
 * FIN, a short linger for the peer's FIN so unread input does not turn into an RST that destroys
 * the last response). Bounded by the write-stall and linger time boxes. */
void lv_sock_close_after_flush(lv_sock_t *s);

/* ---------- listeners ---------- */

typedef struct {
    const char *host;             /* IPv4 or IPv6 literal (brackets allowed), or "localhost" */
    int port;                     /* 0 picks a free port */
    void *ssl_ctx;                /* SSL_CTX * for TLS (lv_tlsio_ctx_create), taken over; or NULL */
    lv_net_limits_t limits;
    /** A new socket: set s->ops and s->data. Called before any other callback. */
    void (*on_accept)(lv_sock_t *s);
    /** Adjust the count of sockets of address ip still in handshake or head; return the new count.
     * The table lives with the app's other per-address counters. */
    size_t (*count_pending)(void *ud, const char *ip, int delta);
    void *ud;                     /* for on_accept (lv_net_user) and count_pending */
} lv_net_config_t;

/** Bind and listen. On failure writes a sentence to err and returns LV_EINVAL (not an address
 * literal) or LV_EIO (bind/listen failed: in use, not an address of this machine...). */
int lv_net_create(uv_loop_t *loop, const lv_net_config_t *cfg, lv_net_t **out, char *err, size_t err_size);
/** The port actually bound (useful with port 0). */
int lv_net_port(const lv_net_t *net);
/** cfg->ud. */
void *lv_net_user(const lv_net_t *net);
/** Sockets open now. */
size_t lv_net_count(const lv_net_t *net);
/** Count a request from a trusted proxy whose X-Forwarded-For could not be used (empty, malformed,
 * over its cap: lv_httpd.c), so the proxy's own address stood for the client; and read the count
 * (livevlm_forwarded_for_invalid_total in /metrics). */
void lv_net_forwarded_invalid_inc(lv_net_t *net);
uint64_t lv_net_forwarded_invalid(const lv_net_t *net);
/** Stop accepting, tell every socket (on_shutdown), and call done once every socket is gone or
 * deadline_ms passed (the rest are then closed). done runs on a later loop turn, once. */
void lv_net_shutdown(lv_net_t *net, unsigned deadline_ms, void (*done)(void *ud), void *ud);
/** Close every socket and the listeners; memory is freed once libuv has closed the handles (the
 * loop must run on). NULL is fine. */
void lv_net_destroy(lv_net_t *net);

#endif
