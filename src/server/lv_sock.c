/* lv_sock.c - one front-door socket: its write queue (writev for plain TCP; for TLS, small
 * messages gathered into one record), reading with the input cap, the TLS handshake, poll events,
 * time boxes, and closing (at once, or after flushing with a FIN and a short linger). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lv_common.h"
#include "lv_log.h"
#include "lv_net_int.h"
#include "lv_tlsio.h"

#define READS_PER_WAKEUP 4
#define WRITES_PER_WAKEUP 4
#define WRITE_IOV_MAX 64
#define WRITE_BYTES_PER_CALL (256u << 10)
#define TLS_DIRECT_MIN 4096          /* messages this big are written from their own buffer */

static void sock_update_poll(lv_sock_t *s);
static void sock_read(lv_sock_t *s);
static void sock_flush(lv_sock_t *s);

static void post(lv_sock_t *s) { lv__net_post(s); }

/* ---------- the write queue ---------- */

static lv_msg_t *txq_at(const lv_sock_t *s, size_t k) { return s->txq[(s->tx_head + k) % LV_SOCK_TXQ_MAX]; }

static void txq_pop(lv_sock_t *s)
{
    lv_msg_t *m = s->txq[s->tx_head];
    s->tx_head = (s->tx_head + 1) % LV_SOCK_TXQ_MAX;
    s->tx_len--;
    s->tx_bytes -= m->wire_len;
    s->tx_off = 0;
    lv_msg_unref(m);
}

/* n bytes left the socket: drop the messages they finished. */
static void txq_consume(lv_sock_t *s, size_t n)
{
    while (s->tx_len && n) {
        lv_msg_t *m = s->txq[s->tx_head];
        size_t left = m->wire_len - s->tx_off;
        if (n < left) {
            s->tx_off += n;
            return;
        }
        n -= left;
        txq_pop(s);
    }
}

int lv_sock_send(lv_sock_t *s, lv_msg_t *m)
{
    if (s->closing)
        return LV_ECLOSED;
    if (s->tx_len >= LV_SOCK_TXQ_MAX)
        return LV_ELIMIT;
    if (m->wire_len == 0)
        return 0;
    m->refs++;
    s->txq[(s->tx_head + s->tx_len) % LV_SOCK_TXQ_MAX] = m;
    s->tx_len++;
    s->tx_bytes += m->wire_len;
    if (!s->write_blocked) {
        s->post_flush = true;
        post(s);
    }
    return 0;
}

size_t lv_sock_queued_bytes(const lv_sock_t *s) { return s->tx_bytes - s->tx_off; }
size_t lv_sock_queued_msgs(const lv_sock_t *s) { return s->tx_len; }

/* writev() as much of the queue as one call takes. */
static ssize_t plain_write_some(lv_sock_t *s)
{
    struct iovec iov[WRITE_IOV_MAX];
    size_t cnt = 0, total = 0;
    for (size_t k = 0; k < s->tx_len && cnt < WRITE_IOV_MAX && total < WRITE_BYTES_PER_CALL; k++) {
        lv_msg_t *m = txq_at(s, k);
        size_t off = k == 0 ? s->tx_off : 0;
        iov[cnt].iov_base = (void *)(m->wire + off);
        iov[cnt].iov_len = m->wire_len - off;
        total += iov[cnt].iov_len;
        cnt++;
    }
    ssize_t n = writev(s->fd, iov, (int)cnt);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? LV_EAGAIN : LV_EIO;
    txq_consume(s, (size_t)n);
    return n;
}

/* SSL_write is one buffer at a time, so small messages are gathered into one record's worth (one
 * encryption, one send), big ones go from their own buffer. After WANT_*, OpenSSL wants the very
 * same bytes again: the queue's head cannot have changed (only its tail grows), so gathering the
 * same number of messages again reproduces them. */
