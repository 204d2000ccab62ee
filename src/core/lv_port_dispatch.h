/* lv_port_dispatch.h - the dispatch port: where a session's frame becomes an answer. The pipeline
 * (lv_pipeline.c) owns a job per request in flight and hands it to a dispatcher; the dispatcher
 * picks a backend, sends the request, and reports back through the events. Today's one
 * implementation is src/backend/lv_dispatch_local.c (the backend pool, frame shaping, the chat
 * client, one retry on another backend before the first token); a cluster's worker queue would be
 * another. Unit tests drive the pipeline with a fake (tests/unit/test_pipeline.c).
 *
 * Events, per job, in this order: started (at most once: the request went out, after any
 * shaping), delta (0..n: more of the answer's text, as it arrives), done (exactly once, unless the
 * job is cancelled first). `started` may run from inside submit; delta and done never do (they
 * come on a later loop turn), so the pipeline may finish setting up after submit returns.
 *
 * Ownership and lifetimes:
 *   - The pipeline allocates and frees lv_job_t. It is valid from submit until done has returned,
 *     or until cancel returns. The dispatcher may keep `impl` state of its own beyond that (a
 *     frame being shaped on a thread cannot be taken back), but never touches the job again.
 *   - The dispatcher takes its own reference to the frame if it keeps it (lv_frame_ref).
 *   - Everything runs on the loop thread. Pointers passed to events (text, result) are borrowed
 *     for the call only. An event handler may cancel other jobs, never its own.
 *   - A dispatcher only ever sees leads: the pipeline fans one job's events out to the sessions
 *     that share it (its followers), and may move the job to another session while it runs (the
 *     request settings, frame and address of the job stay the same). */
#ifndef LV_PORT_DISPATCH_H
#define LV_PORT_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_buf.h"
#include "lv_hmap.h"
#include "lv_queue.h"
#include "lv_settings.h"
#include "lv_traceparent.h"

struct lv_session;
struct lv_frame;
typedef struct lv_dispatch lv_dispatch_t;

/* One request in flight for one session. The public part is what viewers and the dispatcher
 * read; the pipeline's bookkeeping follows. */
typedef struct lv_job {
    uint64_t answer_id;
    lv_settings_t settings;        /* the session's settings when the frame left the queue: the
                                    * request is made from these (a later change supersedes it) */
    struct lv_frame *frame;        /* the frame asked about (the job's reference) */
    char backend_id[LV_BACKEND_ID_MAX + 1]; /* set by the dispatcher (submit, or a retry) */
    char model[LV_MODEL_MAX + 1];  /* the backend's model id, resolved by the dispatcher */
    double queue_wait_ms;          /* frame received -> left the queue */
    double frame_age_ms;           /* the same plus how old the picture was when sent */
    uint64_t gateway_us;           /* the gateway's own time on this frame (both sides add) */
    lv_trace_t trace;              /* its session's trace: each backend request carries it in a
                                    * traceparent with a new span id (lv_traceparent.h) */
    void *impl;                    /* the dispatcher's */

    /* the pipeline's */
    lv_queue_t link;               /* in the pipeline's jobs */
    struct lv_session *session;    /* never NULL: a session that lets go cancels the job or hands it to a follower (lv_coalesce.h) */
    uint64_t frame_recv_us;
    uint64_t dispatch_us;
    bool started;                  /* the started event came: it may be reviewed and preempted */
    lv_buf_t delta;                /* streamed text not yet given to the viewers */
    uint64_t delta_since_ms;       /* when the oldest unsent piece arrived; 0 = nothing pending */
    bool first_delta_sent;
    bool settings_stale;           /* the session's request settings changed while it ran */
    char user[64];                 /* the fair queue's key it was dispatched under */
    uint64_t linger_us;            /* how long its user keeps competing after it ends */

    /* identical requests done once (docs/internals/coalescing.md). A job the dispatcher was given
     * is a lead; a session that asks the same question about the same picture gets a follower job
     * instead: never submitted, it only carries that session's own view of the shared answer
     * (answer id, queue wait, deltas not yet sent) and is fed from its lead's events. */
    struct lv_job *lead;           /* a follower's lead; NULL for a job the dispatcher knows */
    lv_queue_t followers;          /* a lead's followers (their follow_link), oldest first */
    lv_queue_t follow_link;        /* a follower's place in lead->followers */
    size_t n_followers;
    lv_buf_t so_far;               /* a lead that takes followers: the answer's text so far (capped;
                                    * a late follower's first delta) */
    lv_hmap_node_t coalesce_node;  /* a lead in the pipeline's coalesce table */
    unsigned char coalesce_key[16]; /* its key there: share_key, then a hash of the request settings */
    bool in_table;
} lv_job_t;

