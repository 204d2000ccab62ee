/* lv_pipeline.h - the frame pipeline's scheduling core, in core/ (no I/O, no clock of its own).
 * First part moved out of src/server/lv_engine.c: credits. The pipeline asks a started session's
 * sources for a frame (lv_port_source.h) when its interval is due and the frame could be served
 * soon, re-asks after max(5 s, 2 intervals), and keeps the count of unanswered credits. The host
 * calls lv_pipeline_tick every ~20 ms with its monotonic `now`, on the loop thread.
 * The job path (fair queue -> job -> answer) is still in lv_engine.c (docs/internals/ports.md,
 * "What is not behind a port yet").
 *
 * Ownership: the host owns the lv_pipeline_t (plain struct, embed it), the registry and the fair
 * queue it points at; the pipeline keeps no memory of its own. Hooks are called synchronously from
 * inside pipeline calls and must not call back into the pipeline for the same session. */
#ifndef LV_PIPELINE_H
#define LV_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_drr.h"
#include "lv_port_source.h"
#include "lv_session.h"

#define LV_PIPELINE_CREDITS_PER_TICK 1024
#define LV_PIPELINE_CREDIT_RETRY_MIN_MS 5000

/* What the pipeline asks its host. */
typedef struct {
    void *ud;
    /** Slots in all when every healthy backend is full: credits are paced against it. */
    size_t (*capacity)(void *ud);
    /** Add delta to what `principal` has waiting (queued frames + unanswered credits) and return
     * the new count (delta 0: read it). */
    size_t (*principal_waiting)(void *ud, const char *principal, int delta);
    /** May s be asked for a frame now (its principal's frame budget)? NULL = yes. */
    bool (*credit_allowed)(void *ud, const lv_session_t *s, uint64_t now_ms);
} lv_pipeline_hooks_t;

typedef struct lv_pipeline {
    lv_registry_t *reg;          /* not owned */
    lv_drr_t *drr;               /* not owned: frames waiting count against credits */
    lv_pipeline_hooks_t hooks;
    size_t credits_outstanding;  /* credits sent and not yet answered by a frame */
} lv_pipeline_t;

void lv_pipeline_init(lv_pipeline_t *p, lv_registry_t *reg, lv_drr_t *drr, const lv_pipeline_hooks_t *hooks);

/** s's outstanding credit (if any) is answered or dropped: by a frame (accepted or rejected), at
 * stop, when its last source leaves, or when the session is released. */
void lv_pipeline_credit_clear(lv_pipeline_t *p, lv_session_t *s);

/** Periodic work (every ~20 ms): credits to started sessions with a source, no waiting frame and
 * no unanswered credit (an unanswered one is re-asked after max(5 s, 2 intervals)), when their
 * interval is due and their principal has nothing waiting or less than `capacity` is waiting in
 * all. At most LV_PIPELINE_CREDITS_PER_TICK per call; sessions that got one go to the back of the
 * started list. Returns how many credits went out. */
size_t lv_pipeline_tick(lv_pipeline_t *p, uint64_t now_ms);

#endif
