/* lv_coalesce.c - identical work done once: the key, running leads and their followers, kept
 * answers (lv_coalesce.h). */
#include "lv_coalesce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_log.h"

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

/* A shared request's answer, kept a little after it ended for the picture's latecomers: a camera
 * hands one sample to every credit for up to 2 s, and credits are paced by the principals' shares,
 * so watchers may ask about a sample after its request has ended. */
struct lv_coalesce_kept {
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
};

/* ---------- the key ---------- */

/* The settings a request is made of: what lv_pipeline_supersedes compares, plus how the frame may
 * be shaped and whether the exchange is recorded for the debug view. Sessions that agree on all of
 * them, about the same picture, would send the backend the very same request. */
static bool same_request(const lv_settings_t *a, const lv_settings_t *b)
{
    return strcmp(a->prompt, b->prompt) == 0 && strcmp(a->model, b->model) == 0 &&
           strcmp(a->backend, b->backend) == 0 && a->max_tokens == b->max_tokens &&
           a->temperature == b->temperature && a->frame_max_side == b->frame_max_side &&
           a->jpeg_quality == b->jpeg_quality && a->debug == b->debug &&
           strcmp(a->allow_backends, b->allow_backends) == 0; /* a tenant's backends only */
}

/* The tables' key: the picture's share_key, then the coalesce table's keyed hash of the request
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

/* ---------- the tables ---------- */

int lv_coalesce_init(lv_pipeline_t *p)
{
    /* lv_hmap_init zeroes the table before anything can fail, so freeing both is always safe */
    if (lv_hmap_init(&p->coalesce, 0) != 0 || /* bounded by the jobs in flight */
        lv_hmap_init(&p->answers, LV_PIPELINE_ANSWERS_KEPT) != 0) {
        lv_hmap_free(&p->coalesce);
        return LV_EIO;
    }
    lv_queue_init(&p->answers_by_age);
    p->n_answers = 0;
    return 0;
}

void lv_coalesce_free(lv_pipeline_t *p)
{
    lv_hmap_free(&p->coalesce); /* empty: every job was freed at shutdown */
    lv_coalesce_expire(p, UINT64_MAX);
    lv_hmap_free(&p->answers);
}

/* The running job that asks st's question about f's picture and takes followers, or NULL. */
static lv_job_t *lead_find(const lv_pipeline_t *p, const lv_frame_t *f, const lv_settings_t *st)
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

void lv_coalesce_open(lv_pipeline_t *p, lv_job_t *lead)
{
    if (!lead->frame->share_key)
        return;
    coalesce_key(p, lead->frame->share_key, &lead->settings, lead->coalesce_key);
    if (lv_hmap_insert(&p->coalesce, &lead->coalesce_node, lead->coalesce_key, sizeof(lead->coalesce_key)) == 0)
        lead->in_table = true;
}

/* No more followers: the answer is over, back in line, or too long to repeat to a late one. */
void lv_coalesce_close(lv_pipeline_t *p, lv_job_t *lead)
{
    if (!lead->in_table)
        return;
    lv_hmap_remove(&p->coalesce, &lead->coalesce_node);
    lead->in_table = false;
    lv_buf_reset(&lead->so_far);
}

static void answer_drop(lv_pipeline_t *p, lv_coalesce_kept_t *a)
{
    lv_hmap_remove(&p->answers, &a->node);
    lv_queue_remove(&a->link);
    p->n_answers--;
    free(a);
}

void lv_coalesce_expire(lv_pipeline_t *p, uint64_t now_ms)
{
    while (!lv_queue_empty(&p->answers_by_age)) {
        lv_coalesce_kept_t *a = LV_CONTAINER_OF(lv_queue_head(&p->answers_by_age), lv_coalesce_kept_t, link);
        if (now_ms != UINT64_MAX && now_ms - a->done_ms < LV_PIPELINE_ANSWER_KEEP_MS)
            break;
        answer_drop(p, a);
    }
}

