/* lv_tlsio.c - OpenSSL 3 server context and non-blocking I/O for the front door (lv_net.c). */
#include "lv_tlsio.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "lv_common.h"

/* lv_sslmem caches OpenSSL's read buffers of (48, 64] KiB: the read-ahead buffer is one of them */
_Static_assert(LV_TLSIO_READ_AHEAD > 48 * 1024 && LV_TLSIO_READ_AHEAD <= 64 * 1024,
               "LV_TLSIO_READ_AHEAD left lv_sslmem's 64 KiB class");

static const unsigned char alpn_http11[] = "\x08http/1.1";

/* ALPN (RFC 7301): we speak http/1.1 only. A client that offers only other protocols (h2) gets no
 * ALPN answer rather than a fatal alert, and then speaks HTTP/1.1 or gives up. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_len, const unsigned char *in,
                       unsigned int in_len, void *arg)
{
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, out_len, alpn_http11, sizeof(alpn_http11) - 1, in, in_len) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static void last_error(char *err, size_t err_size, const char *what, const char *path)
{
    char detail[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, detail, sizeof(detail));
    snprintf(err, err_size, "%s %s%s%s", what, path, detail[0] ? ": " : "", detail);
    ERR_clear_error();
}

int lv_tlsio_ctx_create(const char *cert_path, const char *key_path, void **out, char *err, size_t err_size)
{
    *out = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, err_size, "could not create a TLS context");
        return LV_EIO;
    }
    /* TLS 1.0 and 1.1 are refused (RFC 8996); renegotiation is off (a client-driven CPU sink) */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* RELEASE_BUFFERS frees the ~34 KB of record buffers while a connection is idle, which is what
     * most WebSockets are most of the time. ACCEPT_MOVING_WRITE_BUFFER: a write repeated after
     * WANT_WRITE passes the same bytes, but gathered again into a scratch buffer (lv_net.c). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read ahead into a buffer as big as the front door's own read (LV_TLSIO_READ_AHEAD): without
     * it OpenSSL reads each record's 5-byte header and then its body, two system calls per 16 KB,
     * so a 32 KB frame took about 5 reads; with it, about two (2.4 measured; docs/internals/net.md).
     * The buffer is still released when it empties. What is read ahead is not seen by poll:
     * lv_tlsio_pending says when to read on. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, LV_TLSIO_READ_AHEAD);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"livevlm", 7);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        last_error(err, err_size, "cannot use the TLS certificate", cert_path);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        last_error(err, err_size, "cannot use the TLS key", key_path);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        last_error(err, err_size, "the TLS key does not match the certificate", cert_path);
        goto fail;
    }
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return LV_EIO;
}

void lv_tlsio_ctx_free(void *ctx) { SSL_CTX_free(ctx); }

/* After each read of the socket BIO: a short read means the kernel held no more at that moment,
 * so the next read would only find EAGAIN (one system call per frame saved: lv_sock.c). Every
 * other operation passes through: ret is 1 before an operation (go ahead) and its result after. */
static long note_drained(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
                         size_t *processed)
{
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        bool *drained = (bool *)BIO_get_callback_arg(b);
        *drained = ret <= 0 || !processed || *processed < len;
    }
    return ret;
}

void *lv_tlsio_new(void *ctx, int fd, bool *drained)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    if (drained) {
        BIO *rbio = SSL_get_rbio(ssl); /* the socket BIO SSL_set_fd made, read and write */
        BIO_set_callback_arg(rbio, (char *)drained);
        BIO_set_callback_ex(rbio, note_drained);
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

void lv_tlsio_free(void *ssl) { SSL_free(ssl); }

/* Map an SSL_* result that was not a success. */
static int map_error(SSL *ssl, int ret, lv_tls_want_t *want)
{
    *want = LV_TLS_WANT_NONE;
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        *want = LV_TLS_WANT_READ;
        return LV_EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = LV_TLS_WANT_WRITE;
        return LV_EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        /* protocol errors from a peer are its problem, not ours to log one by one */
        ERR_clear_error();
        return LV_EIO;
    }
}

int lv_tlsio_handshake(void *ssl, lv_tls_want_t *want)
{
    ERR_clear_error();
    int ret = SSL_do_handshake(ssl);
    if (ret == 1) {
        *want = LV_TLS_WANT_NONE;
        return 0;
    }
    int rc = map_error(ssl, ret, want);
    return rc == LV_EAGAIN ? rc : LV_EIO;
}

ssize_t lv_tlsio_read(void *ssl, void *buf, size_t len, lv_tls_want_t *want)
{
    size_t got = 0;
    ERR_clear_error();
    int ret = SSL_read_ex(ssl, buf, len, &got);
    if (ret == 1) {
        *want = LV_TLS_WANT_NONE;
        return (ssize_t)got;
    }
    return map_error(ssl, ret, want);
}

ssize_t lv_tlsio_write(void *ssl, const void *buf, size_t len, lv_tls_want_t *want)
{
    size_t put = 0;
    ERR_clear_error();
    int ret = SSL_write_ex(ssl, buf, len, &put);
    if (ret == 1) {
        *want = LV_TLS_WANT_NONE;
        return (ssize_t)put;
    }
    int rc = map_error(ssl, ret, want);
    return rc == LV_EAGAIN ? rc : LV_EIO;
}

bool lv_tlsio_pending(void *ssl) { return SSL_has_pending(ssl) == 1; }

int lv_tlsio_shutdown(void *ssl, lv_tls_want_t *want)
{
    *want = LV_TLS_WANT_NONE;
    ERR_clear_error();
    int ret = SSL_shutdown(ssl);
    if (ret >= 0)
        return 0;
    int rc = map_error(ssl, ret, want);
    return rc == LV_EAGAIN ? rc : 0;
}
