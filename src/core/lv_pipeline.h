/* lv_pipeline.h - the frame pipeline, in core/ (no I/O, no clock of its own): credits, the
 * mailbox, the fair queue, jobs and answers. A started session's sources are asked for a frame
 * (lv_port_source.h) when its interval is due and the frame could be served soon; the frame waits
 * in the session's one-slot mailbox and joins the fair queue (lv_drr) under its principal; when
 * its turn comes it becomes a job handed to the dispatcher (lv_port_dispatch.h), and what the
 * dispatcher reports reaches the session's viewers (lv_port_viewer.h): answer_start, deltas
 * (coalesced), the answer, errors. Around that: queue positions, stale drops, one retry's
 * requeue, preemption of over-share requests for a starved principal, cancelling work nobody
 * waits for (detached sessions, superseded settings), start/stop, attach/detach.
 *
 * Identical work done once (docs/internals/coalescing.md): a frame with a nonzero share_key (one
 * camera sample handed to every session watching it) whose session asks the same question (the
 * request settings: prompt, model, backend, max_tokens, temperature, frame_max_side, jpeg_quality,
 * debug) as a job already running for that key does not get a request of its own: the session
 * follows that job (at put_frame when the job runs already, else when its turn comes). A follower
 * hears the whole answer on its own viewers under its own answer id: answer_start, the text so far
 * in its first delta, later deltas coalesced, the answer, its history entry, or the error. Who
 * pays: the fair queue counts the slot against the principal whose turn dispatched the request
 * (the lead's), for as long as the request runs, even after a hand-over; a follower's principal
 * pays nothing (no turn, no slot, nothing waiting). When the lead's session lets go (released,
 * detached too long, superseded by a settings change) while followers remain, the request is not
 * cancelled: the oldest follower takes the job over. A follower that lets go (released, detached
 * too long, settings changed) just stops hearing it; stop lets its answer finish, like a lead's. A
 * backend retry's requeue sends every participant's frame back in line (they meet again at their
 * turns). A shared request's answer is kept for LV_PIPELINE_ANSWER_KEEP_MS after it ends: a
 * session whose frame asks it then hears it at once (answer_start, the text, the answer; its own
 * answer id) and nothing is sent. Frames with share_key 0 never coalesce. That part lives in
 * lv_coalesce.c (lv_coalesce.h: the key, the tables, followers, hand-over); this file calls it at
 * its hook points (put_frame, a session's turn, the job events, release and the review).
 *
 * The host drives it on the loop thread: lv_pipeline_tick every ~20 ms with its monotonic `now`
 * (credits, coalesced deltas, and every 100 ms the review of running jobs), lv_pipeline_run when
 * hooks.kick asks for it (on the next loop turn, never from inside the kick), lv_pipeline_put_frame
 * for each accepted frame.
 *
 * Ownership: the host owns the lv_pipeline_t (plain struct, embed it), the registry, the fair queue
 * and the dispatcher it points at; the pipeline owns its jobs and its per-principal count table
 * (lv_pipeline_shutdown cancels the jobs, lv_pipeline_free frees the rest). Hooks are called
 * synchronously from inside pipeline calls and must not call back into the pipeline for the same
 * session. */
#ifndef LV_PIPELINE_H
#define LV_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_drr.h"
#include "lv_hmap.h"
#include "lv_port_dispatch.h"
#include "lv_port_source.h"
#include "lv_port_viewer.h"
#include "lv_session.h"

#define LV_PIPELINE_CREDITS_PER_TICK 1024
#define LV_PIPELINE_CREDIT_RETRY_MIN_MS 5000
/* The credit timetable (lv_pipeline_tick): a wheel of this many slots of this many ms (16 s: a
 * session due later is looked at once per turn of the wheel until it is due). */
#define LV_PIPELINE_WHEEL_SLOTS 2048
#define LV_PIPELINE_WHEEL_SLOT_MS 8
/* While no backend serves a session's model its sources are not asked for frames, and its viewers
 * hear no_backend when it starts and again this often. */
#define LV_PIPELINE_NO_BACKEND_REPEAT_MS 10000
/* Bounded work per lv_pipeline_run; a full batch asks for another run. */
#define LV_PIPELINE_DISPATCH_PER_RUN 256
/* Deltas after the first are coalesced for at least this long: one message per ~40 ms instead of
 * one per token, which people cannot tell apart while reading. With delta_rate set, the interval
 * stretches with the answers streaming at once, up to LV_PIPELINE_DELTA_MAX_MS: every delta is a
 * socket write (and a TLS record), so a thousand streams at 40 ms would be 25,000 writes a second
 * spent on text people read no faster; 250 ms is still four updates a second. */