static ssize_t tls_write_some(lv_sock_t *s)
{
    lv_net_t *net = s->net;
    size_t msgs = s->tls_wlen ? s->tls_wmsgs : 0;
    if (!msgs) {
        msgs = 1;
        size_t total = txq_at(s, 0)->wire_len;
        if (total < TLS_DIRECT_MIN)
            while (msgs < s->tx_len && total + txq_at(s, msgs)->wire_len <= LV__TLS_GATHER)
                total += txq_at(s, msgs++)->wire_len;
    }
    const void *buf;
    size_t len = 0;
    if (msgs == 1) {
        buf = txq_at(s, 0)->wire;
        len = txq_at(s, 0)->wire_len;
    } else {
        for (size_t k = 0; k < msgs; k++) {
            lv_msg_t *m = txq_at(s, k);
            memcpy(net->tls_scratch + len, m->wire, m->wire_len);
            len += m->wire_len;
        }
        buf = net->tls_scratch;
    }
    lv_tls_want_t want;
    ssize_t n = lv_tlsio_write(s->ssl, buf, len, &want);
    if (n == LV_EAGAIN) {
        s->tls_wlen = len;
        s->tls_wmsgs = msgs;
        s->tls_write_wants_read = want == LV_TLS_WANT_READ;
        return n;
    }
    s->tls_wlen = 0;
    s->tls_write_wants_read = false;
    if (n < 0)
        return n;
    for (size_t k = 0; k < msgs; k++)
        txq_pop(s);
    return (ssize_t)len;
}

static void sock_finish_close(lv_sock_t *s);

static void sock_flush(lv_sock_t *s)
{
    if (s->closed || s->handshaking)
        return;
    lv_net_t *net = s->net;
    bool progress = false;
    for (int i = 0; i < WRITES_PER_WAKEUP && s->tx_len; i++) {
        ssize_t n = s->ssl ? tls_write_some(s) : plain_write_some(s);
        if (n == LV_EAGAIN) {
            s->write_blocked = !s->tls_write_wants_read;
            break;
        }
        if (n < 0) {
            lv_sock_close(s);
            return;
        }
        s->write_blocked = false;
        progress = true;
    }
    if (s->tx_len == 0) {
        s->write_blocked = false;
        lv_tlist_cancel(&s->write_tmo);
        if (s->flush_then_close) {
            sock_finish_close(s);
            return;
        }
        if (s->ops && s->ops->on_drain)
            s->ops->on_drain(s);
    } else {
        if (progress || !lv_tlist_armed(&s->write_tmo))
            lv_tlist_arm(&net->write_list, &s->write_tmo, uv_now(net->loop));
        if (!s->write_blocked && !s->tls_write_wants_read) {
            s->post_flush = true; /* budget spent: go on next turn, after the others */
            post(s);
        }
    }
    if (!s->closed)
        sock_update_poll(s);
}

/* ---------- reading ---------- */

void lv_sock_set_input_cap(lv_sock_t *s, size_t max_bytes)
{
    s->in_max = LV_MIN(LV_MAX(max_bytes, (size_t)1024), (size_t)LV__NET_RBUF);
    s->in.max = LV_MAX(s->in_max, s->in.len);
}

static void in_release(lv_sock_t *s)
{
    /* do not let one burst pin memory on an idle socket */
    if (s->in.len == 0 && s->in.cap > 4096)
        lv_buf_free(&s->in);
}

/* Offer buffered input to the protocol. */
static void sock_offer_input(lv_sock_t *s)
{
    if (s->in.len == 0 || s->read_paused || s->closing || s->handshaking)
        return;
    size_t used = s->ops->on_data(s, s->in.data, s->in.len);
    if (s->closed)
        return;
    if (s->closing) {
        lv_buf_free(&s->in);
        return;
    }
    lv_buf_consume(&s->in, used);
    in_release(s);
}

static void deliver(lv_sock_t *s, char *data, size_t n)
{
    if (s->in.len == 0) {
        size_t used = s->ops->on_data(s, data, n);
        if (s->closing)
            return;
        if (used < n && lv_buf_append(&s->in, data + used, n - used) != 0)
            lv_sock_close(s);
        return;
    }
    if (lv_buf_append(&s->in, data, n) != 0) {
        lv_sock_close(s);
        return;
    }
    sock_offer_input(s);
}

static void on_peer_eof(lv_sock_t *s)
{
    s->eof = true;
    lv_buf_free(&s->in);
    if (s->fin_sent || (s->flush_then_close && s->tx_len == 0))
        lv_sock_close(s);
    else
        lv_sock_close_after_flush(s); /* a half-closed client still gets what was queued for it */
}

