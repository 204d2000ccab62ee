/* lv_pipeline.h - the frame pipeline's scheduling core, in core/ (no I/O, no clock of its own).
 * Moved out of src/server/lv_engine.c so far: credits and each principal's waiting count; the
 * fair queue's entry and exit (a session with a waiting frame joins lv_drr under its principal;
 * its viewers hear `queued` when it must wait for a slot, and `frame_dropped` when its frame is too
 * old when its turn comes); errors and take-backs to the viewers; attach/detach of viewers and
 * sources, start and stop; the detached-cancel and supersede decisions. The pipeline asks a
 * started session's sources for a frame (lv_port_source.h) when its interval is due and the frame
 * could be served soon, re-asks after max(5 s, 2 intervals), and keeps the count of unanswered
 * credits. The host calls lv_pipeline_tick every ~20 ms with its monotonic `now`, on the loop
 * thread.
 * The job path (turn -> job -> answer) is still in lv_engine.c (docs/internals/ports.md,
 * "What is not behind a port yet").
 *
 * Ownership: the host owns the lv_pipeline_t (plain struct, embed it), the registry and the fair
 * queue it points at; the pipeline's own memory is its per-principal count table (freed by
 * lv_pipeline_free). Hooks are called synchronously from inside pipeline calls and must not call
 * back into the pipeline for the same session. */
#ifndef LV_PIPELINE_H
#define LV_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_drr.h"
#include "lv_hmap.h"
#include "lv_port_source.h"
#include "lv_port_viewer.h"
#include "lv_session.h"

#define LV_PIPELINE_CREDITS_PER_TICK 1024
#define LV_PIPELINE_CREDIT_RETRY_MIN_MS 5000

/* What the pipeline asks its host. */
typedef struct {
    void *ud;
    /** Slots in all when every healthy backend is full: credits are paced against it. */
    size_t (*capacity)(void *ud);
    /** May s be asked for a frame now (its principal's frame budget)? NULL = yes. */
    bool (*credit_allowed)(void *ud, const lv_session_t *s, uint64_t now_ms);
    /** Requests that could start now, all backends together (queue positions count past them). */
    size_t (*free_slots)(void *ud);
    /** A waiting frame was thrown away ("stale"), for metrics. NULL = not counted. */
    void (*dropped)(void *ud, const char *reason);
} lv_pipeline_hooks_t;

typedef struct lv_pipeline {
    lv_registry_t *reg;          /* not owned */
    lv_drr_t *drr;               /* not owned: frames waiting count against credits */
    lv_pipeline_hooks_t hooks;
    size_t credits_outstanding;  /* credits sent and not yet answered by a frame */
    lv_hmap_t waiting;           /* principal -> frames queued + credits outstanding (entries
                                  * only while non-zero) */
    int max_frame_age_ms;        /* > 0: a waiting frame older than this when its turn comes is
                                  * dropped; 0: two intervals, at least 2 s (set after init) */
    int detached_cancel_ms;      /* a session with no viewer and no source this long gets no more
                                  * backend work (set after init; 0 = at once) */
} lv_pipeline_t;

/** LV_EIO when the per-principal table gets no random key. */
int lv_pipeline_init(lv_pipeline_t *p, lv_registry_t *reg, lv_drr_t *drr, const lv_pipeline_hooks_t *hooks);
/** Free the per-principal counts (after the loop has ended: nothing calls the pipeline again). */
void lv_pipeline_free(lv_pipeline_t *p);
/** What `principal` has waiting: frames in the fair queue plus credits not yet answered. Credits
 * to a principal with something waiting wait while the backends are full. */
size_t lv_pipeline_principal_waiting(const lv_pipeline_t *p, const char *principal);
/** The fair queue let go of s's waiting frame outside lv_pipeline (dispatched, or dropped by the
 * host's dispatch): its principal has one less waiting. */
void lv_pipeline_left_queue(lv_pipeline_t *p, const lv_session_t *s);

/** s's outstanding credit (if any) is answered or dropped: by a frame (accepted or rejected), at
 * stop, when its last source leaves, or when the session is released. */