#define LV_PIPELINE_DELTA_COALESCE_MS 40
#define LV_PIPELINE_DELTA_MAX_MS 250
/* A shared request's answer is kept this long after it ends: a watcher of the same camera asked
 * later for the same sample (a camera hands one sample to credits for up to 2 s) hears it at once
 * instead of sending the same request again. At most this many answers are kept (oldest go). */
#define LV_PIPELINE_ANSWER_KEEP_MS 3000
#define LV_PIPELINE_ANSWERS_KEPT 64
/* Running jobs are reviewed (detached, superseded, preemption) this often. */
#define LV_PIPELINE_REVIEW_MS 100
/* A settings change takes back the answer in progress, at most once per this per session: updates
 * cannot become a stream of backend requests. */
#define LV_PIPELINE_SUPERSEDE_MIN_MS 1000
/* A request of a principal over its share that has produced nothing for this many no-queue TTFTs
 * of its backend (at least LV_PIPELINE_PREEMPT_MIN_MS) may be taken back for one below its share
 * who waits. */
#define LV_PIPELINE_PREEMPT_FLOOR_FACTOR 4
#define LV_PIPELINE_PREEMPT_MIN_MS 1000

/* What the pipeline asks and tells its host. Any may be NULL unless said. */
typedef struct {
    void *ud;
    /** Call lv_pipeline_run on a later loop turn (coalesce repeated asks). Required. */
    void (*kick)(void *ud);
    /** The monotonic clock in microseconds; NULL = lv_now_us() (tests pass a fake). */
    uint64_t (*now_us)(void *ud);
    /** May s be asked for a frame now (its principal's frame budget)? NULL = yes. */
    bool (*credit_allowed)(void *ud, const lv_session_t *s, uint64_t now_ms);
    /** A waiting frame was thrown away ("stale", "no_backend"), for metrics. */
    void (*dropped)(void *ud, const char *reason);
    /** A frame left the queue for a backend. */
    void (*dispatched)(void *ud, double queue_wait_ms, double frame_age_ms);
    /** An answer was delivered (latency from frame receipt; the gateway's own time on it). */
    void (*answered)(void *ud, const lv_job_t *job, const lv_dispatch_result_t *r, double latency_ms,
                     uint64_t gateway_us);
    /** A session's answer (or error: r->rc) is about to reach its viewers: the host journals its
     * usage first, so what a page received is always recorded (docs/internals/accounts.md). */
    void (*answer_end)(void *ud, const lv_job_t *view, const lv_dispatch_result_t *r);
    /** A job ended in an error (its code). */
    void (*failed)(void *ud, const char *code);
    /** A job was taken back at the backend ("detached", "settings_changed", "preempted"). */
    void (*cancelled)(void *ud, const char *reason);
    /** A session's frame got its answer from another session's request for the same question
     * about the same picture (job: the session's own view; job->lead is the request it follows,
     * NULL when it heard a kept answer): once per such answer. */
    void (*coalesced)(void *ud, const lv_job_t *follower);
} lv_pipeline_hooks_t;

