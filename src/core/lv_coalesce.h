/* lv_coalesce.h - identical work done once (docs/internals/coalescing.md): sessions that ask the
 * same question about the same camera sample share one backend request, and one that asks just
 * after it ended hears its answer. This is the pipeline's coalescing part; lv_pipeline.c calls it
 * at a few hook points and nothing else does.
 *
 * The key. Two sessions would send the very same request when their frames carry the same nonzero
 * share_key (one camera sample, lv_session.h) and their request settings agree: prompt, model,
 * backend, max_tokens, temperature, frame_max_side, jpeg_quality, debug. The tables are keyed by
 * share_key followed by a keyed SipHash of those settings (16 bytes); a hit is confirmed by
 * comparing the settings field by field, so a collision only costs a missed share. A frame with
 * share_key 0 is never looked up and never entered.
 *
 * Two tables, both fields of lv_pipeline_t (lv_pipeline.h) and touched only here:
 *   - p->coalesce: key -> the running lead that takes followers (lv_job_t.coalesce_node). A lead
 *     enters when it is dispatched (lv_coalesce_open) and leaves when it ends, is requeued or
 *     freed, or when its text so far passes LV_PIPELINE_JOB_TEXT_MAX (a late follower could not be
 *     told it).
 *   - p->answers, p->answers_by_age, p->n_answers: key -> a shared request's answer kept for
 *     LV_PIPELINE_ANSWER_KEEP_MS after it ended (at most LV_PIPELINE_ANSWERS_KEPT, oldest dropped
 *     first; not debug answers, not errors), for a camera's latecomers.
 *
 * Leads and followers. The job the dispatcher runs is the lead (lv_port_dispatch.h). A session
 * whose waiting frame matches a lead becomes a follower: it gets an lv_job_t of its own, never
 * submitted, linked in lead->followers (oldest first), carrying that session's view of the shared
 * answer (its answer id, queue numbers, unsent deltas). The lead's events reach every follower
 * (lv_coalesce_started, _delta, _done), each exactly once, under its own answer id. A follower's
 * principal pays nothing: no turn, no slot in flight, nothing waiting.
 *
 * Ownership and lifetimes:
 *   - A follower's lv_job_t is made here (lv_pipeline_job_new) when its session joins; it is its
 *     session's s->job and is linked only in lead->followers (never in p->jobs; no dispatcher sees
 *     it). It holds its own frame reference. It is freed here, exactly once: after the lead's done
 *     reached it, when it lets go (lv_coalesce_let_go, lv_coalesce_review), when the lead is
 *     requeued (its frame back in its mailbox), when it takes the lead over (its view moves into
 *     the lead), or silently with its lead (lv_coalesce_forget). Its session then has no job.
 *   - A lead is the pipeline's (p->jobs; allocated and freed by lv_pipeline.c). This file links it
 *     into p->coalesce and, on a hand-over, rewrites whose view it carries; its address, frame,
 *     request settings, backend, dispatch time and paying principal (job->user) never change,
 *     since the dispatcher holds it. A lead's session is never NULL: when it lets go, a follower
 *     takes the lead over or the pipeline frees the job.
 *   - A kept answer is this file's copy (text included), freed when it expires, is replaced by a
 *     newer answer to the same key, is pushed out by a newer one past the cap, or at
 *     lv_coalesce_free.
 *   - lv_coalesce_match_t points into the tables: use it at once, before any other pipeline call.
 *   - Everything runs on the loop thread from inside pipeline calls. Viewers hear followers' answers
 *     through the pipeline's answer path (the view functions at the end of lv_pipeline.h). Nothing
 *     here calls the dispatcher or the fair queue. */
#ifndef LV_COALESCE_H
#define LV_COALESCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_pipeline.h"

/* A kept answer (lv_coalesce.c's). */
typedef struct lv_coalesce_kept lv_coalesce_kept_t;

/* What answers a session's waiting frame without a request of its own (lv_coalesce_find). */
typedef struct {
    lv_job_t *lead;                 /* a running request asking the same: the session follows it */
    const lv_coalesce_kept_t *kept; /* else a fresh kept answer to it: the session hears it */
} lv_coalesce_match_t;

/** Set up p's two tables (at lv_pipeline_init). LV_EIO when a table gets no random key; nothing is
 * left to free then. */
int lv_coalesce_init(lv_pipeline_t *p);
/** Free the kept answers and both tables (at lv_pipeline_free, after lv_pipeline_shutdown: no lead
 * is left in p->coalesce). */
