/* lv_pipeline.c - the frame pipeline's scheduling core (credits and the fair queue's entry so far;
 * lv_pipeline.h). */
#include "lv_pipeline.h"

#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "lv_common.h"

/* One principal with something waiting. */
typedef struct {
    lv_hmap_node_t node;
    size_t count;
    char key[64];
} waiting_t;

int lv_pipeline_init(lv_pipeline_t *p, lv_registry_t *reg, lv_drr_t *drr, const lv_pipeline_hooks_t *hooks)
{
    if (lv_hmap_init(&p->waiting, 0) != 0)
        return LV_EIO;
    p->reg = reg;
    p->drr = drr;
    p->hooks = *hooks;
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

void lv_pipeline_left_queue(lv_pipeline_t *p, const lv_session_t *s) { principal_add(p, s->rec.principal, -1); }

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
    size_t free_slots = p->hooks.free_slots(p->hooks.ud);
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
size_t lv_pipeline_tick(lv_pipeline_t *p, uint64_t now)
{
    size_t capacity = p->hooks.capacity(p->hooks.ud);
    size_t waiting = lv_drr_queued(p->drr) + p->credits_outstanding;
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
        if (waiting >= capacity && lv_pipeline_principal_waiting(p, s->rec.principal) > 0)
            continue; /* it stays due and is asked as soon as the queue drains */
        if (p->hooks.credit_allowed && !p->hooks.credit_allowed(p->hooks.ud, s, now))
            continue; /* over its frame rate: asking would only earn it an error */
        s->credit_outstanding = ++s->credit_seq ? s->credit_seq : ++s->credit_seq;
        p->credits_outstanding++;
        waiting++;
        principal_add(p, s->rec.principal, +1);
        s->credit_sent_ms = now;
        s->next_credit_ms = now + (uint64_t)s->rec.settings.interval_ms;
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