typedef struct lv_pipeline {
    lv_registry_t *reg;          /* not owned */
    lv_drr_t *drr;               /* not owned: frames waiting count against credits */
    lv_dispatch_t *dispatch;     /* not owned; its events are the pipeline's */
    lv_pipeline_hooks_t hooks;
    lv_queue_t jobs;             /* lv_job_t.link: requests in flight, oldest first */
    lv_job_t *spare;             /* a job kept for the next turn: a busy backend costs no malloc */
    size_t n_jobs;               /* in jobs */
    uint64_t credits_held;       /* credits held back by the share rule (metrics) */
    bool demand;                 /* the last tick held back a credit for a principal at its share:
                                  * sources want more than the backends take (lets a window grow) */
    uint64_t last_review_ms;
    size_t credits_outstanding;  /* credits sent and not yet answered by a frame */
    lv_hmap_t waiting;           /* principal -> frames queued + credits outstanding (entries
                                  * only while non-zero) */
    /* identical work done once: lv_coalesce.c's alone (lv_coalesce.h) */
    lv_hmap_t coalesce;          /* share_key + request settings hash -> the running job that
                                  * takes followers (lv_job_t.coalesce_node) */
    lv_hmap_t answers;           /* the same key -> a recent answer to it, for the picture's
                                  * latecomers (LV_PIPELINE_ANSWER_KEEP_MS, at most
                                  * LV_PIPELINE_ANSWERS_KEPT) */
    lv_queue_t answers_by_age;   /* the same entries, oldest first */
    size_t n_answers;
    int max_frame_age_ms;        /* > 0: a waiting frame older than this when its turn comes is
                                  * dropped; 0: two intervals, at least 2 s (set after init) */
    int detached_cancel_ms;      /* a session with no viewer and no source this long gets no more
                                  * backend work (set after init; 0 = at once) */
    int delta_rate;              /* > 0: delta messages a second the server aims at in all: each
                                  * tick sets delta_ms to n_jobs * 1000 / delta_rate, kept within
                                  * LV_PIPELINE_DELTA_COALESCE_MS..LV_PIPELINE_DELTA_MAX_MS; 0: the
                                  * minimum always (set after init) */
    unsigned delta_ms;           /* how long later deltas are coalesced now (lv_pipeline_tick) */
    /* the credit timetable: each started session with a source is in one of these
     * (lv_session_t.credit_link), so a tick looks only at the sessions due (lv_pipeline.c) */
    lv_queue_t credit_due;       /* due but held back (a waiting frame, capacity, share, budget, no
                                  * backend), in started_order: looked at on every tick */
    lv_queue_t credit_soon;      /* due by the next tick, to be sorted into credit_due */
    uint64_t credit_wheel_ms;    /* the wheel has turned up to this time (the last tick's now) */
    uint64_t credit_visits;      /* sessions looked at by ticks: the work the timetable bounds */
    lv_queue_t credit_wheel[LV_PIPELINE_WHEEL_SLOTS]; /* by credit_wake_ms / SLOT_MS: not yet due */
} lv_pipeline_t;

/** Set up p over the registry, the fair queue and the dispatcher (whose events it takes over).
 * LV_EIO when the per-principal table gets no random key. */
int lv_pipeline_init(lv_pipeline_t *p, lv_registry_t *reg, lv_drr_t *drr, lv_dispatch_t *dispatch,
                     const lv_pipeline_hooks_t *hooks);
/** Cancel every job (before the dispatcher's backends go); nothing is delivered for them. */
void lv_pipeline_shutdown(lv_pipeline_t *p);
/** Free the per-principal counts (after the loop has ended: nothing calls the pipeline again). */
void lv_pipeline_free(lv_pipeline_t *p);
/** What `principal` has waiting: frames in the fair queue plus credits not yet answered. Credits
 * to a principal with something waiting wait while the backends are full. */
size_t lv_pipeline_principal_waiting(const lv_pipeline_t *p, const char *principal);

/** s's outstanding credit (if any) is answered or dropped: by a frame (accepted or rejected), at
 * stop, when its last source leaves, or when the session is released. */
void lv_pipeline_credit_clear(lv_pipeline_t *p, lv_session_t *s);
/** The host moved s's next_credit_ms or changed its interval (a settings commit, a new source
 * kind): s is filed again in the credit timetable for its next credit (or its unanswered one's
 * re-ask). What the pipeline does itself (start, a credit answered, a source attached) needs no
 * call. */
void lv_pipeline_credit_reschedule(lv_pipeline_t *p, lv_session_t *s);

/** A checked frame for started session s (f: the caller's reference, taken). It waits in the
 * mailbox (a waiting one is replaced: returns true) and the session joins the fair queue unless
 * its job is still running (it joins when the job ends). A frame with a share_key for which a job
 * asking s's question runs makes s a follower of that job at once (nothing queued). */
bool lv_pipeline_put_frame(lv_pipeline_t *p, lv_session_t *s, lv_frame_t *f);
/** A source's answer to credit_id (lv_port_source.h), on a loop turn after request_frame: when
 * credit_id is still s's outstanding credit, the credit is cleared and, s being started, the frame
 * goes in as lv_pipeline_put_frame (a reference is taken: the caller keeps its own). Returns 0,
 * or LV_ENOTFOUND for a credit already answered, dropped or superseded (the frame is not used). */
