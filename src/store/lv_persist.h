/* lv_persist.h - keeps the memory store's sessions in a file so that a restart of a single node
 * loses nothing users had (lv_statefile.h has the format). It sits beside the store port, not in
 * it: the cluster mode keeps the same state in Redis and needs none of this.
 *
 * Writes never block the loop: every period_ms the loop asks its source for a snapshot (references
 * to each session's already-encoded line; only the sessions that changed are re-encoded), and a
 * thread-pool job writes it to PATH.tmp, fsyncs, renames it over PATH and fsyncs the directory.
 * At most one write is in flight; changes made meanwhile go into the next one. So a crash (SIGKILL,
 * power loss) loses the changes of about the last period plus one write; a clean stop loses none
 * (lv_persist_save_now). A lock file (PATH.lock) keeps two processes from sharing one state file. */
#ifndef LV_PERSIST_H
#define LV_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_statefile.h"

typedef struct lv_persist lv_persist_t;

/** Fills out (empty on entry) with the lines to write, on the loop thread. force: write even when
 * nothing changed. encode_budget_bytes bounds the re-encoding work of this call; max_bytes the sum
 * of the lines. Returns 0, LV_EAGAIN when nothing changed (and not force), or an error. */
typedef int (*lv_persist_snapshot_fn)(void *ud, bool force, size_t encode_budget_bytes, size_t max_bytes,
                                      lv_statefile_snap_t *out);

/** Take PATH.lock and prepare to read and write path. LV_EAGAIN when another process holds the
 * lock, LV_EIO when the lock or the directory cannot be opened, LV_ELIMIT for a too-long path. */
int lv_persist_open(uv_loop_t *loop, const char *path, lv_persist_t **out);

/** Read and parse the file, calling cb per live session (lv_statefile_parse). A missing file is
 * not an error (0, stats all zero). When the file cannot be used the error is logged and returned
 * with *why set, and a file that is unusable for its content is renamed to PATH.corrupt
 * (replacing an older one) so the next write does not destroy it. Runs on the calling thread:
 * call it at start, before the loop serves anyone. */
int lv_persist_load(lv_persist_t *p, const lv_statefile_limits_t *lim, uint64_t now_wall_ms, lv_statefile_cb_t cb,
                    void *ud, lv_statefile_stats_t *stats, const char **why);

/** Start saving: snapshot(ud, ...) runs every period_ms; with nothing changed, a write is still
 * made every heartbeat_ms (it refreshes the time the file says its attached sessions were seen). */
int lv_persist_start(lv_persist_t *p, uint64_t period_ms, uint64_t heartbeat_ms, lv_persist_snapshot_fn snapshot,
                     void *ud);

/** Write everything now, synchronously, on the calling (loop) thread, and stop the periodic
 * writes. For a clean shutdown; a write still in flight can no longer replace this one. Returns 0
 * or the write's error (already logged). *n_sessions (may be NULL) gets how many were written. */
int lv_persist_save_now(lv_persist_t *p, size_t *n_sessions);

/** Free it. After the loop has run to its end (an in-flight write's callback needs the loop). */
void lv_persist_destroy(lv_persist_t *p);

#endif
