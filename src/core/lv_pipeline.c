/* lv_pipeline.c - the frame pipeline: credits, the fair queue, jobs and answers (lv_pipeline.h). */
#include "lv_pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_log.h"

/* One principal with something waiting. */
typedef struct {
    lv_hmap_node_t node;
    size_t count;
    char key[64];
} waiting_t;

static const lv_dispatch_events_t dispatch_events;
static void answers_expire(lv_pipeline_t *p, uint64_t now_ms);

int lv_pipeline_init(lv_pipeline_t *p, lv_registry_t *reg, lv_drr_t *drr, lv_dispatch_t *dispatch,
                     const lv_pipeline_hooks_t *hooks)
{
    if (lv_hmap_init(&p->waiting, 0) != 0)
        return LV_EIO;
    if (lv_hmap_init(&p->coalesce, 0) != 0 || /* bounded by the jobs in flight */
        lv_hmap_init(&p->answers, LV_PIPELINE_ANSWERS_KEPT) != 0) {
        lv_hmap_free(&p->waiting);
        lv_hmap_free(&p->coalesce);
        return LV_EIO;
    }
    lv_queue_init(&p->answers_by_age);
    p->n_answers = 0;
    p->reg = reg;
    p->drr = drr;
    p->dispatch = dispatch;
    dispatch->events = &dispatch_events;
    dispatch->events_ud = p;
    p->hooks = *hooks;
    lv_queue_init(&p->jobs);
    p->spare = NULL;
    p->n_jobs = 0;
    p->credits_held = 0;
    p->demand = false;
    p->last_review_ms = 0;
    p->credits_outstanding = 0;
    p->max_frame_age_ms = 0;
    p->detached_cancel_ms = 0;
    return 0;
}

void lv_pipeline_free(lv_pipeline_t *p)
{
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    lv_hmap_iter_init(&p->waiting, &it);
    while ((n = lv_hmap_iter_next(&p->waiting, &it)) != NULL) {
        lv_hmap_remove(&p->waiting, n);
        free(LV_CONTAINER_OF(n, waiting_t, node));
    }
    lv_hmap_free(&p->waiting);
    lv_hmap_free(&p->coalesce); /* empty: every job was freed at shutdown */
    answers_expire(p, UINT64_MAX);
    lv_hmap_free(&p->answers);
    if (p->spare) {
        lv_buf_free(&p->spare->delta);
        lv_buf_free(&p->spare->so_far);
    }
    free(p->spare);
    p->spare = NULL;
}

size_t lv_pipeline_principal_waiting(const lv_pipeline_t *p, const char *principal)
{
    lv_hmap_node_t *n = lv_hmap_find_str(&p->waiting, principal);
    return n ? LV_CONTAINER_OF(n, waiting_t, node)->count : 0;
}

/* +1 or -1 (never below zero: a -1 with nothing counted is ignored). A failed allocation leaves the
 * principal uncounted, so its credits are only paced by the total. */
static void principal_add(lv_pipeline_t *p, const char *principal, int delta)
{
    lv_hmap_node_t *n = lv_hmap_find_str(&p->waiting, principal);
    waiting_t *w = n ? LV_CONTAINER_OF(n, waiting_t, node) : NULL;
    if (delta > 0) {
        if (!w) {
            w = calloc(1, sizeof(*w));
            if (!w)
                return;
            snprintf(w->key, sizeof(w->key), "%s", principal);
            if (lv_hmap_insert_str(&p->waiting, &w->node, w->key) != 0) {
                free(w);
                return;
            }
        }
        w->count++;
    } else if (w && --w->count == 0) {
        lv_hmap_remove(&p->waiting, &w->node);
        free(w);
    }
}

static void left_queue(lv_pipeline_t *p, const lv_session_t *s) { principal_add(p, s->rec.principal, -1); }

static uint64_t now_us(const lv_pipeline_t *p) { return p->hooks.now_us ? p->hooks.now_us(p->hooks.ud) : lv_now_us(); }
static void kick(const lv_pipeline_t *p) { p->hooks.kick(p->hooks.ud); }

/* A reload or a network blip reconnects well within --detached-cancel-ms; past it nobody would see
 * the answer. */
bool lv_pipeline_detached_too_long(const lv_pipeline_t *p, const lv_session_t *s, uint64_t now_ms)
{
    return !lv_session_attached(s) && s->detached_since_ms &&
           now_ms - s->detached_since_ms >= (uint64_t)LV_MAX(p->detached_cancel_ms, 0);
}

bool lv_pipeline_supersedes(const lv_session_t *s, const lv_settings_t *next)
{
    const lv_settings_t *a = &s->rec.settings;
    return s->job && (strcmp(a->prompt, next->prompt) != 0 || strcmp(a->model, next->model) != 0 ||
                      strcmp(a->backend, next->backend) != 0 || a->max_tokens != next->max_tokens ||
                      a->temperature != next->temperature);
}

/* Every viewer of s (lv_port_viewer.h): the walk survives a viewer unlinking itself. */
#define FOR_EACH_VIEWER(s, v, body)                                                                \
    do {                                                                                           \
        lv_queue_t *vn_, *vnext_;                                                                  \
        for (vn_ = (s)->viewers.next; vn_ != &(s)->viewers; vn_ = vnext_) {                        \
            vnext_ = vn_->next;                                                                    \
            lv_viewer_t *v = LV_CONTAINER_OF(vn_, lv_viewer_t, link);                              \
            body;                                                                                  \
        }                                                                                          \
    } while (0)

void lv_pipeline_ready(lv_pipeline_t *p, lv_session_t *s)
{
    if (!s->pending || s->job || !s->rec.started)
        return;
    uint64_t interval_us = (uint64_t)s->rec.settings.interval_ms * 1000u;
    /* a frame older than this when its turn comes is dropped, never sent: two intervals, at least 2 s */
    s->drr.max_age_us = p->max_frame_age_ms > 0 ? (uint64_t)p->max_frame_age_ms * 1000u
                                                : LV_MAX(2 * interval_us, (uint64_t)2000000);
    if (lv_drr_node_queued(&s->drr)) {
        s->drr.enqueued_us = s->pending->recv_us; /* the newer frame replaced the waiting one */
        return;
    }
    if (lv_drr_enqueue(p->drr, &s->drr, s->rec.principal, s->pending->recv_us) != 0)
        return;
    principal_add(p, s->rec.principal, +1);
    /* tell the viewers where it stands when the frame will have to wait for a slot */
    size_t free_slots = p->dispatch->ops->free_slots(p->dispatch);
    size_t ahead = lv_drr_position(p->drr, &s->drr);
    if (ahead >= free_slots) {
        size_t position = ahead - free_slots + 1, queued = lv_drr_queued(p->drr);
        FOR_EACH_VIEWER(s, v, if (v->ops && v->ops->queued) v->ops->queued(v, s, position, queued));
    }
}

