/* lg_conn.c - a client TCP stream (optionally TLS over memory BIOs) on the libuv loop. */
#include "lg_conn.h"

#include <string.h>

#include <openssl/err.h>

#include "lv_common.h"

#define SEND_QUEUE_MAX (16u * 1024u * 1024u) /* bytes queued per connection before sends fail */
#define BUF_KEEP_MAX (256u * 1024u)          /* larger idle write buffers are given back */
#define IO_CHUNK (64u * 1024u)

/* Scratch buffers shared by every connection. This tool runs one loop on one thread, and each
 * buffer is used only inside one callback (read: until on_data returns; TLS output: until
 * raw_send has written or copied it), so nothing is held across callbacks. */
static char g_read_buf[IO_CHUNK];
static char g_plain_buf[IO_CHUNK];
static char g_tls_out_buf[IO_CHUNK];

static void on_handle_closed(uv_handle_t *h);

void lg_conn_close(lg_conn_t *c, const char *fail)
{
    if (c->closing || !c->started)
        return;
    if (!c->fail)
        c->fail = fail;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

void lg_conn_close_after_flush(lg_conn_t *c)
{
    if (c->closing || !c->started)
        return;
    if (!c->writing && c->pending.len == 0)
        lg_conn_close(c, NULL);
    else
        c->close_when_flushed = true;
}

size_t lg_conn_backlog(const lg_conn_t *c) { return c->pending.len + c->inflight.len; }

static void trim(lv_buf_t *b)
{
    if (b->cap > BUF_KEEP_MAX) {
        size_t max = b->max;
        lv_buf_free(b);
        lv_buf_init(b, max);
    } else {
        lv_buf_reset(b);
    }
}

static void on_write(uv_write_t *req, int status);

/* One uv_write at a time: pending becomes inflight, which nobody touches until on_write. */
static void write_kick(lg_conn_t *c)
{
    if (c->writing || c->closing || c->pending.len == 0)
        return;
    lv_buf_t t = c->inflight;
    c->inflight = c->pending;
    c->pending = t;
    uv_buf_t b = uv_buf_init(c->inflight.data, (unsigned)c->inflight.len);
    c->write_req.data = c;
    int r = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (r < 0) {
        lg_conn_close(c, "write failed");
        return;
    }
    c->writing = true;
}

static void on_write(uv_write_t *req, int status)
{
    lg_conn_t *c = req->data;
    c->writing = false;
    trim(&c->inflight);
    if (c->closing)
        return;
    if (status < 0) {
        lg_conn_close(c, status == UV_EPIPE || status == UV_ECONNRESET ? "connection reset" : "write failed");
        return;
    }
    write_kick(c);
    if (c->close_when_flushed && !c->writing && c->pending.len == 0)
        lg_conn_close(c, NULL);
}

/* Bytes for the socket (plaintext, or TLS records). */
static int raw_send(lg_conn_t *c, const char *p, size_t n)
{
    if (c->closing)
        return LV_ECLOSED;
    if (!c->writing && c->pending.len == 0) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (r >= 0 && (size_t)r == n)
            return 0;
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r != UV_EAGAIN) {
            lg_conn_close(c, r == UV_EPIPE || r == UV_ECONNRESET ? "connection reset" : "write failed");
            return LV_EIO;
        }
    }
    if (lv_buf_append(&c->pending, p, n)) {
        lg_conn_close(c, "send queue over cap");
        return LV_ELIMIT;
    }
    write_kick(c);
    return c->closing ? LV_EIO : 0;
}

/* Move whatever TLS produced (handshake, records, alerts) to the socket. */
static int tls_flush(lg_conn_t *c)
{
    for (;;) {
        int n = BIO_read(c->wbio, g_tls_out_buf, (int)sizeof(g_tls_out_buf));
        if (n <= 0)
            return 0;
        int rc = raw_send(c, g_tls_out_buf, (size_t)n);
        if (rc)
            return rc;
    }
}

int lg_conn_send(lg_conn_t *c, const void *p, size_t n)
{
    if (c->closing || !c->started)
        return LV_ECLOSED;
    if (!c->open)
        return LV_EAGAIN;
    if (lg_conn_backlog(c) + n > SEND_QUEUE_MAX) {
        lg_conn_close(c, "send queue over cap");
        return LV_ELIMIT;
    }
    if (!c->ssl)
        return raw_send(c, p, n);
    /* memory BIOs never block, so SSL_write takes everything at once */
    const char *b = p;
    while (n > 0) {
        int chunk = n > (size_t)(1 << 30) ? 1 << 30 : (int)n;
        int r = SSL_write(c->ssl, b, chunk);
        if (r <= 0) {
            lg_conn_close(c, "tls write failed");
            return LV_EIO;
        }
        b += r;
        n -= (size_t)r;
    }
    return tls_flush(c);
}

