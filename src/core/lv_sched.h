/* lv_sched.h - the fair order in which waiting sessions get a backend slot.
 * Each session holds at most one waiting frame, so a FIFO of sessions that became ready is already
 * round-robin across sessions: a session re-enters at the tail after each dispatch. The weighted,
 * per-user deficit round-robin replaces this with the scheduler work (see docs/internals). */
#ifndef LV_SCHED_H
#define LV_SCHED_H

#include <stddef.h>

#include "lv_session.h"

typedef struct {
    lv_queue_t ready;   /* lv_session_t.ready_link */
    size_t n_ready;
} lv_sched_t;

void lv_sched_init(lv_sched_t *q);
/** Queue a session that has a waiting frame; no-op when already queued. */
void lv_sched_ready(lv_sched_t *q, lv_session_t *s);
/** Remove a session from the queue (dispatched, stopped or gone); no-op when not queued. */
void lv_sched_remove(lv_sched_t *q, lv_session_t *s);

/* What the dispatcher says about one candidate. */
typedef enum {
    LV_SCHED_DISPATCHED, /* it took the frame: leave the queue */
    LV_SCHED_BUSY,       /* its backend has no free slot now: keep its place */
    LV_SCHED_DROP,       /* it cannot be served (error already reported): leave the queue */
} lv_sched_verdict_t;

/** Walk the ready queue in order, offering each session to try_dispatch; stops after max_dispatch
 * dispatches or when every session has been offered once. Returns the number dispatched. */
size_t lv_sched_run(lv_sched_t *q, size_t max_dispatch,
                    lv_sched_verdict_t (*try_dispatch)(lv_session_t *s, void *ud), void *ud);

#endif