void lv_pipeline_unready(lv_pipeline_t *p, lv_session_t *s)
{
    if (!lv_drr_node_queued(&s->drr))
        return;
    lv_drr_remove(p->drr, &s->drr);
    principal_add(p, s->rec.principal, -1);
}

void lv_pipeline_drop_stale(lv_pipeline_t *p, lv_session_t *s, uint64_t now_us)
{
    principal_add(p, s->rec.principal, -1);
    lv_frame_t *f = lv_session_mailbox_take(s);
    if (!f)
        return;
    double age_ms = (double)(now_us - f->recv_us) / 1000.0 + f->capture_age_ms;
    lv_frame_unref(f);
    s->frames_stale++;
    if (p->hooks.dropped)
        p->hooks.dropped(p->hooks.ud, "stale");
    FOR_EACH_VIEWER(s, v, if (v->ops && v->ops->frame_dropped) v->ops->frame_dropped(v, s, "stale", age_ms));
}

/* A session's unanswered credit counts against its principal like a queued frame, so credits go
 * out only as fast as frames can be served. */
void lv_pipeline_credit_clear(lv_pipeline_t *p, lv_session_t *s)
{
    if (!s->credit_outstanding)
        return;
    s->credit_outstanding = 0;
    p->credits_outstanding--;
    principal_add(p, s->rec.principal, -1);
}

/* Pull, not push: a source is asked for a frame only when its session's interval is due and the
 * frame could be served soon: its principal has nothing waiting (fair queueing gives every
 * principal a turn each round), or less than one round of backend capacity is waiting in total.
 * Under overload sources therefore stop uploading frames that would only be thrown away. */
static void flush_due_deltas(lv_pipeline_t *p, uint64_t now_ms);
static void review_jobs(lv_pipeline_t *p, uint64_t now_ms);

/* Could s's next frame be served (a backend in rotation serves its model)? When not, its viewers
 * hear why when that starts and every LV_PIPELINE_NO_BACKEND_REPEAT_MS after, instead of an
 * error for every frame uploaded in vain. */
static bool session_served(lv_pipeline_t *p, lv_session_t *s, uint64_t now)
{
    lv_dispatch_t *d = p->dispatch;
    char why[1024];
    if (!d->ops->serves || d->ops->serves(d, &s->rec.settings, why, sizeof(why))) {
        s->no_backend_ms = 0;
        return true;
    }
    if (!s->no_backend_ms || now - s->no_backend_ms >= LV_PIPELINE_NO_BACKEND_REPEAT_MS) {
        s->no_backend_ms = now ? now : 1;
        lv_pipeline_error(p, s, "no_backend", why, 0);
    }
    return false;
}

size_t lv_pipeline_tick(lv_pipeline_t *p, uint64_t now)
{
    flush_due_deltas(p, now);
    answers_expire(p, now_us(p) / 1000u);
    if (now - p->last_review_ms >= LV_PIPELINE_REVIEW_MS) {
        p->last_review_ms = now;
        review_jobs(p, now);
    }
    size_t capacity = p->dispatch->ops->capacity(p->dispatch);
    size_t waiting = lv_drr_queued(p->drr) + p->credits_outstanding;
    p->demand = false;
    lv_queue_t *head = lv_registry_started(p->reg), *n;
    lv_session_t *granted[LV_PIPELINE_CREDITS_PER_TICK];
    size_t n_granted = 0;
    LV_QUEUE_FOREACH(n, head)
    {
        if (n_granted == LV_PIPELINE_CREDITS_PER_TICK)
            break; /* bounded work per tick; the rest are asked on the next one */
        lv_session_t *s = LV_CONTAINER_OF(n, lv_session_t, started_link);
        if (s->n_sources == 0 || s->pending) /* credits go to sources */
            continue;
        if (s->credit_outstanding) {
            uint64_t retry = LV_MAX((uint64_t)LV_PIPELINE_CREDIT_RETRY_MIN_MS, 2u * (uint64_t)s->rec.settings.interval_ms);
            if (now - s->credit_sent_ms < retry)
                continue;
            lv_pipeline_credit_clear(p, s); /* the source lost it (tab hidden, reconnect): ask again */
            waiting--;
        }
        if (now < s->next_credit_ms)
            continue;
        if (!session_served(p, s, now))
            continue; /* no frame would be served: none is asked for (asked again once it is) */
        if (p->n_jobs + waiting >= capacity) { /* every slot is busy or spoken for */
            size_t mine = lv_pipeline_principal_waiting(p, s->rec.principal);
            if (waiting >= capacity && mine > 0)
                continue; /* it stays due and is asked as soon as the queue drains */
            size_t share = lv_drr_share(p->drr, s->rec.principal);
            if (share && mine + (size_t)lv_drr_user_inflight(p->drr, s->rec.principal) >= share) {
                p->credits_held++;
                p->demand = true; /* evidence for a full backend to grow, as a waiting frame is */
                continue;         /* its frame would wait for one of its own requests: ask then */
            }
        }
        if (p->hooks.credit_allowed && !p->hooks.credit_allowed(p->hooks.ud, s, now))
            continue; /* over its frame rate: asking would only earn it an error */
        s->credit_outstanding = ++s->credit_seq ? s->credit_seq : ++s->credit_seq;
        p->credits_outstanding++;
        waiting++;
        principal_add(p, s->rec.principal, +1);
        s->credit_sent_ms = now;
        /* a fixed cadence, as the tool livevlm replaces had (every Nth camera frame): the next one is
         * due an interval after this one was due, not after it went out (a tick is up to 20 ms
         * late); a credit held back longer than an interval restarts the cadence, no catch-up */
        uint64_t interval = (uint64_t)s->rec.settings.interval_ms, due = s->next_credit_ms;
        s->next_credit_ms = (due && now - due < interval ? due : now) + interval;
        granted[n_granted++] = s;
        lv_queue_t *sn, *snext; /* every source of the session is asked (lv_port_source.h) */
        for (sn = s->sources.next; sn != &s->sources; sn = snext) {
            snext = sn->next;
            lv_source_t *src = LV_CONTAINER_OF(sn, lv_source_t, link);
            if (src->ops && src->ops->request_frame)
                src->ops->request_frame(src, s, s->credit_outstanding);
        }
    }
    /* sessions that got a credit go to the back: the walk order is the order in which sessions
     * last got one, so among one principal's sessions the longest-waiting is asked first */
    for (size_t i = 0; i < n_granted; i++) {
        lv_queue_remove(&granted[i]->started_link);
        lv_queue_insert_tail(head, &granted[i]->started_link);
    }
    return n_granted;
}

