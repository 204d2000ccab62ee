/* lv_store.h - the store port: where the durable part of a session (its record) lives, so that it
 * outlives a socket and, with a networked store, a process. Core (lv_session.c) is the only
 * caller; implementations live below it in src/store/ (lv_store_mem.c, in this process) and later
 * a Redis one, which must fit behind these calls without changing them.
 *
 * Asynchronous-capable. Every operation takes a completion callback:
 *   - the call returns 0 when it accepted the request; `done` then runs EXACTLY ONCE, either
 *     before the call returns (the memory store) or later on the loop thread (a networked store);
 *   - the call returns a negative LV_E* code when it could not even start; `done` never runs.
 *   - `done` may be NULL (fire and forget: a write whose outcome the caller does not need).
 * The record passed in is copied before the call returns: the caller may reuse it at once. The
 * record handed to `done` is borrowed for the duration of the callback only (copy what you keep).
 * The caller therefore keeps its own copy of every record it works with (lv_session_t.rec) and
 * never assumes a write has landed when the call returns.
 * The resume secret is never stored, only its hash (lv_secret.h). */
#ifndef LV_STORE_H
#define LV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_session_rec.h"

typedef struct lv_store lv_store_t;

/** Completion of one store operation: rc is 0 or a negative LV_E* code (LV_EEXIST, LV_ENOTFOUND,
 * LV_ELIMIT, LV_ENOMEM, LV_EIO...); rec is the loaded record for `load` (borrowed, valid during
 * the call only), NULL otherwise. ud is what the caller passed. */
typedef void (*lv_store_done_fn)(void *ud, int rc, const lv_session_rec_t *rec);

typedef struct {
    /** Insert a new record; completes with LV_EEXIST if the id is taken, LV_ELIMIT when full. */
    int (*create)(lv_store_t *st, const lv_session_rec_t *rec, lv_store_done_fn done, void *ud);
    /** Fetch the record with this id; completes with it, or LV_ENOTFOUND. */
    int (*load)(lv_store_t *st, const char *id, lv_store_done_fn done, void *ud);
    /** Replace an existing record; completes with 0 or LV_ENOTFOUND. */
    int (*save)(lv_store_t *st, const lv_session_rec_t *rec, lv_store_done_fn done, void *ud);
    /** Delete (the record expired or was evicted); completes with 0 or LV_ENOTFOUND. */
    int (*remove)(lv_store_t *st, const char *id, lv_store_done_fn done, void *ud);
    /** Number of records this store holds (local view; a networked store may answer a cached
     * figure). Synchronous: for logs and metrics only. */
    size_t (*count)(lv_store_t *st);
    /** Free the store. No operation may be pending (a networked store fails them first). */
    void (*destroy)(lv_store_t *st);
} lv_store_ops_t;

/* An implementation embeds this first and sets ops. */
struct lv_store {
    const lv_store_ops_t *ops;
};

/* A synchronous view of one store call for callers that can proceed either way: `done` records
 * the outcome; `completed` stays false while a networked store still works on it. */
typedef struct {
    bool completed;
    int rc;
    lv_session_rec_t rec; /* the loaded record (load only) */
} lv_store_result_t;

/** A lv_store_done_fn that fills the lv_store_result_t ud points to. */
void lv_store_result_cb(void *ud, int rc, const lv_session_rec_t *rec);

#endif