static void sock_read(lv_sock_t *s)
{
    lv_net_t *net = s->net;
    bool drained = false; /* the last read wanted more from the socket */
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        if (s->closed || s->eof)
            return;
        bool discard = s->flush_then_close; /* closing: read only to see the peer's FIN */
        if (!discard && s->read_paused)
            break;
        size_t room = discard ? LV__NET_RBUF : s->in.len ? s->in_max - LV_MIN(s->in.len, s->in_max) : s->in_max;
        if (room == 0) {
            /* the protocol holds a full buffer without pausing: a bug, but never a busy loop on a
             * level-triggered readable socket */
            LV_WARN("closing a connection from %s whose unread input reached its cap", s->ip);
            lv_sock_close(s);
            return;
        }
        ssize_t n;
        if (s->ssl) {
            lv_tls_want_t want;
            n = lv_tlsio_read(s->ssl, net->rbuf, room, &want);
            s->tls_read_wants_write = n == LV_EAGAIN && want == LV_TLS_WANT_WRITE;
            if (n == LV_EAGAIN) {
                drained = true;
                break;
            }
        } else {
            n = recv(s->fd, net->rbuf, room, 0);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                break;
            if (n < 0)
                n = LV_EIO;
        }
        if (n < 0) {
            lv_sock_close(s);
            return;
        }
        if (n == 0) {
            on_peer_eof(s);
            return;
        }
        if (!discard)
            deliver(s, net->rbuf, (size_t)n);
        /* the socket was left empty (a short read): the next read would find EAGAIN, one system
         * call per frame for nothing. Poll is level-triggered, so what comes later wakes us. */
        if (s->ssl ? s->tls_drained && !lv_tlsio_pending(s->ssl) : (size_t)n < room) {
            drained = true;
            break;
        }
    }
    /* input inside OpenSSL (decrypted, or read ahead) gets no poll wake-up of its own; after a
     * read that wanted more, what it holds is part of a record and the socket's poll covers it */
    if (s->ssl && !drained && !s->closing && !s->read_paused && lv_tlsio_pending(s->ssl)) {
        s->post_read = true;
        post(s);
    }
}

void lv_sock_pause_read(lv_sock_t *s)
{
    if (s->read_paused || s->closed)
        return;
    s->read_paused = true;
    sock_update_poll(s);
}

void lv_sock_resume_read(lv_sock_t *s)
{
    if (s->closing)
        return;
    s->read_paused = false;
    s->post_read = true;
    post(s);
    sock_update_poll(s);
}

/* ---------- TLS handshake, poll events ---------- */

static void sock_handshake(lv_sock_t *s)
{
    lv_tls_want_t want;
    int rc = lv_tlsio_handshake(s->ssl, &want);
    if (rc == LV_EAGAIN) {
        s->tls_read_wants_write = want == LV_TLS_WANT_WRITE;
        sock_update_poll(s);
        return;
    }
    if (rc != 0) {
        LV_DEBUG("TLS handshake with %s failed", s->ip);
        lv_sock_close(s);
        return;
    }
    s->handshaking = false;
    s->tls_read_wants_write = false;
    lv_sock_disarm(s);
    s->ops->on_ready(s);
    if (s->closed)
        return;
    sock_read(s); /* the request may have come in the handshake's last flight */
    if (!s->closed)
        sock_update_poll(s);
}

static void on_sock_event(uv_poll_t *h, int status, int events)
{
    lv_sock_t *s = h->data;
    if (s->closed)
        return;
    if (status < 0) {
        lv_sock_close(s);
        return;
    }
    if (s->handshaking) {
        sock_handshake(s);
        return;
    }
    if (events & UV_WRITABLE) {
        if (s->tls_read_wants_write)
            sock_read(s);
        if (!s->closed)
            sock_flush(s);
    }
    if ((events & (UV_READABLE | UV_DISCONNECT)) && !s->closed) {
        if (s->tls_write_wants_read)
            sock_flush(s);
        if (!s->closed)
            sock_read(s);
    }
    if (!s->closed)
        sock_update_poll(s);
}