int lv_pipeline_source_frame(lv_pipeline_t *p, lv_session_t *s, uint32_t credit_id, lv_frame_t *f);
/** Give waiting frames their turns (fair order) while the dispatcher takes them, at most
 * LV_PIPELINE_DISPATCH_PER_RUN; then let a full backend grow, or preempt for a starved principal.
 * Returns how many jobs started. */
size_t lv_pipeline_run(lv_pipeline_t *p);
/** s's settings are about to become next: a running job asked with other request settings is
 * superseded (taken back once it has run LV_PIPELINE_SUPERSEDE_MIN_MS, and sent again). */
void lv_pipeline_settings_changed(lv_pipeline_t *p, lv_session_t *s, const lv_settings_t *next);
/** The registry is about to free s (expired, evicted): out of the queue, credit dropped, job
 * cancelled; nothing more reaches s. A job other sessions follow goes on for them (the oldest
 * follower takes it over); a follower just leaves its job. */
void lv_pipeline_release(lv_pipeline_t *p, lv_session_t *s);

/** Periodic work (every ~20 ms): deltas due (coalesced) go to the viewers, running jobs are
 * reviewed every LV_PIPELINE_REVIEW_MS, and credits go to started sessions with a source, no
 * waiting frame and no unanswered credit (an unanswered one is re-asked after max(5 s, 2
 * intervals)) whose interval is due. While every slot is busy or spoken for (jobs + frames waiting
 * + credits out >= capacity), a credit also needs its principal to be below its share of the slots
 * counting what it has in flight and waiting, and, when more than `capacity` waits in all, to have
 * nothing waiting: its frame is asked for when it could go, not to age behind the principal's own
 * request. A credit held back that way sets `demand`. At most LV_PIPELINE_CREDITS_PER_TICK per
 * call; sessions that got one go to the back of the started list (due sessions are asked in its
 * order). The work is proportional to the sessions due or held back, not to all started ones (the
 * credit timetable). Returns how many credits went out. */
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

/* ---------- inside src/core only: what lv_coalesce.c uses of the pipeline; hosts do not call these.
 * A "view" is one session's view of an answer: a lead job (its session's) or a follower's job,
 * whose session (never NULL) hears through its viewers. ---------- */

/* Streamed text a job buffers: deltas not yet sent, a lead's text so far for late followers. */
#define LV_PIPELINE_JOB_TEXT_MAX 65536

/** The pipeline's monotonic clock (hooks.now_us, else lv_now_us()), in microseconds. */
uint64_t lv_pipeline_now_us(const lv_pipeline_t *p);
/** Ask the host for an lv_pipeline_run on a later loop turn (hooks.kick). */
void lv_pipeline_kick(const lv_pipeline_t *p);
/** A job for s's waiting frame, which stays in the mailbox: the job takes its own frame reference,
 * s's settings, the next answer id (s->answer_seq + 1, not yet claimed), s as its session, queue
 * numbers from the frame's receipt to t0; everything else zero, empty capped text buffers, links
 * initialised and unlinked. The caller links it (p->jobs or a lead's followers) or hands it back
 * with lv_pipeline_job_recycle. NULL without memory. */
lv_job_t *lv_pipeline_job_new(lv_pipeline_t *p, lv_session_t *s, uint64_t t0);
/** Give back a job that is linked nowhere and no session points at: its frame reference is dropped
 * and the struct kept as the spare for the next turn (or freed when there is one). */
void lv_pipeline_job_recycle(lv_pipeline_t *p, lv_job_t *job);
/** The view's answer starts: its session's viewers hear answer_start. */
void lv_pipeline_view_start(lv_job_t *view);
/** More text for the view: the first piece goes to the viewers at once, later ones wait
 * p->delta_ms (lv_pipeline_view_flush_due). true for the first piece. */
bool lv_pipeline_view_delta(lv_pipeline_t *p, lv_job_t *view, const char *text, size_t len);
/** The view's waiting text goes to the viewers when it has waited p->delta_ms. */
void lv_pipeline_view_flush_due(lv_pipeline_t *p, lv_job_t *view, uint64_t now_ms);
/** The view's end: its unsent text, then on success its metrics, history entry (saved), the answer
 * and the `answered` hook (s->job cleared first: the answer says it is no longer processing); on
 * an error, the error under the view's answer id and the `failed` hook. The job is not freed. */
void lv_pipeline_view_done(lv_pipeline_t *p, lv_job_t *view, const lv_dispatch_result_t *r);

#endif