void lv_pipeline_error(lv_pipeline_t *p, lv_session_t *s, const char *code, const char *message, uint64_t answer_id)
{
    (void)p;
    s->errors++;
    FOR_EACH_VIEWER(s, v, if (v->ops && v->ops->error) v->ops->error(v, s, code, message, answer_id));
}

void lv_pipeline_answer_cancelled(lv_pipeline_t *p, lv_session_t *s, uint64_t answer_id, const char *reason)
{
    (void)p;
    FOR_EACH_VIEWER(s, v, if (v->ops && v->ops->answer_cancelled) v->ops->answer_cancelled(v, s, answer_id, reason));
}

void lv_pipeline_attach_viewer(lv_pipeline_t *p, lv_session_t *s, lv_viewer_t *v, uint64_t now_ms)
{
    (void)p;
    lv_queue_insert_tail(&s->viewers, &v->link);
    s->n_viewers++;
    lv_session_attach_changed(s, now_ms);
}

void lv_pipeline_detach_viewer(lv_pipeline_t *p, lv_session_t *s, lv_viewer_t *v, uint64_t now_ms)
{
    (void)p;
    lv_queue_remove(&v->link);
    s->n_viewers--;
    lv_session_attach_changed(s, now_ms);
}

void lv_pipeline_attach_source(lv_pipeline_t *p, lv_session_t *s, lv_source_t *src, uint64_t now_ms)
{
    (void)p;
    lv_queue_insert_tail(&s->sources, &src->link);
    s->n_sources++;
    lv_session_attach_changed(s, now_ms);
}

void lv_pipeline_detach_source(lv_pipeline_t *p, lv_session_t *s, lv_source_t *src, uint64_t now_ms)
{
    lv_queue_remove(&src->link);
    s->n_sources--;
    lv_session_attach_changed(s, now_ms);
    if (s->n_sources == 0)
        lv_pipeline_credit_clear(p, s); /* nobody would answer it */
}

void lv_pipeline_start(lv_pipeline_t *p, lv_session_t *s, uint64_t now_ms)
{
    lv_session_set_started(p->reg, s, true, now_ms);
}

void lv_pipeline_stop(lv_pipeline_t *p, lv_session_t *s, uint64_t now_ms)
{
    lv_pipeline_credit_clear(p, s);
    lv_session_set_started(p->reg, s, false, now_ms);
    lv_pipeline_unready(p, s);
    lv_frame_unref(lv_session_mailbox_take(s));
    lv_queue_t *n, *next;
    for (n = s->sources.next; n != &s->sources; n = next) {
        next = n->next;
        lv_source_t *src = LV_CONTAINER_OF(n, lv_source_t, link);
        if (src->ops && src->ops->stop)
            src->ops->stop(src, s);
    }
}

/* ---------- jobs: a frame's turn, the dispatcher's events, the answer ---------- */

/* Streamed text a job buffers (deltas not yet sent; a lead's text so far for late followers). */
#define JOB_TEXT_MAX 65536

/* Every follower of a lead (lv_port_dispatch.h): the walk survives the current one being freed. */
#define FOR_EACH_FOLLOWER(lead, fj, body)                                                          \
    do {                                                                                           \
        lv_queue_t *fn_, *fnext_;                                                                  \
        for (fn_ = (lead)->followers.next; fn_ != &(lead)->followers; fn_ = fnext_) {              \
            fnext_ = fn_->next;                                                                    \
            lv_job_t *fj = LV_CONTAINER_OF(fn_, lv_job_t, follow_link);                            \
            body;                                                                                  \
        }                                                                                          \
    } while (0)

/* The settings a request is made of: what lv_pipeline_supersedes compares, plus how the frame may
 * be shaped and whether the exchange is recorded for the debug view. Sessions that agree on all of
 * them, about the same picture, would send the backend the very same request. */
static bool same_request(const lv_settings_t *a, const lv_settings_t *b)
{
    return strcmp(a->prompt, b->prompt) == 0 && strcmp(a->model, b->model) == 0 &&
           strcmp(a->backend, b->backend) == 0 && a->max_tokens == b->max_tokens &&
           a->temperature == b->temperature && a->frame_max_side == b->frame_max_side &&
           a->jpeg_quality == b->jpeg_quality && a->debug == b->debug;
}

/* The coalesce table's key: the picture's share_key, then the table's keyed hash of the request
 * settings. Equal requests get equal keys; two different ones that collide are told apart by
 * same_request on lookup (the second just gets no followers). */
static void coalesce_key(const lv_pipeline_t *p, uint64_t share_key, const lv_settings_t *st, unsigned char key[16])
{
    char buf[LV_PROMPT_MAX + LV_MODEL_MAX + LV_BACKEND_ID_MAX + 128];
    /* the strings keep their NULs, so no two field splits read alike; + 0.0 makes -0 read as 0 */
    int n = snprintf(buf, sizeof(buf), "%s%c%s%c%s%c%d %.17g %d %d %d", st->prompt, 0, st->model, 0, st->backend, 0,
                     st->max_tokens, st->temperature + 0.0, st->frame_max_side, st->jpeg_quality, st->debug ? 1 : 0);
    size_t len = n < 0 ? 0 : LV_MIN((size_t)n, sizeof(buf) - 1);
    uint64_t h = lv_hmap_hash(&p->coalesce, buf, len);
    memcpy(key, &share_key, 8);
    memcpy(key + 8, &h, 8);
}

/* The running job that asks st's question about f's picture and takes followers, or NULL. */
static lv_job_t *coalesce_find(const lv_pipeline_t *p, const lv_frame_t *f, const lv_settings_t *st)
{
    if (!f || !f->share_key || lv_hmap_count(&p->coalesce) == 0)
        return NULL;
    unsigned char key[16];
    coalesce_key(p, f->share_key, st, key);
    lv_hmap_node_t *n = lv_hmap_find(&p->coalesce, key, sizeof(key));
    if (!n)
        return NULL;
    lv_job_t *lead = LV_CONTAINER_OF(n, lv_job_t, coalesce_node);
    return same_request(&lead->settings, st) ? lead : NULL;
}

/* A job just dispatched for a shared picture takes followers from now on. */
static void coalesce_open(lv_pipeline_t *p, lv_job_t *job)
{
    if (!job->frame->share_key)
        return;
    coalesce_key(p, job->frame->share_key, &job->settings, job->coalesce_key);
    if (lv_hmap_insert(&p->coalesce, &job->coalesce_node, job->coalesce_key, sizeof(job->coalesce_key)) == 0)
        job->in_table = true;
}

