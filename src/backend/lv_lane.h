/* lv_lane.h - where backend transfers run: a second uv loop on a thread of its own (threaded), or
 * the caller's loop (inline). Two queues cross it: items posted to the I/O side run there, items
 * posted to the main side run on the main loop. Why a lane and what it moves is written in
 * docs/internals/threads.md: the backend side (libcurl, the backend sockets, SSE parsing) was
 * 60 % of the gateway's CPU at 1,000 sessions, and a lane lets it use the second core while the
 * fair queue, sessions and every decision stay on the main loop.
 *
 * The same code runs both ways: inline, the I/O side is the main loop and the two queues still
 * hand items over on a later loop turn (uv_async), so an item's code never runs inside the other
 * side's callbacks in either mode.
 *
 * Items are embedded in their owner's struct and reference counted under the lane's lock: each
 * side holds a reference while it uses the item, and a queued item holds one more, so an item
 * dropped by one side while posted to the other stays valid until that side has run it. When the
 * last reference goes, free_fn runs on whichever thread dropped it.
 *
 * Threads: lv_lane_create / lv_lane_destroy / lv_lane_io_loop / lv_lane_io_http / lv_lane_threaded
 * on the main loop's thread; lv_lane_lock/unlock, lv_lane_post_io, lv_lane_post_main and
 * lv_lane_unref from either side. */
#ifndef LV_LANE_H
#define LV_LANE_H

#include <stdbool.h>
#include <uv.h>

#include "lv_http.h"
#include "lv_queue.h"

typedef struct lv_lane lv_lane_t;

/* How long the I/O side may hold a batch for the main side (lv_lane_post_main_soon). */
#define LV_LANE_BATCH_MS 16
/* A threaded I/O side polls at most every LV_LANE_IO_PACE_MS while busy, and at most every
 * LV_LANE_IO_PACE_MAX_MS once LV_LANE_IO_PACE_MAX_MS * LV_LANE_IO_PACE_PER_MS transfers are in
 * flight (lv_lane_io_pace_ms; lv_lane.c io_thread says why). */
#define LV_LANE_IO_PACE_MS 4
#define LV_LANE_IO_PACE_MAX_MS 10
#define LV_LANE_IO_PACE_PER_MS 8

/** How long the I/O loop lets pass between polls with in_flight transfers: in_flight /
 * LV_LANE_IO_PACE_PER_MS milliseconds, kept within LV_LANE_IO_PACE_MS..LV_LANE_IO_PACE_MAX_MS. */
unsigned lv_lane_io_pace_ms(size_t in_flight);

typedef struct lv_lane_item {
    lv_queue_t io_link, main_link;              /* under the lane's lock */
    bool on_io, on_main;
    lv_queue_t soon_link;                       /* the I/O side's own */
    bool on_soon;
    int refs;
    void (*io_turn)(struct lv_lane_item *it);   /* I/O side: it was posted there */
    void (*main_turn)(struct lv_lane_item *it); /* main loop: it was posted there */
    void (*free_fn)(struct lv_lane_item *it);   /* the last reference went */
} lv_lane_item_t;

/** threaded: start a thread with its own uv loop and lv_http; otherwise the I/O side is main_loop
 * and main_http (borrowed; they must outlive the lane). LV_ENOMEM, LV_EIO (a thread, loop or
 * handle could not be made). */
int lv_lane_create(uv_loop_t *main_loop, lv_http_t *main_http, bool threaded, lv_lane_t **out);

/** Stop: the I/O side finishes what is posted to it, closes its lv_http and loop, and its thread
 * is joined (this call waits for that). Items still posted to the main side are dropped (their
 * queue reference). Call after every item's owner has let go (lv_pool_destroy cancels chats
 * first). The memory goes when main_loop runs the close callbacks. NULL is ignored. */
void lv_lane_destroy(lv_lane_t *lane);

uv_loop_t *lv_lane_io_loop(lv_lane_t *lane);
lv_http_t *lv_lane_io_http(lv_lane_t *lane);
/** The I/O loop's built-in HTTP/1.1 client (lv_h1c.h), owned by the lane; I/O side only. */
struct lv_h1c *lv_lane_io_h1c(lv_lane_t *lane);
bool lv_lane_threaded(const lv_lane_t *lane);

/** it starts with refs references (one per side that will hold it). The lane's memory stays
 * until its last item is freed, even after lv_lane_destroy. */
void lv_lane_item_init(lv_lane_t *lane, lv_lane_item_t *it, int refs, void (*io_turn)(lv_lane_item_t *),
                       void (*main_turn)(lv_lane_item_t *), void (*free_fn)(lv_lane_item_t *));

/** The lane's one lock: hold it while reading or writing the item data the two sides share. Not
 * recursive; never call post/unref while holding it. */
void lv_lane_lock(lv_lane_t *lane);
void lv_lane_unlock(lv_lane_t *lane);

/** Queue it to run once on that side (posting a queued item again does nothing: it runs once and
 * sees everything posted before it runs). Wakes that side. */
void lv_lane_post_io(lv_lane_t *lane, lv_lane_item_t *it);
void lv_lane_post_main(lv_lane_t *lane, lv_lane_item_t *it);

/** I/O side only: post it to the main side within LV_LANE_BATCH_MS, together with everything
 * else posted soon in that time (one lock and one wake-up for the batch). For news that can wait
 * a few milliseconds (a streamed answer's next words: the page gets them every 40 ms anyway);
 * lv_lane_post_main for what cannot (a first token, an outcome). */
void lv_lane_post_main_soon(lv_lane_t *lane, lv_lane_item_t *it);

/** An item that was never posted goes at once, whatever its references (a start that failed). */
void lv_lane_item_drop(lv_lane_t *lane, lv_lane_item_t *it);

/** Drop one reference; the last one runs free_fn (outside the lock). */
void lv_lane_unref(lv_lane_t *lane, lv_lane_item_t *it);

#endif
