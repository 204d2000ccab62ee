/* lv_httpd.h - HTTP/1.1 on a front-door socket (lv_net.h): request heads (lv_http1.h) and bodies
 * (Content-Length or chunked, capped) in, responses out, strictly in order and one request at a
 * time; the hand-over to a WebSocket after an upgrade. Routing is the server's (lv_server.c). */
#ifndef LV_HTTPD_H
#define LV_HTTPD_H

#include <stdbool.h>
#include <stddef.h>

#include "lv_buf.h"
#include "lv_http1.h"
#include "lv_principal.h"
#include "lv_net.h"
#include "lv_queue.h"

struct lv_app;

#define LV_HTTP_MAX_HEAD_BYTES 8192    /* a longer request head: 431 */
#define LV_HTTP_MAX_BODY_BYTES 65536   /* a longer request body: 413 */

/* One request, handed to lv_server_handle() once its head and body are in. */
typedef struct lv_req {
    struct lv_app *app;
    lv_sock_t *sock;
    const lv_http1_req_t *head;  /* method, headers...: valid until the request is answered */
    const char *ip;              /* the client's address */
    const char *path;            /* NUL-terminated, not decoded */
    const char *query;           /* after '?', NUL-terminated; "" when absent */
    const lv_buf_t *body;        /* the decoded body (len 0 when none) */
    bool is_head;                /* HEAD: answered like GET, without the body */
    bool is_post;
    bool tls;
    /* for a handler that answers later (the request stays alive until it does, or until the
     * connection goes, which unlinks wait_link and calls on_gone) */
    lv_queue_t wait_link;
    bool waiting;
    void (*on_gone)(struct lv_req *r); /* the connection closed while waiting (NULL: nothing) */
    void *user;                  /* the handler's; both reset for each request */
} lv_req_t;

/** Answer r: exactly once per request; later calls are refused (LV_EINVAL). body is copied when
 * copy, else it must outlive every socket (embedded assets). extra_headers: "name: value\r\n"
 * lines, or NULL. Returns 0, or LV_ECLOSED when the connection is already gone. */
int lv_req_respond(lv_req_t *r, int status, const char *content_type, const void *body, size_t len, bool copy,
                   const char *extra_headers);
/** Answer r as a stream: the head now (status, content_type, extra_headers as for respond;
 * chunked on HTTP/1.1, close-delimited on 1.0), then any number of lv_req_stream_write, then
 * lv_req_stream_end once, which completes the request. The handler keeps r waiting meanwhile, so
 * it hears on_gone if the client leaves. 0, LV_EINVAL (answered or streaming already),
 * LV_ECLOSED, LV_ENOMEM. */
int lv_req_stream_begin(lv_req_t *r, int status, const char *content_type, const char *extra_headers);
/** One piece of the streamed body (copied). A client that stopped reading is closed once more
 * than LV_HTTP_STREAM_MAX_QUEUED bytes wait for it (LV_ELIMIT). */
int lv_req_stream_write(lv_req_t *r, const void *data, size_t len);
int lv_req_stream_end(lv_req_t *r);
#define LV_HTTP_STREAM_MAX_QUEUED (1u << 20)
/** Answer with our JSON error body {"error":{"code":code,"message":message}}. */
int lv_req_respond_error(lv_req_t *r, int status, const char *code, const char *message);
/** Accept a WebSocket upgrade of r (already checked by the caller): 101 with the accept key and
 * subprotocol (or none), then the socket belongs to the WebSocket layer (lv_ws_attach), acting
 * for `who` (copied). */
int lv_req_upgrade(lv_req_t *r, const char *subprotocol, const lv_principal_t *who);

/** lv_net's on_accept: speak HTTP/1.1 on a new socket. */
void lv_httpd_accept(lv_sock_t *s);

#endif