/* No more followers: the answer is over, back in line, or too long to repeat to a late one. */
static void coalesce_close(lv_pipeline_t *p, lv_job_t *job)
{
    if (!job->in_table)
        return;
    lv_hmap_remove(&p->coalesce, &job->coalesce_node);
    job->in_table = false;
    lv_buf_reset(&job->so_far);
}

/* A follower lets go of its lead: its job is freed (its session has none), nothing is told. */
static void follower_free(lv_pipeline_t *p, lv_job_t *fj)
{
    (void)p;
    lv_queue_remove(&fj->follow_link);
    fj->lead->n_followers--;
    if (fj->session)
        fj->session->job = NULL;
    lv_buf_free(&fj->delta);
    lv_buf_free(&fj->so_far);
    lv_frame_unref(fj->frame);
    free(fj);
}

/* A follower stops following; its frame goes back in line (unless a newer one waits, or the
 * session stopped), as a lead's does when its job is taken back. */
static void follower_requeue(lv_pipeline_t *p, lv_job_t *fj)
{
    lv_session_t *s = fj->session;
    if (!s->pending && s->rec.started) {
        lv_session_mailbox_put(s, fj->frame);
        fj->frame = NULL;
    }
    follower_free(p, fj);
    lv_pipeline_ready(p, s);
    kick(p);
}

/* A shared request's answer, kept a little after it ended for the picture's latecomers: a camera
 * hands one sample to every credit for up to 2 s, and credits are paced by the principals' shares,
 * so watchers may ask about a sample after its request has ended. */
typedef struct {
    lv_hmap_node_t node;        /* in p->answers */
    lv_queue_t link;            /* in p->answers_by_age */
    unsigned char key[16];      /* as the coalesce table's */
    uint64_t done_ms;
    lv_settings_t settings;     /* the request's: compared on a hit */
    char backend_id[LV_BACKEND_ID_MAX + 1];
    char model[LV_MODEL_MAX + 1];
    int tokens;
    uint64_t ttft_us;
    bool streamed;
    size_t text_len;
    char text[];                /* NUL-terminated */
} kept_answer_t;

static void answer_drop(lv_pipeline_t *p, kept_answer_t *a)
{
    lv_hmap_remove(&p->answers, &a->node);
    lv_queue_remove(&a->link);
    p->n_answers--;
    free(a);
}

static void answers_expire(lv_pipeline_t *p, uint64_t now_ms)
{
    while (!lv_queue_empty(&p->answers_by_age)) {
        kept_answer_t *a = LV_CONTAINER_OF(lv_queue_head(&p->answers_by_age), kept_answer_t, link);
        if (now_ms != UINT64_MAX && now_ms - a->done_ms < LV_PIPELINE_ANSWER_KEEP_MS)
            break;
        answer_drop(p, a);
    }
}

/* Keep a shared request's answer (not a debug one: its payloads are not kept). */
static void answer_keep(lv_pipeline_t *p, const lv_job_t *job, const lv_dispatch_result_t *r)
{
    if (!job->frame || !job->frame->share_key || job->settings.debug || r->text_len > JOB_TEXT_MAX)
        return;
    if (p->n_answers >= LV_PIPELINE_ANSWERS_KEPT)
        answer_drop(p, LV_CONTAINER_OF(lv_queue_head(&p->answers_by_age), kept_answer_t, link));
    kept_answer_t *a = malloc(sizeof(*a) + r->text_len + 1);
    if (!a)
        return;
    coalesce_key(p, job->frame->share_key, &job->settings, a->key);
    lv_hmap_node_t *old = lv_hmap_find(&p->answers, a->key, sizeof(a->key));
    if (old) /* a newer answer to the same request replaces it */
        answer_drop(p, LV_CONTAINER_OF(old, kept_answer_t, node));
    a->done_ms = now_us(p) / 1000u;
    a->settings = job->settings;
    snprintf(a->backend_id, sizeof(a->backend_id), "%s", job->backend_id);
    snprintf(a->model, sizeof(a->model), "%s", job->model);
    a->tokens = r->tokens;
    a->ttft_us = r->ttft_us;
    a->streamed = r->streamed;
    a->text_len = r->text_len;
    memcpy(a->text, r->text, r->text_len);
    a->text[r->text_len] = '\0';
    if (lv_hmap_insert(&p->answers, &a->node, a->key, sizeof(a->key)) != 0) {
        free(a);
        return;
    }
    lv_queue_insert_tail(&p->answers_by_age, &a->link);
    p->n_answers++;
}

/* A kept answer to st's question about f's picture, still fresh, or NULL. */
static const kept_answer_t *answer_find(const lv_pipeline_t *p, const lv_frame_t *f, const lv_settings_t *st)
{
    if (!f || !f->share_key || p->n_answers == 0)
        return NULL;
    unsigned char key[16];
    coalesce_key(p, f->share_key, st, key);
    lv_hmap_node_t *n = lv_hmap_find(&p->answers, key, sizeof(key));
    if (!n)
        return NULL;
    const kept_answer_t *a = LV_CONTAINER_OF(n, kept_answer_t, node);
    if (now_us(p) / 1000u - a->done_ms >= LV_PIPELINE_ANSWER_KEEP_MS || !same_request(&a->settings, st))
        return NULL;
    return a;
}

static void job_free(lv_pipeline_t *p, lv_job_t *job)
{
    coalesce_close(p, job);
    while (!lv_queue_empty(&job->followers)) /* nothing more reaches them (shutdown) */
        follower_free(p, LV_CONTAINER_OF(lv_queue_head(&job->followers), lv_job_t, follow_link));
    if (job->user[0]) /* its slot is free: the principal's share counts one job less */
        lv_drr_job_done(p->drr, job->user, now_us(p), job->linger_us);
    if (job->session)
        job->session->job = NULL;
    lv_queue_remove(&job->link);
    p->n_jobs--;
    lv_buf_free(&job->delta);
    lv_buf_free(&job->so_far);
    lv_frame_unref(job->frame);
    free(job);
}

/* Stop a job's work; nothing of it reaches the viewers any more. */
static void job_abort(lv_pipeline_t *p, lv_job_t *job)
{
    p->dispatch->ops->cancel(p->dispatch, job);
    job_free(p, job);
}

/* The lead's session lets go of a job others follow: the oldest follower takes it over, and the
 * request goes on untouched. The dispatcher holds the job's address, so the follower's view of the
 * answer (its answer id, its numbers, the text it has not been sent yet) moves into the job and its
 * own job struct goes; the frame, the request settings (equal by construction), the backend, the
 * dispatch time and the principal that pays for the slot (job->user) stay. The old lead's session
 * no longer has a job and hears nothing more of this one. */