/* Keep a shared request's answer (not a debug one: its payloads are not kept). */
static void answer_keep(lv_pipeline_t *p, const lv_job_t *job, const lv_dispatch_result_t *r)
{
    if (!job->frame || !job->frame->share_key || job->settings.debug || r->text_len > LV_PIPELINE_JOB_TEXT_MAX)
        return;
    if (p->n_answers >= LV_PIPELINE_ANSWERS_KEPT)
        answer_drop(p, LV_CONTAINER_OF(lv_queue_head(&p->answers_by_age), lv_coalesce_kept_t, link));
    lv_coalesce_kept_t *a = malloc(sizeof(*a) + r->text_len + 1);
    if (!a)
        return;
    coalesce_key(p, job->frame->share_key, &job->settings, a->key);
    lv_hmap_node_t *old = lv_hmap_find(&p->answers, a->key, sizeof(a->key));
    if (old) /* a newer answer to the same request replaces it */
        answer_drop(p, LV_CONTAINER_OF(old, lv_coalesce_kept_t, node));
    a->done_ms = lv_pipeline_now_us(p) / 1000u;
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
static const lv_coalesce_kept_t *answer_find(const lv_pipeline_t *p, const lv_frame_t *f, const lv_settings_t *st)
{
    if (!f || !f->share_key || p->n_answers == 0)
        return NULL;
    unsigned char key[16];
    coalesce_key(p, f->share_key, st, key);
    lv_hmap_node_t *n = lv_hmap_find(&p->answers, key, sizeof(key));
    if (!n)
        return NULL;
    const lv_coalesce_kept_t *a = LV_CONTAINER_OF(n, lv_coalesce_kept_t, node);
    if (lv_pipeline_now_us(p) / 1000u - a->done_ms >= LV_PIPELINE_ANSWER_KEEP_MS || !same_request(&a->settings, st))
        return NULL;
    return a;
}

bool lv_coalesce_find(const lv_pipeline_t *p, const lv_session_t *s, lv_coalesce_match_t *m)
{
    m->lead = lead_find(p, s->pending, &s->rec.settings);
    m->kept = m->lead ? NULL : answer_find(p, s->pending, &s->rec.settings);
    return m->lead || m->kept;
}

/* ---------- followers ---------- */

/* A follower lets go of its lead: its job is freed (its session has none), nothing is told. */
static void follower_free(lv_job_t *fj)
{
    lv_queue_remove(&fj->follow_link);
    fj->lead->n_followers--;
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
    follower_free(fj);
    lv_pipeline_ready(p, s);
    lv_pipeline_kick(p);
}

/* s's waiting frame asks what `lead` is asking about the same picture: s follows it instead of
 * making a request (the frame leaves the mailbox, s has a job that no dispatcher sees). It hears
 * answer_start now if the request went out already, with the text so far as its first delta,
 * else when it goes out. false without memory. */
static bool follow(lv_pipeline_t *p, lv_session_t *s, lv_job_t *lead)
{
    uint64_t t0 = lv_pipeline_now_us(p);
    lv_job_t *fj = lv_pipeline_job_new(p, s, t0);
    if (!fj)
        return false;
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
        lv_pipeline_view_start(fj);
        if (lead->so_far.len)
            lv_pipeline_view_delta(p, fj, lead->so_far.data, lead->so_far.len);
    }
    fj->gateway_us = lv_pipeline_now_us(p) - t0;
    return true;
}

/* s's waiting frame asks what a request that just ended asked about the same picture: s hears that
 * answer now (answer_start, the text, the answer; its own answer id, metrics and history) and
 * nothing is sent. false without memory. */
static bool replay(lv_pipeline_t *p, lv_session_t *s, const lv_coalesce_kept_t *a)
{
    uint64_t t0 = lv_pipeline_now_us(p);
    lv_job_t *job = lv_pipeline_job_new(p, s, t0);
    if (!job)
        return false;
    job->started = true;
    snprintf(job->backend_id, sizeof(job->backend_id), "%s", a->backend_id);
    snprintf(job->model, sizeof(job->model), "%s", a->model);
    s->answer_seq = job->answer_id;
    s->job = job; /* viewers see it processing until the answer */
    lv_frame_unref(lv_session_mailbox_take(s));
    if (p->hooks.coalesced)
        p->hooks.coalesced(p->hooks.ud, job);
    lv_pipeline_view_start(job);
    if (a->text_len)
        lv_pipeline_view_delta(p, job, a->text, a->text_len);
    lv_dispatch_result_t r = {.text = a->text, .text_len = a->text_len, .tokens = a->tokens, .ttft_us = a->ttft_us,
                              .streamed = a->streamed};
    job->gateway_us = lv_pipeline_now_us(p) - t0;
    lv_pipeline_view_done(p, job, &r);
    s->job = NULL;
    lv_pipeline_job_recycle(p, job);
    return true;
}

bool lv_coalesce_join(lv_pipeline_t *p, lv_session_t *s, const lv_coalesce_match_t *m)
{
    if (m->lead)
        return follow(p, s, m->lead);
    return m->kept && replay(p, s, m->kept);
}

/* ---------- the lead's events, fanned out ---------- */

void lv_coalesce_started(lv_pipeline_t *p, lv_job_t *lead)
{
    (void)p;
    FOR_EACH_FOLLOWER(lead, fj, {
        /* they joined before the request went out: their answer starts now */
        fj->started = true;
        snprintf(fj->backend_id, sizeof(fj->backend_id), "%s", lead->backend_id);
        snprintf(fj->model, sizeof(fj->model), "%s", lead->model);
        lv_pipeline_view_start(fj);
    });
}

