/* lv_poolcfg.c - see lv_poolcfg.h. */
#include "lv_poolcfg.h"

#include <stdlib.h>

#include "lv_common.h"
#include "lv_log.h"

int lv_poolcfg_add(lv_pool_t *pool, const lv_config_t *cfg)
{
    lv_pool_set_native_http(pool, !cfg->backend_client_curl);
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const lv_backend_spec_t *b = &cfg->backends[i];
        const char *key = b->key;
        if (b->key_env[0]) {
            key = getenv(b->key_env);
            if (!key) {
                LV_ERROR("backend %s: environment variable %s (its API key) is not set", b->id, b->key_env);
                return LV_EINVAL;
            }
        }
        int max = b->max_concurrency ? b->max_concurrency : cfg->default_backend_max;
        int rc = lv_pool_add(pool, b->id, b->url, key, max, b->models[0] ? b->models : NULL);
        if (rc == 0)
            /* the window's default floor is 4: a few requests in parallel are what every current
             * server handles, and a floor keeps one stalled request from blocking everyone while the
             * window is still learning at light load */
            rc = lv_backend_configure(lv_pool_find(pool, b->id), b->adaptive != 0,
                                      b->min_concurrency ? b->min_concurrency : LV_MIN(4, max), max, b->max_side,
                                      b->jpeg_quality);
        if (rc) {
            LV_ERROR("backend %s (%s): %s", b->id, b->url, lv_strerror(rc));
            return rc;
        }
    }
    return 0;
}

int lv_poolcfg_thread(lv_pool_t *pool, const lv_config_t *cfg, bool sends_requests)
{
    /* docs/internals/threads.md: libcurl, the backend sockets and SSE parsing were most of the
     * loop's work; on one CPU a second thread would only add hand-overs */
    bool automatic = cfg->backend_thread < 0;
    bool on = automatic ? uv_available_parallelism() > 1 && sends_requests : cfg->backend_thread == 1;
    if (!on)
        return 0;
    int rc = lv_pool_use_thread(pool, true);
    if (rc && automatic) { /* e.g. a container's thread limit: one loop still works */
        LV_WARN("could not start the backend I/O thread (%s): backend requests run on the main loop",
                lv_strerror(rc));
        return 0;
    }
    if (rc)
        LV_ERROR("could not start the backend I/O thread (%s); --backend-thread off runs without it",
                 lv_strerror(rc));
    else
        LV_INFO("backend requests run on their own thread (--backend-thread)");
    return rc;
}