static void job_hand_over(lv_pipeline_t *p, lv_job_t *job)
{
    lv_job_t *heir = LV_CONTAINER_OF(lv_queue_head(&job->followers), lv_job_t, follow_link);
    if (job->session)
        job->session->job = NULL;
    job->answer_id = heir->answer_id;
    job->settings = heir->settings;
    job->queue_wait_ms = heir->queue_wait_ms;
    job->frame_age_ms = heir->frame_age_ms;
    job->session = heir->session;
    job->frame_recv_us = heir->frame_recv_us;
    lv_buf_t unsent = job->delta; /* the old lead's unsent text goes with the heir's struct */
    job->delta = heir->delta;
    heir->delta = unsent;
    job->delta_since_ms = heir->delta_since_ms;
    job->first_delta_sent = heir->first_delta_sent;
    job->settings_stale = heir->settings_stale;
    job->session->job = job;
    heir->session = NULL;
    follower_free(p, heir);
    LV_DEBUG("session %.8s takes over answer %llu (%zu more follow it)", job->session->rec.id,
             (unsigned long long)job->answer_id, job->n_followers);
}

/* The job ends without an answer and its frame goes back in line (unless a newer one already
 * waits, or the session stopped): the session is queued again at once. Its followers' frames go
 * back in line too: they meet again at their turns (one leads, the others follow). */
static void job_requeue(lv_pipeline_t *p, lv_job_t *job)
{
    lv_session_t *s = job->session;
    coalesce_close(p, job);
    FOR_EACH_FOLLOWER(job, fj, follower_requeue(p, fj));
    if (!s->pending && s->rec.started) {
        lv_session_mailbox_put(s, job->frame);
        job->frame = NULL;
    }
    job_free(p, job);
    lv_pipeline_ready(p, s);
    kick(p);
}

static void flush_delta(lv_pipeline_t *p, lv_job_t *job)
{
    lv_session_t *s = job->session;
    if (job->delta.len && s)
        FOR_EACH_VIEWER(s, v,
                        if (v->ops && v->ops->delta) v->ops->delta(v, s, job->answer_id, job->delta.data, job->delta.len));
    lv_buf_reset(&job->delta);
    job->delta_since_ms = 0;
}

static void flush_due(lv_pipeline_t *p, lv_job_t *job, uint64_t now_ms)
{
    if (job->delta_since_ms && now_ms - job->delta_since_ms >= LV_PIPELINE_DELTA_COALESCE_MS)
        flush_delta(p, job);
}

static void flush_due_deltas(lv_pipeline_t *p, uint64_t now_ms)
{
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &p->jobs)
    {
        lv_job_t *job = LV_CONTAINER_OF(n, lv_job_t, link);
        flush_due(p, job, now_ms);
        FOR_EACH_FOLLOWER(job, fj, flush_due(p, fj, now_ms));
    }
}

/* More text for one session's view of an answer (a lead's or a follower's): the first piece goes
 * out at once (time to first token is what people notice), later ones are coalesced. Returns true
 * for the first piece. */
static bool view_delta(lv_pipeline_t *p, lv_job_t *job, const char *text, size_t len)
{
    if (lv_buf_append(&job->delta, text, len) != 0) {
        flush_delta(p, job); /* over the cap: send what we have, then this piece alone */
        lv_buf_append(&job->delta, text, len);
    }
    if (!job->first_delta_sent) {
        job->first_delta_sent = true;
        flush_delta(p, job);
        return true;
    }
    if (!job->delta_since_ms)
        job->delta_since_ms = now_us(p) / 1000u;
    return false;
}

static void view_start(lv_job_t *job)
{
    lv_session_t *s = job->session;
    FOR_EACH_VIEWER(s, v, if (v->ops && v->ops->answer_start) v->ops->answer_start(v, s, job));
}

static void ev_started(lv_dispatch_t *d, lv_job_t *job)
{
    job->started = true;
    if (job->session)
        view_start(job);
    FOR_EACH_FOLLOWER(job, fj, {
        /* they joined before the request went out: their answer starts now */
        fj->started = true;
        snprintf(fj->backend_id, sizeof(fj->backend_id), "%s", job->backend_id);
        snprintf(fj->model, sizeof(fj->model), "%s", job->model);
        view_start(fj);
    });
}

static void ev_delta(lv_dispatch_t *d, lv_job_t *job, const char *text, size_t len)
{
    lv_pipeline_t *p = d->events_ud;
    if (!job->session)
        return;
    if (job->in_table && lv_buf_append(&job->so_far, text, len) != 0)
        coalesce_close(p, job); /* past the cap a late follower could not be told the text so far */
    bool first = view_delta(p, job, text, len);
    FOR_EACH_FOLLOWER(job, fj, view_delta(p, fj, text, len));
    /* a request past its first token may be the evidence that lets a full window grow */
    if (first && (lv_drr_queued(p->drr) || p->demand) && d->ops->grow && d->ops->grow(d, job) > 0)
        kick(p);
}

/* One session's end of the answer (a lead's view or a follower's): the rest of its deltas, then
 * its metrics, history and the answer, or the error. */
static void view_done(lv_pipeline_t *p, lv_job_t *job, const lv_dispatch_result_t *r)
{
    lv_session_t *s = job->session;
    flush_delta(p, job); /* every delta precedes the final answer */
    uint64_t t0 = now_us(p);
    if (r->rc == 0) {
        double latency_ms = (double)(t0 - job->frame_recv_us) / 1000.0;
        s->last_latency_ms = latency_ms;
        s->rec.total_inferences++;
        s->rec.avg_latency_ms += (latency_ms - s->rec.avg_latency_ms) / (double)s->rec.total_inferences;
        s->job = NULL; /* the answer's metrics say it is no longer processing */
        lv_session_history_add(s, job->answer_id, r->text, r->text_len, latency_ms, lv_wall_ms());
        lv_session_save(p->reg, s);
        FOR_EACH_VIEWER(s, v, if (v->ops && v->ops->answer) v->ops->answer(v, s, job, r, latency_ms));
        if (p->hooks.answered)
            p->hooks.answered(p->hooks.ud, job, r, latency_ms, job->gateway_us + (now_us(p) - t0));
    } else {
        const char *code = r->error_code ? r->error_code : "backend_error";
        char msg[512];
        snprintf(msg, sizeof(msg), "%s: %s", job->backend_id, r->error_message ? r->error_message : lv_strerror(r->rc));
        lv_pipeline_error(p, s, code, msg, job->answer_id);
        if (p->hooks.failed)
            p->hooks.failed(p->hooks.ud, code);
    }
}