void lv_coalesce_so_far(lv_pipeline_t *p, lv_job_t *lead, const char *text, size_t len)
{
    if (lead->in_table && lv_buf_append(&lead->so_far, text, len) != 0)
        lv_coalesce_close(p, lead); /* past the cap a late follower could not be told the text so far */
}

void lv_coalesce_delta(lv_pipeline_t *p, lv_job_t *lead, const char *text, size_t len)
{
    FOR_EACH_FOLLOWER(lead, fj, lv_pipeline_view_delta(p, fj, text, len));
}

void lv_coalesce_flush_due(lv_pipeline_t *p, lv_job_t *lead, uint64_t now_ms)
{
    FOR_EACH_FOLLOWER(lead, fj, lv_pipeline_view_flush_due(p, fj, now_ms));
}

void lv_coalesce_done(lv_pipeline_t *p, lv_job_t *lead, const lv_dispatch_result_t *r)
{
    if (r->rc == 0)
        answer_keep(p, lead, r);
    /* each follower hears the same end once, under its own answer id, then may go again */
    FOR_EACH_FOLLOWER(lead, fj, {
        lv_session_t *fs = fj->session;
        snprintf(fj->backend_id, sizeof(fj->backend_id), "%s", lead->backend_id); /* a retry moves it */
        snprintf(fj->model, sizeof(fj->model), "%s", lead->model);
        lv_pipeline_view_done(p, fj, r);
        follower_free(fj);
        lv_pipeline_ready(p, fs);
    });
}

void lv_coalesce_requeue(lv_pipeline_t *p, lv_job_t *lead)
{
    lv_coalesce_close(p, lead);
    FOR_EACH_FOLLOWER(lead, fj, follower_requeue(p, fj));
}

void lv_coalesce_forget(lv_pipeline_t *p, lv_job_t *lead)
{
    lv_coalesce_close(p, lead);
    while (!lv_queue_empty(&lead->followers)) /* nothing more reaches them (shutdown) */
        follower_free(LV_CONTAINER_OF(lv_queue_head(&lead->followers), lv_job_t, follow_link));
}

/* ---------- sessions that let go ---------- */

/* The lead's session lets go of a job others follow: the oldest follower takes it over, and the
 * request goes on untouched. The dispatcher holds the job's address, so the follower's view of the
 * answer (its answer id, its numbers, the text it has not been sent yet) moves into the job and its
 * own job struct goes; the frame, the request settings (equal by construction), the backend, the
 * dispatch time and the principal that pays for the slot (job->user) stay. The old lead's session
 * no longer has a job and hears nothing more of this one. */
static void hand_over(lv_job_t *job)
{
    lv_job_t *heir = LV_CONTAINER_OF(lv_queue_head(&job->followers), lv_job_t, follow_link);
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
    follower_free(heir); /* clears the heir's session's job: it is the lead from now on */
    job->session->job = job;
    LV_DEBUG("session %.8s takes over answer %llu (%zu more follow it)", job->session->rec.id,
             (unsigned long long)job->answer_id, job->n_followers);
}

bool lv_coalesce_let_go(lv_pipeline_t *p, lv_job_t *job)
{
    (void)p;
    if (job->lead)
        follower_free(job); /* it just stops hearing the answer */
    else if (job->n_followers)
        hand_over(job); /* others still want it: no cancel at the backend */
    else
        return false;
    return true;
}

/* To the lead's session this is a take-back (answer_cancelled, its frame waits again and is asked
 * anew), but the request goes on for the followers: nothing is cancelled at the backend. */
bool lv_coalesce_step_back(lv_pipeline_t *p, lv_job_t *lead, const char *reason)
{
    if (!lead->n_followers)
        return false;
    lv_session_t *s = lead->session;
    lv_buf_reset(&lead->delta);
    lead->delta_since_ms = 0;
    lv_pipeline_answer_cancelled(p, s, lead->answer_id, reason);
    if (!s->pending && s->rec.started)
        lv_session_mailbox_put(s, lv_frame_ref(lead->frame));
    hand_over(lead);
    lv_pipeline_ready(p, s);
    lv_pipeline_kick(p);
    return true;
}

void lv_coalesce_review(lv_pipeline_t *p, lv_job_t *lead, uint64_t now_ms)
{
    FOR_EACH_FOLLOWER(lead, fj, {
        lv_session_t *fs = fj->session;
        if (lv_pipeline_detached_too_long(p, fs, now_ms)) {
            lv_pipeline_unready(p, fs);
            lv_frame_unref(lv_session_mailbox_take(fs));
            follower_free(fj);
        } else if (fj->settings_stale) {
            lv_pipeline_answer_cancelled(p, fs, fj->answer_id, "settings_changed");
            follower_requeue(p, fj);
        }
    });
}
