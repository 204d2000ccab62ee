/* lv_tlsio.h - OpenSSL 3 for the front door: the server context (TLS 1.2 and later only, ALPN
 * http/1.1) and non-blocking handshake, read, write and close_notify on a socket descriptor, with
 * OpenSSL's WANT_READ / WANT_WRITE mapped to LV_EAGAIN plus which readiness to wait for. */
#ifndef LV_TLSIO_H
#define LV_TLSIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* OpenSSL's read-ahead buffer per connection while it holds input (released when empty): one
 * frame's worth, like the front door's own read (LV__NET_RBUF). */
#define LV_TLSIO_READ_AHEAD 65536

/* What an LV_EAGAIN waits for. */
typedef enum { LV_TLS_WANT_NONE = 0, LV_TLS_WANT_READ, LV_TLS_WANT_WRITE } lv_tls_want_t;

/** A server SSL_CTX from PEM files (certificate chain, private key). On failure writes why to err
 * and returns LV_EIO. The caller owns *out (lv_tlsio_ctx_free). */
int lv_tlsio_ctx_create(const char *cert_path, const char *key_path, void **out, char *err, size_t err_size);
void lv_tlsio_ctx_free(void *ctx);

/** A server-side SSL * for a connected non-blocking descriptor; NULL when out of memory. When
 * drained is not NULL, every read from the socket sets *drained to whether it left the socket
 * empty (it returned fewer bytes than asked for, or none): *drained must outlive the SSL. */
void *lv_tlsio_new(void *ctx, int fd, bool *drained);
void lv_tlsio_free(void *ssl);

/** Drive the handshake: 0 done, LV_EAGAIN (*want says for what), LV_EIO (failed: close). */
int lv_tlsio_handshake(void *ssl, lv_tls_want_t *want);
/** Read up to len bytes: > 0 bytes read, 0 the peer closed (close_notify or EOF), LV_EAGAIN
 * (*want), LV_EIO. */
ssize_t lv_tlsio_read(void *ssl, void *buf, size_t len, lv_tls_want_t *want);
/** Write all of buf[0..len): len, LV_EAGAIN (*want; call again with the same bytes and length),
 * LV_EIO. */
ssize_t lv_tlsio_write(void *ssl, const void *buf, size_t len, lv_tls_want_t *want);
/** True when the SSL object holds input poll will not report: bytes decrypted and not yet read,
 * or bytes read ahead from the socket (possibly only part of a record: a read may then want more
 * from the socket, so call again only after a read that did not end in LV_EAGAIN). */
bool lv_tlsio_pending(void *ssl);
/** Send close_notify (best effort, once): 0 sent or nothing to do, LV_EAGAIN (*want). */
int lv_tlsio_shutdown(void *ssl, lv_tls_want_t *want);

#endif