static void ev_done(lv_dispatch_t *d, lv_job_t *job, const lv_dispatch_result_t *r)
{
    lv_pipeline_t *p = d->events_ud;
    lv_session_t *s = job->session;
    job->impl = NULL;
    if (!s) {
        job_free(p, job);
        return;
    }
    if (r->requeue) {
        job_requeue(p, job);
        return;
    }
    coalesce_close(p, job); /* nobody joins an answer that is over */
    if (r->rc != 0)
        LV_INFO("session %.8s%s: %s %s: %s", s->rec.id, job->n_followers ? " and its followers" : "",
                r->error_code ? r->error_code : "backend_error", job->backend_id,
                r->error_message ? r->error_message : lv_strerror(r->rc));
    view_done(p, job, r);
    if (r->rc == 0)
        answer_keep(p, job, r);
    /* each follower hears the same end once, under its own answer id, then may go again */
    FOR_EACH_FOLLOWER(job, fj, {
        lv_session_t *fs = fj->session;
        snprintf(fj->backend_id, sizeof(fj->backend_id), "%s", job->backend_id); /* a retry moves it */
        snprintf(fj->model, sizeof(fj->model), "%s", job->model);
        view_done(p, fj, r);
        follower_free(p, fj);
        lv_pipeline_ready(p, fs);
    });
    job_free(p, job);
    /* the slot this job held is free, and this session may have a frame waiting */
    lv_pipeline_ready(p, s);
    kick(p);
}

static const lv_dispatch_events_t dispatch_events = {ev_started, ev_delta, ev_done};

/* A job from the spare (a busy backend turns it back) or a new one; NULL without memory. */
static lv_job_t *job_get(lv_pipeline_t *p)
{
    lv_job_t *job = p->spare;
    if (job) {
        p->spare = NULL;
        return job;
    }
    job = malloc(sizeof(*job));
    if (job) {
        lv_buf_init(&job->delta, JOB_TEXT_MAX);
        lv_buf_init(&job->so_far, JOB_TEXT_MAX);
    }
    return job;
}

static void job_put_spare(lv_pipeline_t *p, lv_job_t *job)
{
    lv_frame_unref(job->frame);
    job->frame = NULL;
    if (p->spare) {
        lv_buf_free(&job->delta);
        lv_buf_free(&job->so_far);
        free(job);
        return;
    }
    p->spare = job;
}

/* A fresh job for s's waiting frame (left in the mailbox): everything zero but its buffers (a
 * spare's are kept, capped and empty) and the view of s's answer. */
static void job_setup(lv_job_t *job, lv_session_t *s, uint64_t t0)
{
    lv_buf_t delta = job->delta, so_far = job->so_far;
    memset(job, 0, sizeof(*job));
    job->delta = delta;
    job->so_far = so_far;
    lv_buf_reset(&job->delta);
    lv_buf_reset(&job->so_far);
    lv_queue_init(&job->link);
    lv_queue_init(&job->followers);
    lv_queue_init(&job->follow_link);
    lv_frame_t *f = s->pending;
    job->frame = lv_frame_ref(f);
    job->settings = s->rec.settings;
    job->answer_id = s->answer_seq + 1;
    job->session = s;
    job->frame_recv_us = f->recv_us;
    job->dispatch_us = t0;
    job->queue_wait_ms = (double)(t0 - f->recv_us) / 1000.0;
    job->frame_age_ms = job->queue_wait_ms + f->capture_age_ms;
}

/* s's waiting frame asks what `lead` is asking about the same picture: s follows it instead of
 * making a request (the frame leaves the mailbox, s has a job that no dispatcher sees). It hears
 * answer_start now if the request went out already, with the text so far as its first delta,
 * else when it goes out. Its principal pays nothing: no turn, no slot. false without memory (s
 * then makes its own request). The caller has taken s out of the fair queue. */
static bool follow(lv_pipeline_t *p, lv_session_t *s, lv_job_t *lead)
{
    uint64_t t0 = now_us(p);
    lv_job_t *fj = job_get(p);
    if (!fj)
        return false;
    job_setup(fj, s, t0);
    fj->lead = lead;
    fj->started = lead->started;
    snprintf(fj->backend_id, sizeof(fj->backend_id), "%s", lead->backend_id);
    snprintf(fj->model, sizeof(fj->model), "%s", lead->model);
    lv_queue_insert_tail(&lead->followers, &fj->follow_link);
    lead->n_followers++;
    s->answer_seq = fj->answer_id;
    s->job = fj;
    lv_frame_unref(lv_session_mailbox_take(s)); /* the follower holds its own reference */
    if (p->hooks.coalesced)
        p->hooks.coalesced(p->hooks.ud, fj);
    if (lead->started) {
        view_start(fj);
        if (lead->so_far.len)
            view_delta(p, fj, lead->so_far.data, lead->so_far.len);
    }
    fj->gateway_us = now_us(p) - t0;
    return true;
}

/* s's waiting frame asks what a request that just ended asked about the same picture: s hears that
 * answer now (answer_start, the text, the answer; its own answer id, metrics and history) and
 * nothing is sent. false without memory. The caller has taken s out of the fair queue. */
static bool replay(lv_pipeline_t *p, lv_session_t *s, const kept_answer_t *a)
{
    uint64_t t0 = now_us(p);
    lv_job_t *job = job_get(p);
    if (!job)
        return false;
    job_setup(job, s, t0);
    job->started = true;
    snprintf(job->backend_id, sizeof(job->backend_id), "%s", a->backend_id);
    snprintf(job->model, sizeof(job->model), "%s", a->model);
    s->answer_seq = job->answer_id;
    s->job = job; /* viewers see it processing until the answer */
    lv_frame_unref(lv_session_mailbox_take(s));
    if (p->hooks.coalesced)
        p->hooks.coalesced(p->hooks.ud, job);
    view_start(job);
    if (a->text_len)
        view_delta(p, job, a->text, a->text_len);
    lv_dispatch_result_t r = {.text = a->text, .text_len = a->text_len, .tokens = a->tokens, .ttft_us = a->ttft_us,
                              .streamed = a->streamed};
    job->gateway_us = now_us(p) - t0;
    view_done(p, job, &r);
    s->job = NULL;
    job_put_spare(p, job);
    return true;
}

/* The same question about the same picture is being asked (s follows it) or was just answered (s
 * hears that answer). false: s needs a request of its own. */
static bool answered_by_another(lv_pipeline_t *p, lv_session_t *s)
{
    lv_job_t *lead = coalesce_find(p, s->pending, &s->rec.settings);
    if (lead)
        return follow(p, s, lead);
    const kept_answer_t *a = answer_find(p, s->pending, &s->rec.settings);
    return a && replay(p, s, a);
}

/* The frame leaves the mailbox and the session the queue without a job. */
static lv_drr_verdict_t drop_turn(lv_pipeline_t *p, lv_session_t *s)
{
    left_queue(p, s);
    lv_frame_unref(lv_session_mailbox_take(s));
    return LV_DRR_DROP;
}