static void opened(lg_conn_t *c)
{
    c->open = true;
    c->cb->on_open(c);
}

static void tls_pump(lg_conn_t *c)
{
    if (!SSL_is_init_finished(c->ssl)) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        if (tls_flush(c))
            return;
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                lg_conn_close(c, "tls handshake failed");
            return;
        }
        opened(c);
        if (c->closing)
            return;
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, g_plain_buf, (int)sizeof(g_plain_buf));
        if (r > 0) {
            c->cb->on_data(c, g_plain_buf, (size_t)r);
            if (c->closing)
                return;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            c->eof = true;
            lg_conn_close(c, NULL);
        } else {
            lg_conn_close(c, "tls read failed");
        }
        return;
    }
    tls_flush(c); /* tickets and key updates may want an answer */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = g_read_buf;
    buf->len = sizeof(g_read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    lg_conn_t *c = s->data;
    if (c->closing)
        return;
    if (nread < 0) {
        if (nread == UV_EOF) {
            c->eof = true;
            lg_conn_close(c, NULL);
        } else {
            lg_conn_close(c, nread == UV_ECONNRESET ? "connection reset" : "read failed");
        }
        return;
    }
    if (nread == 0)
        return;
    if (!c->ssl) {
        c->cb->on_data(c, buf->base, (size_t)nread);
        return;
    }
    if (BIO_write(c->rbio, buf->base, (int)nread) != (int)nread) {
        lg_conn_close(c, "tls buffer failed");
        return;
    }
    tls_pump(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    lg_conn_t *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        lg_conn_close(c, status == UV_ECONNREFUSED   ? "connect: refused"
                         : status == UV_ETIMEDOUT    ? "connect: timed out"
                         : status == UV_EADDRNOTAVAIL ? "connect: address not available"
                                                      : "connect: failed");
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        lg_conn_close(c, "read start failed");
        return;
    }
    if (!c->ssl) {
        opened(c);
        return;
    }
    tls_pump(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    lg_conn_t *c = h->data;
    if (c->ssl)
        SSL_free(c->ssl); /* frees both BIOs */
    c->ssl = NULL;
    c->rbio = c->wbio = NULL;
    lv_buf_free(&c->pending);
    lv_buf_free(&c->inflight);
    c->started = false;
    c->cb->on_closed(c);
}

int lg_conn_start(lg_conn_t *c, uv_loop_t *loop, const struct sockaddr *dst, const struct sockaddr *src,
                  SSL_CTX *tls, const char *sni, const lg_conn_cb_t *cb, void *data)
{
    memset(c, 0, sizeof(*c));
    c->cb = cb;
    c->data = data;
    lv_buf_init(&c->pending, SEND_QUEUE_MAX);
    lv_buf_init(&c->inflight, SEND_QUEUE_MAX);
    if (uv_tcp_init(loop, &c->tcp) < 0) {
        c->fail = "socket failed";
        return LV_EIO;
    }
    c->tcp.data = c;
    c->started = true;
    /* From here on every failure goes through lg_conn_close, so on_closed fires exactly once. */
    if (tls) {
        c->ssl = SSL_new(tls);
        c->rbio = BIO_new(BIO_s_mem());
        c->wbio = BIO_new(BIO_s_mem());
        if (!c->ssl || !c->rbio || !c->wbio) {
            BIO_free(c->rbio);
            BIO_free(c->wbio);
            c->rbio = c->wbio = NULL;
            lg_conn_close(c, "tls setup failed");
            return 0;
        }
        SSL_set_bio(c->ssl, c->rbio, c->wbio);
        SSL_set_connect_state(c->ssl);
        if (sni)
            SSL_set_tlsext_host_name(c->ssl, sni);
    }
    uv_tcp_nodelay(&c->tcp, 1); /* frames and small JSON messages must not wait for Nagle */
    int r = 0;
    if (src)
        r = uv_tcp_bind(&c->tcp, src, 0);
    if (r < 0) {
        lg_conn_close(c, r == UV_EADDRNOTAVAIL ? "bind: address not available" : "bind failed");
        return 0;
    }
    c->connect_req.data = c;
    r = uv_tcp_connect(&c->connect_req, &c->tcp, dst, on_connect);
    if (r < 0)
        lg_conn_close(c, r == UV_EADDRNOTAVAIL ? "connect: address not available"
                          : r == UV_EMFILE      ? "connect: too many open files"
                                                : "connect: failed");
    return 0;
}

SSL_CTX *lg_conn_tls_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* the server's certificate is usually self-signed; the load generator measures, it does not
     * authenticate the server */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    return ctx;
}