void lv_pipeline_credit_clear(lv_pipeline_t *p, lv_session_t *s);

/** Periodic work (every ~20 ms): credits to started sessions with a source, no waiting frame and
 * no unanswered credit (an unanswered one is re-asked after max(5 s, 2 intervals)), when their
 * interval is due and their principal has nothing waiting or less than `capacity` is waiting in
 * all. At most LV_PIPELINE_CREDITS_PER_TICK per call; sessions that got one go to the back of the
 * started list. Returns how many credits went out. */
size_t lv_pipeline_tick(lv_pipeline_t *p, uint64_t now_ms);

/** s has a frame waiting, no job and is started: it joins the fair queue under its principal
 * (a newer frame only refreshes its enqueue time), counts one more waiting for the principal, and
 * when it must wait for a slot its viewers hear `queued` with its position. Otherwise nothing. */
void lv_pipeline_ready(lv_pipeline_t *p, lv_session_t *s);
/** s leaves the fair queue (stop, release); its waiting frame stays in the mailbox. */
void lv_pipeline_unready(lv_pipeline_t *p, lv_session_t *s);
/** The fair queue found s's frame too old when its turn came (its on_stale): the frame goes,
 * counted in frames_stale, and the viewers hear frame_dropped("stale", age). s has already left
 * the queue. */
void lv_pipeline_drop_stale(lv_pipeline_t *p, lv_session_t *s, uint64_t now_us);

/** Nobody watching, no backend work: s has had no viewer and no source for detached_cancel_ms.
 * Its job is cancelled and its waiting frame goes (the host's job review and dispatch ask this). */
bool lv_pipeline_detached_too_long(const lv_pipeline_t *p, const lv_session_t *s, uint64_t now_ms);
/** Would s's settings becoming next change the request its job was made with (prompt, model,
 * backend, max_tokens, temperature; not the interval, frame size or stats rate)? false when s has
 * no job. The job is then superseded: taken back once it has run a second. */
bool lv_pipeline_supersedes(const lv_session_t *s, const lv_settings_t *next);

/** Tell s's viewers about an error (answer_id 0 when not about one answer); counted in s->errors
 * once, watched or not. */
void lv_pipeline_error(lv_pipeline_t *p, lv_session_t *s, const char *code, const char *message, uint64_t answer_id);
/** Tell s's viewers that the answer in progress was taken back (reason "settings_changed",
 * "preempted"); its frame waits again. */
void lv_pipeline_answer_cancelled(lv_pipeline_t *p, lv_session_t *s, uint64_t answer_id, const char *reason);

/** Link v (the implementation's, lv_port_viewer.h) into s's viewers; s is attached. */
void lv_pipeline_attach_viewer(lv_pipeline_t *p, lv_session_t *s, lv_viewer_t *v, uint64_t now_ms);
/** Unlink v; with neither viewer nor source left, s's idle clock starts. */
void lv_pipeline_detach_viewer(lv_pipeline_t *p, lv_session_t *s, lv_viewer_t *v, uint64_t now_ms);
/** Link src into s's sources: it is asked for frames from the next tick. */
void lv_pipeline_attach_source(lv_pipeline_t *p, lv_session_t *s, lv_source_t *src, uint64_t now_ms);
/** Unlink src; when it was the last source, s's outstanding credit is dropped (nobody would answer
 * it) but its settings stay for a resume. */
void lv_pipeline_detach_source(lv_pipeline_t *p, lv_session_t *s, lv_source_t *src, uint64_t now_ms);
/** start: s asks for frames again (credits from the next tick). */
void lv_pipeline_start(lv_pipeline_t *p, lv_session_t *s, uint64_t now_ms);
/** stop: no more credits (the outstanding one is dropped), s leaves the fair queue and its waiting
 * frame goes; each source hears stop. An answer in progress still ends normally. */
void lv_pipeline_stop(lv_pipeline_t *p, lv_session_t *s, uint64_t now_ms);

#endif
