/* lv_dispatch_local.h - the dispatch port (lv_port_dispatch.h) on this process's backend pool:
 * picks a backend (lv_pool_resolve), scales the frame down on the thread pool when the backend
 * wants smaller pictures (lv_shape), sends the chat request (lv_chat), and retries once on another
 * backend when one fails before its first token (or hands the frame back to wait in line when the
 * others are full: result.requeue).
 *
 * Ownership: lv_dispatch_local_create returns the port struct, owned by the caller, who gives it
 * to the pipeline. lv_dispatch_local_close (after the pipeline has cancelled every job, before the
 * pool goes) makes it refuse new work and forget its backends; memory is freed once the last
 * frame being shaped comes back from its thread (a shape cannot be taken back), so close may be
 * followed by lv_pool_destroy at once. Loop thread only. */
#ifndef LV_DISPATCH_LOCAL_H
#define LV_DISPATCH_LOCAL_H

#include <uv.h>

#include "lv_backend.h"
#include "lv_port_dispatch.h"

typedef struct {
    int connect_timeout_ms;      /* lv_chat_req_t's deadlines, as configured */
    int first_token_timeout_ms;
    int total_timeout_ms;
    int stream_idle_timeout_ms;  /* <= 0: none */
    size_t max_frame_bytes;      /* cap of a shaped frame */
    const char *no_backend_help; /* borrowed, read at each refusal: a sentence on what to do when no
                                  * backend serves a model (it may change as backends are found) */
    /* what happened, for metrics (any may be NULL) */
    void *ud;
    void (*retried)(void *ud);              /* a request failed before its first token: retried
                                             * elsewhere or handed back to wait */
    void (*shaped)(void *ud, double ms);    /* a frame was scaled down for its backend */
} lv_dispatch_local_cfg_t;

/** LV_ENOMEM. cfg is copied (no_backend_help stays borrowed). */
int lv_dispatch_local_create(uv_loop_t *loop, lv_pool_t *pool, const lv_dispatch_local_cfg_t *cfg,
                             lv_dispatch_t **out);
/** No more work; frees itself when nothing is left on the thread pool (see above). NULL ignored. */
void lv_dispatch_local_close(lv_dispatch_t *d);

#endif