/* How a job ended. Strings are borrowed for the done call. */
typedef struct lv_dispatch_result {
    int rc;                        /* 0, or LV_E*: then error_code and error_message say why */
    const char *error_code;        /* "backend_error", "backend_timeout", ... */
    const char *error_message;     /* human text, without the backend id */
    bool requeue;                  /* failed before its first token; another backend serves the
                                    * model but has no free slot: the frame waits again, no error */
    bool stale;                    /* never started: its frame was already too old when it could
                                    * have been (a cluster's queue): dropped as stale, no error */
    const char *text;              /* the whole answer (partial on errors), never NULL */
    size_t text_len;
    int tokens;                    /* completion tokens (the backend's count, else deltas) */
    int prompt_tokens;             /* the backend's usage count; 0 when it sent none (usage records) */
    uint64_t ttft_us;              /* request start -> first token; 0 when none came */
    bool streamed;                 /* the backend streamed (SSE) rather than answering at once */
    double shape_ms;               /* time spent scaling the frame down; 0 when sent as is */
    const char *request_debug_json;  /* settings.debug: what was sent (base64 cut); else NULL */
    const char *response_debug_json; /* settings.debug: what came back; else NULL */
} lv_dispatch_result_t;

typedef struct {
    void (*started)(lv_dispatch_t *d, lv_job_t *job);
    void (*delta)(lv_dispatch_t *d, lv_job_t *job, const char *text, size_t len);
    void (*done)(lv_dispatch_t *d, lv_job_t *job, const lv_dispatch_result_t *r);
} lv_dispatch_events_t;

typedef struct {
    /** Find a backend for job->settings (backend id, model) and start the request for job->frame.
     * 0: it is the dispatcher's now, events follow. LV_EAGAIN: every backend that could serve it is
     * full (the frame waits in line). LV_ENOTFOUND: none serves it; why (a sentence for the user)
     * is written. Other LV_E*: it could not be started. On any non-zero return nothing is kept. */
    int (*submit)(lv_dispatch_t *d, lv_job_t *job, char *why, size_t why_size);
    /** Take job back: no event for it follows; its backend slot is freed. */
    void (*cancel)(lv_dispatch_t *d, lv_job_t *job);
    /** Requests that can run at once when every healthy backend is full. */
    size_t (*capacity)(lv_dispatch_t *d);
    /** Requests that could start now. */
    size_t (*free_slots)(lv_dispatch_t *d);
    /** Frames wait: may a full backend take one more request (job's backend, having just streamed
     * its first token, or any when job is NULL)? Returns how many slots were added. NULL = never. */
    int (*grow)(lv_dispatch_t *d, lv_job_t *job);
    /** Would the slot job holds serve a request with these settings (same backend, model served)?
     * Asked only to preempt. NULL = the slots are not this dispatcher's to hand over (a cluster's
     * queue decides who goes next): no preemption. */
    bool (*could_serve)(lv_dispatch_t *d, const lv_job_t *job, const lv_settings_t *want);
    /** The time to first token of job's backend with nothing queued inside it: the yardstick for
     * "this request has been silent too long". */
    uint64_t (*ttft_floor_us)(lv_dispatch_t *d, const lv_job_t *job);
    /** Could a request with these settings be served now, or soon (a backend in rotation serves
     * the model, maybe full)? When not, why says so in a sentence for the user, and the pipeline
     * asks the session's sources for no frames until it could. NULL = always. */
    bool (*serves)(lv_dispatch_t *d, const lv_settings_t *st, char *why, size_t why_size);
    /** Asked every review (~100 ms): > 0 when slots that were closed take requests again without
     * any job ending (a backend's Retry-After pause is over), so waiting frames get a run. NULL =
     * never happens. */
    int (*reopened)(lv_dispatch_t *d);
    /** A newer frame f for job's session while job has not started (it waits inside the
     * dispatcher: a cluster's queue): take f instead of job->frame (take a reference if kept) and
     * return 0; the pipeline then swaps job->frame. Non-zero: keep the old one (f waits in the
     * session's mailbox as usual). Only asked for a lead without followers whose settings still
     * hold. NULL = never (a local dispatcher starts at once). */
    int (*replace_frame)(lv_dispatch_t *d, lv_job_t *job, struct lv_frame *f);
} lv_dispatch_ops_t;

/* Embedded first in the implementation's own struct. The pipeline sets events/events_ud when the
 * dispatcher is given to it (lv_pipeline_init). */
struct lv_dispatch {
    const lv_dispatch_ops_t *ops;
    const lv_dispatch_events_t *events;
    void *events_ud;
};

#endif
