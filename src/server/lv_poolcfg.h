/* lv_poolcfg.h - the configured backends (--backend and its per-backend flags) added to a backend
 * pool: shared by `serve` (main.c) and `worker` (lv_worker.c), which build the same pool. */
#ifndef LV_POOLCFG_H
#define LV_POOLCFG_H

#include "lv_backend.h"
#include "lv_config.h"

/** Add every backend of cfg to pool with its window settings, and apply --backend-client. Logs
 * why and returns LV_EINVAL when a key's environment variable is unset, or the pool's error. */
int lv_poolcfg_add(lv_pool_t *pool, const lv_config_t *cfg);

/** --backend-thread: run pool's chats on a backend I/O thread. auto: when this machine has more
 * than one CPU and the process sends backend requests (sends_requests: not a cluster frontend
 * without a worker of its own), and a thread that cannot start is logged and done without.
 * Before any chat. 0, or LV_EIO/LV_ENOMEM when an explicit --backend-thread on cannot start. */
int lv_poolcfg_thread(lv_pool_t *pool, const lv_config_t *cfg, bool sends_requests);

#endif
