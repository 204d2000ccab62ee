/* lv_http.h - libcurl multi (socket API) driven by a libuv loop: every backend HTTP call of the
 * process goes through one lv_http_t on the loop thread, and nothing blocks the loop.
 *
 * Rules (docs/internals/backend.md, reference/deps-measured.md section 2):
 * - Everything runs on the loop thread; no function here is thread-safe.
 * - "Inside curl" means inside a libcurl callback (write, header, ...) of a transfer of this
 *   lv_http_t. There, only buffer work and uv timer calls are allowed: no lv_http_add/remove, no
 *   curl_easy_cleanup: a write callback that must stop its transfer returns 0, and whoever must
 *   act on what it parsed does so after curl returns (lv_chat hands it to its lane).
 * - Done callbacks run outside curl, where everything below may be called, except
 *   lv_http_destroy(). */
#ifndef LV_HTTP_H
#define LV_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <uv.h>

#include "lv_queue.h"

typedef struct lv_http lv_http_t;

/** Called once when a transfer ends by itself (success or any curl error), outside curl. The easy
 * handle has already been removed from the multi handle, so the callback may curl_easy_cleanup()
 * it, reuse it, or add new transfers. Not called for transfers ended by lv_http_remove() or
 * lv_http_destroy(). */
typedef void (*lv_http_done_cb)(void *ud, CURL *easy, CURLcode rc);

/** Create the multi handle and its uv timer on loop. *out is set on success only.
 * LV_ENOMEM, LV_EIO (curl or uv refused). */
int lv_http_create(uv_loop_t *loop, lv_http_t **out);

/** Remove every transfer (their done callbacks never fire; the owners of the easy handles still
 * free them), clean up the multi handle and close the uv handles. The memory goes once the loop
 * has run the close callbacks, so run the loop afterwards. Must not be called inside curl or from
 * a done callback. NULL is ignored. */
void lv_http_destroy(lv_http_t *h);

/** Start a transfer. The caller keeps ownership of easy and everything it points at (body,
 * header list, buffers), which must stay alive until done fires or lv_http_remove() returns.
 * lv_http uses CURLOPT_PRIVATE and sets CURLOPT_NOSIGNAL, CURLOPT_OPENSOCKETFUNCTION and
 * CURLOPT_CLOSESOCKETFUNCTION (with their DATA): do not set those yourself (the socket callbacks
 * keep a connection's poll handle alive between transfers; docs/internals/backend.md).
 * done fires exactly once, later, outside curl (never from inside lv_http_add), unless the
 * transfer is removed first. LV_EINVAL (NULL, or easy already added), LV_ENOMEM, LV_EIO, LV_EAGAIN
 * (called inside curl). */
int lv_http_add(lv_http_t *h, CURL *easy, lv_http_done_cb done, void *ud);

/** Transfers in the multi now (added, neither done nor removed); 0 for NULL. */
size_t lv_http_in_flight(const lv_http_t *h);

/** Abort a transfer: afterwards done will not fire and the caller may free easy. LV_ENOTFOUND
 * when easy is not a transfer of h (e.g. it has already finished), LV_EAGAIN when called inside
 * curl (nothing is done then: make the write callback fail instead). */
int lv_http_remove(lv_http_t *h, CURL *easy);

/** Short human text for a failed transfer: "connection refused", "connect timed out",
 * "timed out", "cannot resolve host", "TLS error: ...", else curl's own text. easy (may be NULL)
 * gives the OS errno behind a failed connect; errbuf is the transfer's CURLOPT_ERRORBUFFER (may be
 * NULL or empty). Writes a NUL-terminated string of at most out_size - 1 bytes; returns out. */
const char *lv_http_describe(CURL *easy, CURLcode rc, const char *errbuf, char *out, size_t out_size);

/** 1 when rc means the backend could not be reached at all (resolve, connect, connect timeout,
 * TLS handshake): the passive health check marks the backend down on these. */
int lv_http_is_connect_failure(CURLcode rc);

#endif
