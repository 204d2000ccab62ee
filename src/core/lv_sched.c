/* lv_sched.c - round-robin ready queue. */
#include "lv_sched.h"

#include "lv_common.h"

void lv_sched_init(lv_sched_t *q)
{
    lv_queue_init(&q->ready);
    q->n_ready = 0;
}

void lv_sched_ready(lv_sched_t *q, lv_session_t *s)
{
    if (lv_queue_linked(&s->ready_link))
        return;
    lv_queue_insert_tail(&q->ready, &s->ready_link);
    q->n_ready++;
}

void lv_sched_remove(lv_sched_t *q, lv_session_t *s)
{
    if (!lv_queue_linked(&s->ready_link))
        return;
    lv_queue_remove(&s->ready_link);
    q->n_ready--;
}

size_t lv_sched_run(lv_sched_t *q, size_t max_dispatch,
                    lv_sched_verdict_t (*try_dispatch)(lv_session_t *s, void *ud), void *ud)
{
    size_t dispatched = 0;
    size_t to_offer = q->n_ready;
    lv_queue_t *n = lv_queue_head(&q->ready);
    /* a session that stays BUSY keeps its place, so it is first in line next time */
    while (to_offer-- > 0 && n != &q->ready && dispatched < max_dispatch) {
        lv_queue_t *next = n->next;
        lv_session_t *s = LV_CONTAINER_OF(n, lv_session_t, ready_link);
        lv_sched_verdict_t v = try_dispatch(s, ud);
        if (v != LV_SCHED_BUSY) {
            lv_sched_remove(q, s);
            if (v == LV_SCHED_DISPATCHED)
                dispatched++;
        }
        n = next;
    }
    return dispatched;
}
