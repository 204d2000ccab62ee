/* lv_queue.h - intrusive circular doubly-linked list (the owner embeds lv_queue_t; no malloc per entry). */
#ifndef LV_QUEUE_H
#define LV_QUEUE_H

#include <stddef.h>

typedef struct lv_queue {
    struct lv_queue *next;
    struct lv_queue *prev;
} lv_queue_t;

/* An empty head points at itself. A detached node is also kept self-linked, so
 * lv_queue_linked() tells whether a node is on some list. */
static inline void lv_queue_init(lv_queue_t *q) { q->next = q->prev = q; }
static inline int lv_queue_empty(const lv_queue_t *q) { return q->next == q; }
static inline int lv_queue_linked(const lv_queue_t *n) { return n->next != n; }
static inline void lv_queue_insert_tail(lv_queue_t *h, lv_queue_t *n)
{
    n->next = h;
    n->prev = h->prev;
    h->prev->next = n;
    h->prev = n;
}
static inline void lv_queue_insert_head(lv_queue_t *h, lv_queue_t *n)
{
    n->prev = h;
    n->next = h->next;
    h->next->prev = n;
    h->next = n;
}
static inline void lv_queue_remove(lv_queue_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}
static inline lv_queue_t *lv_queue_head(const lv_queue_t *h) { return h->next; }

#define LV_QUEUE_FOREACH(n, h) for ((n) = (h)->next; (n) != (h); (n) = (n)->next)

#endif