static void sock_update_poll(lv_sock_t *s)
{
    if (s->closed)
        return;
    int ev = 0;
    if (s->handshaking) {
        ev = s->tls_read_wants_write ? UV_WRITABLE : UV_READABLE;
    } else {
        if (!s->eof && (s->flush_then_close || !s->read_paused))
            ev |= UV_READABLE;
        if (s->tls_write_wants_read)
            ev |= UV_READABLE;
        if ((s->write_blocked && s->tx_len) || s->tls_read_wants_write)
            ev |= UV_WRITABLE;
    }
    if (ev == s->poll_events)
        return;
    s->poll_events = ev;
    if (ev)
        uv_poll_start(&s->poll, ev, on_sock_event);
    else
        uv_poll_stop(&s->poll);
}

/* ---------- time boxes ---------- */

void lv_sock_arm(lv_sock_t *s, lv_tmo_kind_t kind)
{
    if (s->closed || kind <= LV_TMO_NONE || kind >= LV_TMO__COUNT)
        return;
    s->phase_kind = kind;
    lv_tlist_arm(&s->net->lists[kind], &s->phase_tmo, uv_now(s->net->loop));
}

void lv_sock_disarm(lv_sock_t *s)
{
    lv_tlist_cancel(&s->phase_tmo);
    s->phase_kind = LV_TMO_NONE;
}

int lv_sock_set_pending(lv_sock_t *s, bool pending)
{
    lv_net_t *net = s->net;
    if (!net->cfg.count_pending || pending == s->pending || (pending && s->closing))
        return 0;
    if (!pending) {
        net->cfg.count_pending(net->cfg.ud, s->ip, -1);
        s->pending = false;
        return 0;
    }
    if (net->cfg.count_pending(net->cfg.ud, s->ip, +1) > net->lim.max_pending_per_ip) {
        net->cfg.count_pending(net->cfg.ud, s->ip, -1);
        return LV_ELIMIT;
    }
    s->pending = true;
    return 0;
}

/* ---------- closing ---------- */

static void on_sock_closed(uv_handle_t *h)
{
    lv_sock_t *s = h->data;
    lv_net_t *net = s->net;
    close(s->fd);
    lv_queue_remove(&s->link);
    if (s->ops && s->ops->on_close)
        s->ops->on_close(s);
    free(s);
    lv__net_sock_gone(net);
}

void lv_sock_close(lv_sock_t *s)
{
    if (s->closed)
        return;
    s->closed = s->closing = true;
    lv_tlist_cancel(&s->phase_tmo);
    lv_tlist_cancel(&s->write_tmo);
    if (lv_queue_linked(&s->posted_link))
        lv_queue_remove(&s->posted_link);
    lv_sock_set_pending(s, false);
    while (s->tx_len)
        txq_pop(s);
    lv_buf_free(&s->in);
    if (s->ssl) {
        lv_tlsio_free(s->ssl);
        s->ssl = NULL;
    }
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

/* Output is flushed: send close_notify and FIN, then wait (briefly) for the peer's FIN. */
static void sock_finish_close(lv_sock_t *s)
{
    if (s->eof || s->fin_sent) {
        lv_sock_close(s);
        return;
    }
    if (s->ssl) {
        lv_tls_want_t want;
        lv_tlsio_shutdown(s->ssl, &want); /* best effort: a peer that does not read gets no more */
    }
    shutdown(s->fd, SHUT_WR);
    s->fin_sent = true;
    lv_sock_arm(s, LV_TMO_LINGER);
    sock_update_poll(s);
}

void lv_sock_close_after_flush(lv_sock_t *s)
{
    if (s->closing)
        return;
    s->closing = s->flush_then_close = true;
    lv_sock_disarm(s);
    lv_sock_set_pending(s, false);
    lv_buf_free(&s->in);
    if (s->handshaking) {
        lv_sock_close(s);
        return;
    }
    if (s->tx_len == 0) {
        sock_finish_close(s);
        return;
    }
    if (!lv_tlist_armed(&s->write_tmo))
        lv_tlist_arm(&s->net->write_list, &s->write_tmo, uv_now(s->net->loop));
    sock_update_poll(s);
}

/* ---------- for lv_net.c ---------- */

void lv__sock_update_poll(lv_sock_t *s) { sock_update_poll(s); }

void lv__sock_run_posted(lv_sock_t *s, bool read, bool flush)
{
    if (read) {
        sock_offer_input(s);
        if (!s->closed && s->ssl && !s->read_paused && lv_tlsio_pending(s->ssl))
            sock_read(s);
    }
    if (flush && !s->closed)
        sock_flush(s);
    if (!s->closed)
        sock_update_poll(s);
}
