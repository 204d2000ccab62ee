/* lv_server.h - the front door (lv_server.c): the listener (lv_net.h) with HTTP/1.1 on it
 * (lv_httpd.h), the routes (the UI, the JSON API, login, the checks in front of a WebSocket
 * upgrade), and the graceful drain at shutdown. The WebSockets themselves are lv_wsconn.h's.
 * Loop thread only. */
#ifndef LV_SERVER_H
#define LV_SERVER_H

#include <stddef.h>

struct lv_app;
struct lv_req;

/** Listen on cfg.host/cfg.port (TLS unless --no-tls). Logs why and returns non-zero when it cannot
 * (bad address, port in use, unusable certificate); bound_port is set on success. */
int lv_server_start(struct lv_app *app);
/** Graceful stop: no new connections, every WebSocket gets close 1001 "server restarting", HTTP
 * connections finish their current request; done(ud) runs once all are gone or after deadline_ms. */
void lv_server_drain(struct lv_app *app, unsigned deadline_ms, void (*done)(void *ud), void *ud);
/** Close whatever is left and the listener (the loop must run on to free the handles). */
void lv_server_stop(struct lv_app *app);
/** Before a POST's body is read (lv_httpd.c): 0 with *cap set to the largest body the route
 * takes (left alone: the 64 KiB default), or a status to refuse it with at once (401, 429: a
 * route with a large body checks the credential first, so nobody unauthenticated makes the
 * server hold megabytes). */
int lv_server_body_cap(struct lv_app *app, const struct lv_req *r, size_t *cap);
/** Route one complete request (lv_httpd.c calls it; it answers now or later, exactly once). */
void lv_server_handle(struct lv_app *app, struct lv_req *r);

#endif
