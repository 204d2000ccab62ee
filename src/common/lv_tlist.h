/* lv_tlist.h - timeout lists: one list per duration, so appending at the tail keeps each list
 * sorted by deadline by construction, and one periodic check looks only at the heads. Arming,
 * re-arming and cancelling are O(1); no timer object per connection. (h2o's timeout lists,
 * nginx's lazy timers.) */
#ifndef LV_TLIST_H
#define LV_TLIST_H

#include <stdint.h>

#include "lv_common.h"
#include "lv_queue.h"

/* Embedded in the owner (intrusive); detached when link is self-linked. */
typedef struct {
    lv_queue_t link;
    uint64_t deadline_ms;
} lv_tlist_entry_t;

typedef struct {
    lv_queue_t entries;       /* oldest (earliest deadline) first */
    uint64_t duration_ms;
} lv_tlist_t;

static inline void lv_tlist_init(lv_tlist_t *l, uint64_t duration_ms)
{
    lv_queue_init(&l->entries);
    l->duration_ms = duration_ms;
}

static inline void lv_tlist_entry_init(lv_tlist_entry_t *e) { lv_queue_init(&e->link); }

/** Whether e waits on some list. */
static inline int lv_tlist_armed(const lv_tlist_entry_t *e) { return lv_queue_linked(&e->link); }

/** Detach e from whatever list holds it (no-op when detached). */
static inline void lv_tlist_cancel(lv_tlist_entry_t *e)
{
    if (lv_queue_linked(&e->link))
        lv_queue_remove(&e->link);
}

/** (Re)arm e to expire duration_ms after now_ms: it leaves any list it was on and goes to l's
 * tail. now_ms must not go backwards between calls (a monotonic clock), which keeps l sorted. */
static inline void lv_tlist_arm(lv_tlist_t *l, lv_tlist_entry_t *e, uint64_t now_ms)
{
    lv_tlist_cancel(e);
    e->deadline_ms = now_ms + l->duration_ms;
    lv_queue_insert_tail(&l->entries, &e->link);
}

/** The earliest entry of l whose deadline has passed at now_ms, detached; NULL when none. Call in
 * a loop to collect every expired entry. */
static inline lv_tlist_entry_t *lv_tlist_pop_expired(lv_tlist_t *l, uint64_t now_ms)
{
    if (lv_queue_empty(&l->entries))
        return NULL;
    lv_tlist_entry_t *e = LV_CONTAINER_OF(lv_queue_head(&l->entries), lv_tlist_entry_t, link);
    if (e->deadline_ms > now_ms)
        return NULL;
    lv_queue_remove(&e->link);
    return e;
}

#endif
