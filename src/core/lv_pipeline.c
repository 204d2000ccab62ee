/* lv_pipeline.c - the frame pipeline: credits, the fair queue, jobs and answers (lv_pipeline.h). */
#include "lv_pipeline.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_coalesce.h"
#include "lv_common.h"
#include "lv_log.h"

/* One principal with something waiting. */
typedef struct {
    lv_hmap_node_t node;
    size_t count;
    char key[64];
} waiting_t;

static const lv_dispatch_events_t dispatch_events;

int lv_pipeline_init(lv_pipeline_t *p, lv_registry_t *reg, lv_drr_t *drr, lv_dispatch_t *dispatch,
                     const lv_pipeline_hooks_t *hooks)
{
    if (lv_hmap_init(&p->waiting, 0) != 0)
        return LV_EIO;
    if (lv_coalesce_init(p) != 0) {
        lv_hmap_free(&p->waiting);
        return LV_EIO;
    }
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
    p->delta_rate = 0;
    p->delta_ms = LV_PIPELINE_DELTA_COALESCE_MS;
    lv_queue_init(&p->credit_due);
    lv_queue_init(&p->credit_soon);
    p->credit_wheel_ms = 0;
    p->credit_visits = 0;
    for (size_t i = 0; i < LV_PIPELINE_WHEEL_SLOTS; i++)
        lv_queue_init(&p->credit_wheel[i]);
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
    lv_coalesce_free(p);
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

uint64_t lv_pipeline_now_us(const lv_pipeline_t *p)
{
    return p->hooks.now_us ? p->hooks.now_us(p->hooks.ud) : lv_now_us();
}

void lv_pipeline_kick(const lv_pipeline_t *p) { p->hooks.kick(p->hooks.ud); }

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
    /* the tenant first, then the principal within it (records from before tenants: "default") */
    const char *tenant = s->rec.tenant[0] ? s->rec.tenant : LV_DRR_TENANT_DEFAULT;
    if (lv_drr_enqueue_tenant(p->drr, &s->drr, tenant, s->rec.principal, s->pending->recv_us) != 0)
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

/* s's frame was too old to send (in our queue, or inside the dispatcher): counted, and its
 * viewers hear frame_dropped("stale", its age). */
static void report_stale(lv_pipeline_t *p, lv_session_t *s, double age_ms)
{
    s->frames_stale++;
    if (p->hooks.dropped)
        p->hooks.dropped(p->hooks.ud, "stale");
    FOR_EACH_VIEWER(s, v, if (v->ops && v->ops->frame_dropped) v->ops->frame_dropped(v, s, "stale", age_ms));
}

void lv_pipeline_drop_stale(lv_pipeline_t *p, lv_session_t *s, uint64_t now_us)
{
    principal_add(p, s->rec.principal, -1);
    lv_frame_t *f = lv_session_mailbox_take(s);
    if (!f)
        return;
    double age_ms = (double)(now_us - f->recv_us) / 1000.0 + f->capture_age_ms;
    lv_frame_unref(f);
    report_stale(p, s, age_ms);
}

/* ---------- the credit timetable ----------
 * A tick used to walk every started session to find the few whose credit was due: a cache miss
 * per session per tick, 2.7 % of the CPU at 1,000 sessions and linear in them. Now each started
 * session with a source is in exactly one place (its credit_link): the wheel slot of the time it
 * is next worth a look (its next_credit_ms, or later its unanswered credit's re-ask), the soon
 * list (due by the next tick), or the due list. The due list keeps, in started_order, the
 * sessions that were due and did not get a credit (a frame still waiting, capacity, the share rule,
 * the frame budget, no backend): every tick looks at those again, as the walk did. A session
 * without a source is in none (attaching one files it). Whatever makes a session due EARLIER
 * files it again: a start (the registry's just-started list), a credit answered
 * (lv_pipeline_credit_clear), a source attached, the host's lv_pipeline_credit_reschedule. A look
 * that finds a session not due yet (filed early, or its interval grew) files it later: costs a
 * look, nothing else. So the sessions the tick acts on, and the order it acts in, are the walk's. */

static uint64_t credit_retry_ms(const lv_session_t *s)
{
    return LV_MAX((uint64_t)LV_PIPELINE_CREDIT_RETRY_MIN_MS, 2u * (uint64_t)s->rec.settings.interval_ms);
}

static void credit_file_at(lv_pipeline_t *p, lv_session_t *s, uint64_t wake_ms)
{
    lv_queue_remove(&s->credit_link);
    s->credit_wake_ms = wake_ms;
    if (wake_ms <= p->credit_wheel_ms) /* the wheel has passed it: the next tick looks */
        lv_queue_insert_tail(&p->credit_soon, &s->credit_link);
    else
        lv_queue_insert_tail(&p->credit_wheel[(wake_ms / LV_PIPELINE_WHEEL_SLOT_MS) % LV_PIPELINE_WHEEL_SLOTS],
                             &s->credit_link);
}

/* s's next look, from what it is now: none while stopped or without a source. */
static void credit_file(lv_pipeline_t *p, lv_session_t *s)
{
    if (!lv_queue_linked(&s->started_link) || s->n_sources == 0) {
        lv_queue_remove(&s->credit_link);
        return;
    }
    uint64_t wake = s->next_credit_ms;
    if (s->credit_outstanding) /* an unanswered credit is re-asked, not another sent */
        wake = LV_MAX(wake, s->credit_sent_ms + credit_retry_ms(s));
    credit_file_at(p, s, wake);
}

void lv_pipeline_credit_reschedule(lv_pipeline_t *p, lv_session_t *s) { credit_file(p, s); }

static uint64_t started_order_of(lv_queue_t *n) { return LV_CONTAINER_OF(n, lv_session_t, credit_link)->started_order; }

/* Every entry of `from` moves to the (uninitialised) head `to`, in order; `from` is left empty. */
static void queue_move(lv_queue_t *from, lv_queue_t *to)
{
    lv_queue_init(to);
    if (lv_queue_empty(from))
        return;
    *to = *from;
    to->next->prev = to;
    to->prev->next = to;
    lv_queue_init(from);
}

/* Two NULL-terminated chains (through ->next) sorted by started_order, merged. */
static lv_queue_t *chain_merge(lv_queue_t *a, lv_queue_t *b)
{
    lv_queue_t head = {NULL, NULL}, *tail = &head;
    while (a && b) {
        lv_queue_t **least = started_order_of(a) < started_order_of(b) ? &a : &b;
        tail->next = *least;
        tail = *least;
        *least = (*least)->next;
    }
    tail->next = a ? a : b;
    return head.next;
}

/* A NULL-terminated chain sorted by started_order: a bottom-up merge sort (as Linux's
 * lib/list_sort.c), O(k log k) and no allocation however many sessions became due at once. */
static lv_queue_t *chain_sort(lv_queue_t *chain)
{
    lv_queue_t *bins[64] = {NULL}; /* bins[i]: a sorted run of 2^i (the last one of any length) */
    while (chain) {
        lv_queue_t *run = chain;
        chain = chain->next;
        run->next = NULL;
        size_t i = 0;
        for (; i < LV_ARRAY_LEN(bins) - 1 && bins[i]; i++) {
            run = chain_merge(bins[i], run);
            bins[i] = NULL;
        }
        bins[i] = chain_merge(bins[i], run);
    }
    lv_queue_t *out = NULL;
    for (size_t i = 0; i < LV_ARRAY_LEN(bins); i++)
        out = chain_merge(bins[i], out);
    return out;
}

/* Before a tick's credits: the sessions that started since the last tick are filed, the wheel
 * turns from the last tick's time to now (each slot at most once, however long since), and what
 * became due goes to `arrivals` (a head initialised here) in started_order. */
static void credit_timetable_turn(lv_pipeline_t *p, uint64_t now, lv_queue_t *arrivals)
{
    lv_queue_t *head = lv_registry_just_started(p->reg), *n, *next;
    while (!lv_queue_empty(head)) {
        p->credit_visits++;
        credit_file(p, LV_CONTAINER_OF(lv_queue_head(head), lv_session_t, credit_link));
    }
    if (now >= p->credit_wheel_ms) { /* a clock that went back leaves the wheel where it was */
        uint64_t first = p->credit_wheel_ms / LV_PIPELINE_WHEEL_SLOT_MS;
        uint64_t n_slots = LV_MIN(now / LV_PIPELINE_WHEEL_SLOT_MS - first + 1, (uint64_t)LV_PIPELINE_WHEEL_SLOTS);
        for (uint64_t i = 0; i < n_slots; i++) {
            lv_queue_t *slot = &p->credit_wheel[(first + i) % LV_PIPELINE_WHEEL_SLOTS];
            for (n = slot->next; n != slot; n = next) {
                next = n->next;
                p->credit_visits++;
                if (LV_CONTAINER_OF(n, lv_session_t, credit_link)->credit_wake_ms <= now) {
                    lv_queue_remove(n);
                    lv_queue_insert_tail(&p->credit_soon, n); /* a later turn of the wheel stays */
                }
            }
        }
        p->credit_wheel_ms = now;
    }
    lv_queue_init(arrivals);
    if (lv_queue_empty(&p->credit_soon))
        return;
    lv_queue_t *chain = p->credit_soon.next;
    p->credit_soon.prev->next = NULL;
    lv_queue_init(&p->credit_soon);
    for (chain = chain_sort(chain); chain; chain = next) {
        next = chain->next;
        lv_queue_insert_tail(arrivals, chain);
    }
}

/* The first of two lists in started_order by started_order (NULL when both are empty): the tick
 * merges the due list and the arrivals as it goes, one pass over the sessions held back. */
static lv_queue_t *credit_next(lv_queue_t *a, lv_queue_t *b)
{
    if (lv_queue_empty(a))
        return lv_queue_empty(b) ? NULL : b->next;
    if (lv_queue_empty(b) || started_order_of(a->next) < started_order_of(b->next))
        return a->next;
    return b->next;
}

/* A session's unanswered credit counts against its principal like a queued frame, so credits go
 * out only as fast as frames can be served. */
static void credit_drop(lv_pipeline_t *p, lv_session_t *s)
{
    s->credit_outstanding = 0;
    p->credits_outstanding--;
    principal_add(p, s->rec.principal, -1);
}

void lv_pipeline_credit_clear(lv_pipeline_t *p, lv_session_t *s)
{
    if (!s->credit_outstanding)
        return;
    credit_drop(p, s);
    credit_file(p, s); /* due at its next_credit_ms now, not at the re-ask */
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

/* The coalescing interval that keeps the server's delta messages near delta_rate a second: each of
 * the n_jobs answers that may be streaming sends one per interval. */
static unsigned delta_interval_ms(const lv_pipeline_t *p)
{
    if (p->delta_rate <= 0)
        return LV_PIPELINE_DELTA_COALESCE_MS;
    uint64_t ms = (uint64_t)p->n_jobs * 1000u / (uint64_t)p->delta_rate;
    return ms < LV_PIPELINE_DELTA_COALESCE_MS ? LV_PIPELINE_DELTA_COALESCE_MS
           : ms > LV_PIPELINE_DELTA_MAX_MS    ? LV_PIPELINE_DELTA_MAX_MS
                                              : (unsigned)ms;
}

size_t lv_pipeline_tick(lv_pipeline_t *p, uint64_t now)
{
    p->delta_ms = delta_interval_ms(p);
    flush_due_deltas(p, now);
    lv_coalesce_expire(p, lv_pipeline_now_us(p) / 1000u);
    if (now - p->last_review_ms >= LV_PIPELINE_REVIEW_MS) {
        p->last_review_ms = now;
        review_jobs(p, now);
    }
    size_t capacity = p->dispatch->ops->capacity(p->dispatch);
    size_t waiting = lv_drr_queued(p->drr) + p->credits_outstanding;
    p->demand = false;
    /* the due sessions in started_order: a session filed elsewhere is not due (the timetable), so
     * this asks whom a walk over every started session would ask, in its order. The sessions held
     * back before and those that became due are merged as they are looked at; each is taken off
     * its list and put back on the due list as it stays due (libuv's walks): a hook that files
     * another session again (a source that leaves) cannot send this walk astray */
    lv_queue_t arrivals, todo, *n;
    credit_timetable_turn(p, now, &arrivals);
    queue_move(&p->credit_due, &todo);
    size_t n_granted = 0;
    while ((n = credit_next(&todo, &arrivals)) != NULL) {
        lv_queue_remove(n);
        lv_queue_insert_tail(&p->credit_due, n);
        if (n_granted == LV_PIPELINE_CREDITS_PER_TICK)
            continue; /* bounded credits per tick; the rest stay due and are asked on the next one */
        lv_session_t *s = LV_CONTAINER_OF(n, lv_session_t, credit_link);
        p->credit_visits++;
        if (s->n_sources == 0) { /* credits go to sources: attaching one files it again */
            lv_queue_remove(&s->credit_link);
            continue;
        }
        if (s->pending)
            continue; /* stays due: asked once its frame has gone */
        if (s->credit_outstanding) {
            if (now - s->credit_sent_ms < credit_retry_ms(s)) {
                credit_file(p, s); /* its interval grew: the re-ask is later */
                continue;
            }
            credit_drop(p, s); /* the source lost it (tab hidden, reconnect): ask again */
            waiting--;
        }
        if (now < s->next_credit_ms) {
            credit_file(p, s); /* not due yet: looked at again when it is */
            continue;
        }
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
        n_granted++;
        /* to the back: the order is the order in which sessions last got a credit, so among one
         * principal's sessions the longest-waiting is asked first */
        lv_registry_started_to_back(p->reg, s);
        credit_file(p, s); /* at its re-ask; answered sooner, at its next_credit_ms */
        lv_queue_t *sn, *snext; /* every source of the session is asked (lv_port_source.h) */
        for (sn = s->sources.next; sn != &s->sources; sn = snext) {
            snext = sn->next;
            lv_source_t *src = LV_CONTAINER_OF(sn, lv_source_t, link);
            if (src->ops && src->ops->request_frame)
                src->ops->request_frame(src, s, s->credit_outstanding);
        }
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
    lv_queue_insert_tail(&s->sources, &src->link);
    s->n_sources++;
    lv_session_attach_changed(s, now_ms);
    credit_file(p, s); /* a started session without a source was in no timetable */
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

/* A lead ends: out of the coalesce table (any followers left hear nothing more), its slot free, its
 * session without a job (a lead's session is never NULL: lv_coalesce.h). */
static void job_free(lv_pipeline_t *p, lv_job_t *job)
{
    lv_coalesce_forget(p, job);
    if (job->user[0]) /* its slot is free: the principal's share counts one job less */
        lv_drr_job_done(p->drr, job->user, lv_pipeline_now_us(p), job->linger_us);
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

/* The job ends without an answer and its frame goes back in line (unless a newer one already
 * waits, or the session stopped): the session is queued again at once. Its followers' frames go
 * back in line too: they meet again at their turns (one leads, the others follow). */
static void job_requeue(lv_pipeline_t *p, lv_job_t *job)
{
    lv_session_t *s = job->session;
    lv_coalesce_requeue(p, job);
    if (!s->pending && s->rec.started) {
        lv_session_mailbox_put(s, job->frame);
        job->frame = NULL;
    }
    job_free(p, job);
    lv_pipeline_ready(p, s);
    lv_pipeline_kick(p);
}

/* ---------- one session's view of an answer (a lead's, or a follower's: lv_coalesce.c) ---------- */

static void flush_delta(lv_pipeline_t *p, lv_job_t *view)
{
    lv_session_t *s = view->session;
    if (view->delta.len)
        FOR_EACH_VIEWER(s, v, if (v->ops && v->ops->delta) v->ops->delta(v, s, view->answer_id, view->delta.data,
                                                                         view->delta.len));
    lv_buf_reset(&view->delta);
    view->delta_since_ms = 0;
}

void lv_pipeline_view_flush_due(lv_pipeline_t *p, lv_job_t *view, uint64_t now_ms)
{
    if (view->delta_since_ms && now_ms - view->delta_since_ms >= p->delta_ms)
        flush_delta(p, view);
}

static void flush_due_deltas(lv_pipeline_t *p, uint64_t now_ms)
{
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &p->jobs)
    {
        lv_job_t *job = LV_CONTAINER_OF(n, lv_job_t, link);
        lv_pipeline_view_flush_due(p, job, now_ms);
        lv_coalesce_flush_due(p, job, now_ms);
    }
}

/* The first piece goes out at once (time to first token is what people notice), later ones are
 * coalesced. */
bool lv_pipeline_view_delta(lv_pipeline_t *p, lv_job_t *view, const char *text, size_t len)
{
    if (lv_buf_append(&view->delta, text, len) != 0) {
        flush_delta(p, view); /* over the cap: send what we have, then this piece alone */
        lv_buf_append(&view->delta, text, len);
    }
    if (!view->first_delta_sent) {
        view->first_delta_sent = true;
        flush_delta(p, view);
        return true;
    }
    if (!view->delta_since_ms)
        view->delta_since_ms = lv_pipeline_now_us(p) / 1000u;
    return false;
}

void lv_pipeline_view_start(lv_job_t *view)
{
    lv_session_t *s = view->session;
    FOR_EACH_VIEWER(s, v, if (v->ops && v->ops->answer_start) v->ops->answer_start(v, s, view));
}

void lv_pipeline_view_done(lv_pipeline_t *p, lv_job_t *view, const lv_dispatch_result_t *r)
{
    lv_session_t *s = view->session;
    flush_delta(p, view); /* every delta precedes the final answer */
    uint64_t t0 = lv_pipeline_now_us(p);
    if (p->hooks.answer_end)
        p->hooks.answer_end(p->hooks.ud, view, r);
    if (r->rc == 0) {
        double latency_ms = (double)(t0 - view->frame_recv_us) / 1000.0;
        s->last_latency_ms = latency_ms;
        s->rec.total_inferences++;
        s->rec.avg_latency_ms += (latency_ms - s->rec.avg_latency_ms) / (double)s->rec.total_inferences;
        s->job = NULL; /* the answer's metrics say it is no longer processing */
        lv_session_history_add(s, view->answer_id, r->text, r->text_len, latency_ms, lv_wall_ms());
        lv_session_save(p->reg, s);
        FOR_EACH_VIEWER(s, v, if (v->ops && v->ops->answer) v->ops->answer(v, s, view, r, latency_ms));
        if (p->hooks.answered)
            p->hooks.answered(p->hooks.ud, view, r, latency_ms, view->gateway_us + (lv_pipeline_now_us(p) - t0));
    } else {
        const char *code = r->error_code ? r->error_code : "backend_error";
        char msg[512];
        snprintf(msg, sizeof(msg), "%s: %s", view->backend_id,
                 r->error_message ? r->error_message : lv_strerror(r->rc));
        lv_pipeline_error(p, s, code, msg, view->answer_id);
        if (p->hooks.failed)
            p->hooks.failed(p->hooks.ud, code);
    }
}

/* ---------- the dispatcher's events: the lead's view, then its followers' ---------- */

static void ev_started(lv_dispatch_t *d, lv_job_t *job)
{
    lv_pipeline_t *p = d->events_ud;
    job->started = true;
    lv_pipeline_view_start(job);
    lv_coalesce_started(p, job);
}

static void ev_delta(lv_dispatch_t *d, lv_job_t *job, const char *text, size_t len)
{
    lv_pipeline_t *p = d->events_ud;
    lv_coalesce_so_far(p, job, text, len);
    bool first = lv_pipeline_view_delta(p, job, text, len);
    lv_coalesce_delta(p, job, text, len);
    /* a request past its first token may be the evidence that lets a full window grow */
    if (first && (lv_drr_queued(p->drr) || p->demand) && d->ops->grow && d->ops->grow(d, job) > 0)
        lv_pipeline_kick(p);
}

static void ev_done(lv_dispatch_t *d, lv_job_t *job, const lv_dispatch_result_t *r)
{
    lv_pipeline_t *p = d->events_ud;
    lv_session_t *s = job->session;
    job->impl = NULL;
    if (r->requeue) {
        job_requeue(p, job);
        return;
    }
    lv_coalesce_close(p, job); /* nobody joins an answer that is over */
    if (r->stale && !job->started && !job->n_followers) {
        /* it waited too long inside the dispatcher: what the page hears of a frame that waited too
         * long in our own queue (followers, if any, hear the error below instead) */
        report_stale(p, s, (double)(lv_pipeline_now_us(p) - job->frame_recv_us) / 1000.0 +
                               (job->frame ? job->frame->capture_age_ms : 0));
        job_free(p, job);
        lv_pipeline_ready(p, s);
        lv_pipeline_kick(p);
        return;
    }
    if (r->rc != 0) {
        lv_log_ctx_t ctx = {.session = s->rec.id, .answer = job->answer_id, .trace_id = job->trace.trace_id,
                            .backend = job->backend_id, .model = job->model};
        LV_INFO_CTX(&ctx, "session %.8s%s: %s %s: %s", s->rec.id, job->n_followers ? " and its followers" : "",
                    r->error_code ? r->error_code : "backend_error", job->backend_id,
                    r->error_message ? r->error_message : lv_strerror(r->rc));
    }
    lv_pipeline_view_done(p, job, r);
    lv_coalesce_done(p, job, r);
    job_free(p, job);
    /* the slot this job held is free, and this session may have a frame waiting */
    lv_pipeline_ready(p, s);
    lv_pipeline_kick(p);
}

static const lv_dispatch_events_t dispatch_events = {ev_started, ev_delta, ev_done};

/* ---------- a frame's turn ---------- */

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
        lv_buf_init(&job->delta, LV_PIPELINE_JOB_TEXT_MAX);
        lv_buf_init(&job->so_far, LV_PIPELINE_JOB_TEXT_MAX);
    }
    return job;
}

void lv_pipeline_job_recycle(lv_pipeline_t *p, lv_job_t *job)
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

/* Everything zero but its buffers (a spare's are kept, capped and emptied) and the view of s's
 * answer. The settings are copied whole anyway, so they are the one part not zeroed first: a turn
 * a busy backend refuses costs this on every try (the job is 5 KB, 4.4 KB of it settings). */
lv_job_t *lv_pipeline_job_new(lv_pipeline_t *p, lv_session_t *s, uint64_t t0)
{
    lv_job_t *job = job_get(p);
    if (!job)
        return NULL;
    lv_buf_t delta = job->delta, so_far = job->so_far;
    char *after_settings = (char *)&job->settings + sizeof(job->settings);
    memset(job, 0, offsetof(lv_job_t, settings));
    memset(after_settings, 0, (size_t)((char *)(job + 1) - after_settings));
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
    job->trace = s->trace;
    job->session = s;
    job->frame_recv_us = f->recv_us;
    job->dispatch_us = t0;
    job->queue_wait_ms = (double)(t0 - f->recv_us) / 1000.0;
    job->frame_age_ms = job->queue_wait_ms + f->capture_age_ms;
    return job;
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
    uint64_t t0 = lv_pipeline_now_us(p);
    if (lv_pipeline_detached_too_long(p, s, t0 / 1000u))
        return drop_turn(p, s);
    /* the same question about the same picture is being asked already (or was just answered):
     * listen in, at no cost to s's principal (the node leaves the queue without using its turn) */
    lv_coalesce_match_t m;
    if (lv_coalesce_find(p, s, &m) && lv_coalesce_join(p, s, &m)) {
        left_queue(p, s);
        return LV_DRR_DROP;
    }
    lv_job_t *job = lv_pipeline_job_new(p, s, t0);
    if (!job)
        return drop_turn(p, s);
    char why[1024];
    why[0] = '\0';
    s->job = job; /* for viewers that look at the session from inside `started` */
    int rc = p->dispatch->ops->submit(p->dispatch, job, why, sizeof(why));
    if (rc != 0) {
        s->job = NULL;
        lv_pipeline_job_recycle(p, job);
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
    lv_coalesce_open(p, job);
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
    job->gateway_us += lv_pipeline_now_us(p) - t0;
    return LV_DRR_DISPATCHED;
}

static void on_stale(lv_drr_node_t *node, void *ud)
{
    lv_pipeline_t *p = ud;
    lv_pipeline_drop_stale(p, LV_CONTAINER_OF(node, lv_session_t, drr), lv_pipeline_now_us(p));
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
    uint64_t now = lv_pipeline_now_us(p);
    lv_job_t *victim = NULL;
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &p->jobs)
    {
        lv_job_t *job = LV_CONTAINER_OF(n, lv_job_t, link);
        if (!job->started || job->first_delta_sent || job->n_followers)
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

/* Jobs nobody waits for any more: the session has had no viewer and no source for
 * detached_cancel_ms (its waiting frame goes too), or its request settings changed (taken back once
 * LV_PIPELINE_SUPERSEDE_MIN_MS after it started). A job not yet started (its frame is being
 * shaped) is looked at once it is. A job others follow is not cancelled for its lead's session:
 * it is handed over to a follower. */
static void review_jobs(lv_pipeline_t *p, uint64_t now_ms)
{
    lv_queue_t *n, *next;
    uint64_t now = lv_pipeline_now_us(p);
    for (n = p->jobs.next; n != &p->jobs; n = next) {
        next = n->next; /* no path frees another job */
        lv_job_t *job = LV_CONTAINER_OF(n, lv_job_t, link);
        lv_session_t *s = job->session;
        lv_coalesce_review(p, job, now_ms); /* its followers that let go */
        /* a job not started yet is reviewed only for a session nobody watches any more: it may
         * wait inside the dispatcher (a cluster's queue) for seconds, for nobody */
        if (!job->started && (job->n_followers || !lv_pipeline_detached_too_long(p, s, now_ms)))
            continue;
        if (lv_pipeline_detached_too_long(p, s, now_ms)) {
            lv_pipeline_unready(p, s);
            lv_frame_unref(lv_session_mailbox_take(s));
            if (job->n_followers) {
                LV_INFO("session %.8s: nobody attached for %d ms; "
                        "its request goes on for the %zu sessions following it",
                        s->rec.id, p->detached_cancel_ms, job->n_followers);
                lv_coalesce_let_go(p, job); /* the oldest follower takes it over */
                continue;
            }
            LV_INFO("session %.8s: nobody attached for %d ms, its backend request is cancelled", s->rec.id,
                    p->detached_cancel_ms);
            if (p->hooks.cancelled)
                p->hooks.cancelled(p->hooks.ud, "detached");
            job_abort(p, job);
        } else if (job->settings_stale && now - job->dispatch_us >= (uint64_t)LV_PIPELINE_SUPERSEDE_MIN_MS * 1000u) {
            if (!lv_coalesce_step_back(p, job, "settings_changed")) /* others follow: it goes on for them */
                job_take_back(p, job, "settings_changed");
        }
    }
    if (preempt_for_starved(p))
        lv_pipeline_kick(p);
    if (p->dispatch->ops->reopened && p->dispatch->ops->reopened(p->dispatch) > 0 && lv_drr_queued(p->drr))
        lv_pipeline_kick(p);
    /* a lingering principal's time is up: those held back for it may go now */
    uint64_t linger_end = lv_drr_linger_next_us(p->drr);
    if (linger_end && linger_end <= now && lv_drr_queued(p->drr))
        lv_pipeline_kick(p);
}

size_t lv_pipeline_run(lv_pipeline_t *p)
{
    lv_dispatch_t *d = p->dispatch;
    lv_drr_set_capacity(p->drr, d->ops->capacity(d));
    size_t n = lv_drr_run(p->drr, LV_PIPELINE_DISPATCH_PER_RUN, lv_pipeline_now_us(p), try_dispatch, on_stale, p);
    /* frames still wait: a full backend that shows free room grows its window (one request per
     * first token), and the next run may use it */
    if ((lv_drr_queued(p->drr) || p->demand) && d->ops->grow && d->ops->grow(d, NULL) > 0)
        lv_pipeline_kick(p);
    else if (preempt_for_starved(p))
        lv_pipeline_kick(p);
    /* bounded work per run: if a full batch went out, come back for the rest */
    if (n == LV_PIPELINE_DISPATCH_PER_RUN)
        lv_pipeline_kick(p);
    return n;
}

bool lv_pipeline_put_frame(lv_pipeline_t *p, lv_session_t *s, lv_frame_t *f)
{
    /* latest wins inside the dispatcher too: a job still waiting in a cluster's queue is asked
     * about the newer picture instead (no second request for the session) */
    lv_job_t *j = s->job;
    if (j && !j->started && !j->lead && !j->n_followers && !j->settings_stale && !f->share_key &&
        p->dispatch->ops->replace_frame && p->dispatch->ops->replace_frame(p->dispatch, j, f) == 0) {
        lv_frame_unref(j->frame);
        j->frame = f; /* the caller's reference */
        j->frame_recv_us = f->recv_us;
        return true;
    }
    bool replaced = lv_session_mailbox_put(s, f) != 0;
    if (s->job)
        return replaced; /* it waits in the mailbox and is queued when the job ends */
    /* a job asks (or just asked) the same about this picture: follow it (or hear its answer) now,
     * no turn needed */
    lv_coalesce_match_t m;
    if (s->rec.started && s->pending->share_key &&
        !lv_pipeline_detached_too_long(p, s, lv_pipeline_now_us(p) / 1000u) && lv_coalesce_find(p, s, &m)) {
        lv_pipeline_unready(p, s); /* an older frame of s was in line: this one needs no turn */
        if (lv_coalesce_join(p, s, &m))
            return replaced;
    }
    lv_pipeline_ready(p, s);
    lv_pipeline_kick(p);
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
    /* a follower just stops hearing the answer; a request others follow goes on for them */
    if (!lv_coalesce_let_go(p, job))
        job_abort(p, job);
}

void lv_pipeline_shutdown(lv_pipeline_t *p)
{
    while (!lv_queue_empty(&p->jobs))
        job_abort(p, LV_CONTAINER_OF(lv_queue_head(&p->jobs), lv_job_t, link));
}