void lv_coalesce_free(lv_pipeline_t *p);
/** Drop kept answers older than LV_PIPELINE_ANSWER_KEEP_MS at now_ms (every tick). */
void lv_coalesce_expire(lv_pipeline_t *p, uint64_t now_ms);

/** Is s's waiting frame (s->pending) the same question about the same picture as a running lead
 * (m->lead) or, failing that, a fresh kept answer (m->kept)? false when neither, or s has no frame
 * or its frame has share_key 0. Changes nothing. */
bool lv_coalesce_find(const lv_pipeline_t *p, const lv_session_t *s, lv_coalesce_match_t *m);
/** s takes the answer m found, right after lv_coalesce_find: it follows m->lead (hearing
 * answer_start and the text so far now if the request went out already) or hears m->kept whole
 * now (answer_start, the text, the answer, its history entry and metrics). Either way its frame
 * leaves the mailbox, a new answer id is s's, the `coalesced` hook counts it, and nothing is sent
 * to a backend. The caller takes s out of the fair queue (at put_frame: before; at its turn: by
 * returning LV_DRR_DROP). false without memory: nothing changed, s makes a request of its own. */
bool lv_coalesce_join(lv_pipeline_t *p, lv_session_t *s, const lv_coalesce_match_t *m);

/** lead was just dispatched: when its frame has a share_key it takes followers from now on. */
void lv_coalesce_open(lv_pipeline_t *p, lv_job_t *lead);
/** lead takes no more followers (its answer is over); its text so far is dropped. Idempotent. */
void lv_coalesce_close(lv_pipeline_t *p, lv_job_t *lead);

/** The lead's started event, after its own session heard answer_start: the followers that joined
 * before the request went out hear theirs (with the backend and model the dispatcher chose). */
void lv_coalesce_started(lv_pipeline_t *p, lv_job_t *lead);
/** The lead's delta event, before anyone hears the piece: it is added to the text so far that a
 * follower joining later hears first (past LV_PIPELINE_JOB_TEXT_MAX the lead is closed). */
void lv_coalesce_so_far(lv_pipeline_t *p, lv_job_t *lead, const char *text, size_t len);
/** The lead's delta event, after its own session's view took the piece: every follower's does. */
void lv_coalesce_delta(lv_pipeline_t *p, lv_job_t *lead, const char *text, size_t len);
/** Every follower's deltas due at now_ms go out (coalesced, as the lead's; every tick). */
void lv_coalesce_flush_due(lv_pipeline_t *p, lv_job_t *lead, uint64_t now_ms);
/** The lead's done event (not a requeue), after lv_coalesce_close and its own session's end of the
 * answer: a success is kept for latecomers; each follower hears the same end (the answer or the
 * error, under its own answer id), is freed, and its session may queue a newer frame. The caller
 * frees the lead. */
void lv_coalesce_done(lv_pipeline_t *p, lv_job_t *lead, const lv_dispatch_result_t *r);
/** The lead goes back in line without an answer (a retry's requeue, taken back): it is closed and
 * every follower's frame goes back in line too (unless a newer one waits or its session stopped);
 * they meet again at their turns. No follower is left. */
void lv_coalesce_requeue(lv_pipeline_t *p, lv_job_t *lead);
/** The lead is being freed without an end for its followers (shutdown, a cancel): it is closed and
 * its followers are freed; nothing more reaches their sessions. */
void lv_coalesce_forget(lv_pipeline_t *p, lv_job_t *lead);

/** job's session lets go of it (released, or detached too long). A follower just stops hearing
 * (freed, no message); a lead others follow is taken over by the oldest follower and the request
 * goes on; true in both cases. false for a lead nobody follows: the caller cancels it at the
 * backend as without coalescing. */
bool lv_coalesce_let_go(lv_pipeline_t *p, lv_job_t *job);
/** The lead's session's request settings changed (a supersede, due): when others follow, its
 * session hears answer_cancelled(reason) and its frame waits again to be asked anew, while the
 * oldest follower takes the request over (nothing is cancelled at the backend); true. false when
 * nobody follows: the caller takes the job back as without coalescing. */
bool lv_coalesce_step_back(lv_pipeline_t *p, lv_job_t *lead, const char *reason);
/** The lead's followers that let go (every review): one detached too long stops following (its
 * waiting frame goes, as a lead's would); one whose request settings changed hears
 * answer_cancelled("settings_changed") and its frame waits again for its new question. Neither
 * touches the request. */
void lv_coalesce_review(lv_pipeline_t *p, lv_job_t *lead, uint64_t now_ms);

#endif