static lv_drr_verdict_t try_dispatch(lv_drr_node_t *node, void *ud)
{
    lv_pipeline_t *p = ud;
    lv_session_t *s = LV_CONTAINER_OF(node, lv_session_t, drr);
    if (s->job || !s->pending) {
        left_queue(p, s); /* queued again when the job ends */
        return LV_DRR_DROP;
    }
    uint64_t t0 = now_us(p);
    if (lv_pipeline_detached_too_long(p, s, t0 / 1000u))
        return drop_turn(p, s);
    /* the same question about the same picture is being asked already: listen in, at no cost to
     * s's principal (the node leaves the queue without using its turn) */
    if (answered_by_another(p, s)) {
        left_queue(p, s);
        return LV_DRR_DROP;
    }
    lv_job_t *job = job_get(p);
    if (!job)
        return drop_turn(p, s);
    job_setup(job, s, t0);
    char why[1024];
    why[0] = '\0';
    s->job = job; /* for viewers that look at the session from inside `started` */
    int rc = p->dispatch->ops->submit(p->dispatch, job, why, sizeof(why));
    if (rc != 0) {
        s->job = NULL;
        job_put_spare(p, job);
        if (rc == LV_EAGAIN)
            return LV_DRR_BUSY;
        if (rc == LV_ENOTFOUND) {
            lv_pipeline_error(p, s, "no_backend", why, 0);
            if (p->hooks.dropped)
                p->hooks.dropped(p->hooks.ud, "no_backend");
        } else {
            lv_pipeline_error(p, s, "backend_error", "could not start the backend request", 0);
        }
        return drop_turn(p, s);
    }
    s->answer_seq = job->answer_id;
    lv_frame_unref(lv_session_mailbox_take(s)); /* the job holds its own reference */
    lv_queue_insert_tail(&p->jobs, &job->link);
    p->n_jobs++;
    left_queue(p, s);
    coalesce_open(p, job);
    if (p->hooks.dispatched)
        p->hooks.dispatched(p->hooks.ud, job->queue_wait_ms, job->frame_age_ms);
    /* the job counts against its principal's share of the slots in flight until it ends; the
     * principal keeps competing a little after that, for about one frame interval: long enough for
     * the source's next frame to come back (so one between two frames keeps its slot against one
     * who borrows), never long when the interval is. Followers add nothing: the lead's principal
     * pays for the slot, even after a hand-over, until the request ends */
    snprintf(job->user, sizeof(job->user), "%s", s->rec.principal);
    uint64_t interval_us = (uint64_t)s->rec.settings.interval_ms * 1000u;
    job->linger_us = LV_MIN(interval_us + 500000u, (uint64_t)5000000u);
    job->gateway_us += now_us(p) - t0;
    return LV_DRR_DISPATCHED;
}

static void on_stale(lv_drr_node_t *node, void *ud)
{
    lv_pipeline_t *p = ud;
    lv_pipeline_drop_stale(p, LV_CONTAINER_OF(node, lv_session_t, drr), now_us(p));
}

/* Cancel the answer in progress, tell the viewers (`answer_cancelled` with the reason) and put
 * the frame back in line (unless a newer one waits): the session's next answer follows as usual.
 * Only for a job nobody follows. */
static void job_take_back(lv_pipeline_t *p, lv_job_t *job, const char *reason)
{
    lv_session_t *s = job->session;
    p->dispatch->ops->cancel(p->dispatch, job);
    lv_buf_reset(&job->delta); /* unsent pieces of an answer nobody wants */
    job->delta_since_ms = 0;
    LV_DEBUG("session %.8s: answer %llu cancelled (%s), the frame goes back in line", s->rec.id,
             (unsigned long long)job->answer_id, reason);
    lv_pipeline_answer_cancelled(p, s, job->answer_id, reason);
    if (p->hooks.cancelled)
        p->hooks.cancelled(p->hooks.ud, reason);
    job_requeue(p, job);
}

/* The lead's session wants another answer (its settings changed) while others follow the request:
 * to it this is job_take_back (answer_cancelled, its frame waits again and is asked anew), but the
 * request goes on for the followers, the oldest of which takes it over: nothing is cancelled at
 * the backend. */
static void lead_steps_back(lv_pipeline_t *p, lv_job_t *job, const char *reason)
{
    lv_session_t *s = job->session;
    lv_buf_reset(&job->delta);
    job->delta_since_ms = 0;
    lv_pipeline_answer_cancelled(p, s, job->answer_id, reason);
    if (!s->pending && s->rec.started)
        lv_session_mailbox_put(s, lv_frame_ref(job->frame));
    job_hand_over(p, job);
    lv_pipeline_ready(p, s);
    kick(p);
}

/* A principal below its share waits and no slot is free: principals over their share hold them
 * (they borrowed idle slots while nobody else waited). Take back the oldest request of such a
 * principal that has produced nothing for LV_PIPELINE_PREEMPT_FLOOR_FACTOR x its backend's
 * no-queue time to first token (at least LV_PIPELINE_PREEMPT_MIN_MS): it is hung or queued inside
 * the backend, so little is lost, and its frame waits behind its principal's share. Only a slot
 * the waiting session could use; never a request that is streaming (those end, and growth on
 * demand makes room meanwhile), nor one other sessions follow (it answers several). One per call. */
static bool preempt_for_starved(lv_pipeline_t *p)
{
    lv_drr_node_t *node = lv_drr_starved(p->drr);
    if (!node)
        return false;
    const lv_session_t *want = LV_CONTAINER_OF(node, lv_session_t, drr);
    lv_dispatch_t *d = p->dispatch;
    uint64_t now = now_us(p);
    lv_job_t *victim = NULL;
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &p->jobs)
    {
        lv_job_t *job = LV_CONTAINER_OF(n, lv_job_t, link);
        if (!job->session || !job->started || job->first_delta_sent || job->n_followers)
            continue;
        if (victim && job->dispatch_us >= victim->dispatch_us)
            continue;
        if (!d->ops->could_serve || !d->ops->could_serve(d, job, &want->rec.settings))
            continue;
        uint64_t floor_us = d->ops->ttft_floor_us ? d->ops->ttft_floor_us(d, job) : 0;
        uint64_t patience_us = LV_MAX((uint64_t)LV_PIPELINE_PREEMPT_FLOOR_FACTOR * floor_us,
                                      (uint64_t)LV_PIPELINE_PREEMPT_MIN_MS * 1000u);
        if (now - job->dispatch_us < patience_us || !lv_drr_over_share(p->drr, job->user))
            continue;
        victim = job;
    }
    if (!victim)
        return false;
    LV_INFO("session %.8s: request without a first token after %llu ms taken back: principal %s holds more than "
            "its share while another waits",
            victim->session->rec.id, (unsigned long long)((now - victim->dispatch_us) / 1000), victim->user);
    job_take_back(p, victim, "preempted");
    return true;
}

/* Followers that let go: one detached for detached_cancel_ms stops following (its waiting frame
 * goes, as a lead's would), one whose request settings changed hears answer_cancelled and its
 * frame waits again for an answer to its new question. Neither touches the request. */
static void review_followers(lv_pipeline_t *p, lv_job_t *job, uint64_t now_ms)
{
    FOR_EACH_FOLLOWER(job, fj, {
        lv_session_t *fs = fj->session;
        if (lv_pipeline_detached_too_long(p, fs, now_ms)) {
            lv_pipeline_unready(p, fs);
            lv_frame_unref(lv_session_mailbox_take(fs));
            follower_free(p, fj);
        } else if (fj->settings_stale) {
            lv_pipeline_answer_cancelled(p, fs, fj->answer_id, "settings_changed");
            follower_requeue(p, fj);
        }
    });
}

/* Jobs nobody waits for any more: the session has had no viewer and no source for
 * detached_cancel_ms (its waiting frame goes too), or its request settings changed (taken back once
 * LV_PIPELINE_SUPERSEDE_MIN_MS after it started). A job not yet started (its frame is being
 * shaped) is looked at once it is. A job others follow is not cancelled for its lead's session:
 * it is handed over to a follower. */
static void review_jobs(lv_pipeline_t *p, uint64_t now_ms)
{
    lv_queue_t *n, *next;
    uint64_t now = now_us(p);
    for (n = p->jobs.next; n != &p->jobs; n = next) {
        next = n->next; /* no path frees another job */
        lv_job_t *job = LV_CONTAINER_OF(n, lv_job_t, link);
        lv_session_t *s = job->session;
        if (job->n_followers)
            review_followers(p, job, now_ms);
        if (!s || !job->started)
            continue;
        if (lv_pipeline_detached_too_long(p, s, now_ms)) {
            lv_pipeline_unready(p, s);
            lv_frame_unref(lv_session_mailbox_take(s));
            if (job->n_followers) {
                LV_INFO("session %.8s: nobody attached for %d ms; its request goes on for the %zu sessions following it",
                        s->rec.id, p->detached_cancel_ms, job->n_followers);
                job_hand_over(p, job);
                continue;
            }
            LV_INFO("session %.8s: nobody attached for %d ms, its backend request is cancelled", s->rec.id,
                    p->detached_cancel_ms);
            if (p->hooks.cancelled)
                p->hooks.cancelled(p->hooks.ud, "detached");
            job_abort(p, job);
        } else if (job->settings_stale && now - job->dispatch_us >= (uint64_t)LV_PIPELINE_SUPERSEDE_MIN_MS * 1000u) {
            if (job->n_followers)
                lead_steps_back(p, job, "settings_changed");
            else
                job_take_back(p, job, "settings_changed");
        }
    }
    if (preempt_for_starved(p))
        kick(p);
    if (p->dispatch->ops->reopened && p->dispatch->ops->reopened(p->dispatch) > 0 && lv_drr_queued(p->drr))
        kick(p);
    /* a lingering principal's time is up: those held back for it may go now */
    uint64_t linger_end = lv_drr_linger_next_us(p->drr);
    if (linger_end && linger_end <= now && lv_drr_queued(p->drr))
        kick(p);
}

size_t lv_pipeline_run(lv_pipeline_t *p)
{
    lv_dispatch_t *d = p->dispatch;
    lv_drr_set_capacity(p->drr, d->ops->capacity(d));
    size_t n = lv_drr_run(p->drr, LV_PIPELINE_DISPATCH_PER_RUN, now_us(p), try_dispatch, on_stale, p);
    /* frames still wait: a full backend that shows free room grows its window (one request per
     * first token), and the next run may use it */
    if ((lv_drr_queued(p->drr) || p->demand) && d->ops->grow && d->ops->grow(d, NULL) > 0)
        kick(p);
    else if (preempt_for_starved(p))
        kick(p);
    /* bounded work per run: if a full batch went out, come back for the rest */
    if (n == LV_PIPELINE_DISPATCH_PER_RUN)
        kick(p);
    return n;
}

bool lv_pipeline_put_frame(lv_pipeline_t *p, lv_session_t *s, lv_frame_t *f)
{
    bool replaced = lv_session_mailbox_put(s, f) != 0;
    if (s->job)
        return replaced; /* it waits in the mailbox and is queued when the job ends */
    /* a job asks (or just asked) the same about this picture: follow it (or hear its answer) now,
     * no turn needed */
    if (s->rec.started && s->pending->share_key && !lv_pipeline_detached_too_long(p, s, now_us(p) / 1000u)) {
        lv_job_t *lead = coalesce_find(p, s->pending, &s->rec.settings);
        const kept_answer_t *a = lead ? NULL : answer_find(p, s->pending, &s->rec.settings);
        if (lead || a) {
            lv_pipeline_unready(p, s); /* an older frame of s was in line: this one needs no turn */
            if (lead ? follow(p, s, lead) : replay(p, s, a))
                return replaced;
        }
    }
    lv_pipeline_ready(p, s);
    kick(p);
    return replaced;
}

int lv_pipeline_source_frame(lv_pipeline_t *p, lv_session_t *s, uint32_t credit_id, lv_frame_t *f)
{
    if (!credit_id || s->credit_outstanding != credit_id)
        return LV_ENOTFOUND;
    lv_pipeline_credit_clear(p, s);
    if (!s->rec.started)
        return LV_ENOTFOUND;
    s->frames_received++;
    lv_pipeline_put_frame(p, s, lv_frame_ref(f));
    return 0;
}

void lv_pipeline_settings_changed(lv_pipeline_t *p, lv_session_t *s, const lv_settings_t *next)
{
    (void)p;
    if (lv_pipeline_supersedes(s, next))
        s->job->settings_stale = true; /* a lead's or a follower's: the review acts on it */
}

void lv_pipeline_release(lv_pipeline_t *p, lv_session_t *s)
{
    lv_pipeline_unready(p, s);
    lv_pipeline_credit_clear(p, s);
    lv_job_t *job = s->job;
    if (!job)
        return;
    if (job->lead)
        follower_free(p, job); /* it just stops hearing the answer */
    else if (job->n_followers)
        job_hand_over(p, job); /* others still want it: no cancel at the backend */
    else
        job_abort(p, job);
}

void lv_pipeline_shutdown(lv_pipeline_t *p)
{
    while (!lv_queue_empty(&p->jobs))
        job_abort(p, LV_CONTAINER_OF(lv_queue_head(&p->jobs), lv_job_t, link));
}
