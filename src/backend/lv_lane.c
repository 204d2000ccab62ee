/* lv_lane.c - the backend I/O lane (lv_lane.h): two item queues under one mutex, each drained by
 * a uv_async on its side; the I/O side's loop on a thread of its own, or the main loop. */
#include "lv_lane.h"

#include <pthread.h>
#include <stdlib.h>

#include "lv_common.h"
#include "lv_h1c.h"
#include "lv_log.h"

struct lv_lane {
    uv_loop_t *main_loop;
    uv_loop_t *io_loop;          /* &own_loop when threaded, else main_loop */
    uv_loop_t own_loop;
    lv_http_t *io_http;          /* owned when threaded */
    lv_h1c_t *io_h1c;            /* owned, on io_loop */
    bool threaded;
    uv_thread_t thread;
    uv_mutex_t lock;
    lv_queue_t io_q, main_q;     /* lv_lane_item_t, under lock */
    bool stopping;               /* under lock */
    uv_async_t io_async, main_async;
    uv_timer_t soon_timer;       /* on the I/O loop: moves soon_q to main_q */
    uv_check_t io_check;         /* threaded: notes when each turn's work began (io_thread) */
    uint64_t io_woke_ns;
    lv_queue_t soon_q;           /* the I/O side's own: items to post within LV_LANE_BATCH_MS */
    int open_handles;            /* main-loop handles still to close before the memory goes */
    size_t live_items;           /* made and not yet freed (under lock): an item's last reference
                                  * may go after the lane's handles closed (inline, a chat's timer
                                  * closes after them), and it still takes the lock */
    bool closed;                 /* every handle closed (under lock) */
};

static void lane_free(lv_lane_t *lane)
{
    uv_mutex_destroy(&lane->lock);
    free(lane);
}

void lv_lane_item_init(lv_lane_t *lane, lv_lane_item_t *it, int refs, void (*io_turn)(lv_lane_item_t *),
                       void (*main_turn)(lv_lane_item_t *), void (*free_fn)(lv_lane_item_t *))
{
    uv_mutex_lock(&lane->lock);
    lane->live_items++;
    uv_mutex_unlock(&lane->lock);
    lv_queue_init(&it->io_link);
    lv_queue_init(&it->main_link);
    lv_queue_init(&it->soon_link);
    it->on_io = it->on_main = it->on_soon = false;
    it->refs = refs;
    it->io_turn = io_turn;
    it->main_turn = main_turn;
    it->free_fn = free_fn;
}

void lv_lane_lock(lv_lane_t *lane) { uv_mutex_lock(&lane->lock); }
void lv_lane_unlock(lv_lane_t *lane) { uv_mutex_unlock(&lane->lock); }

void lv_lane_unref(lv_lane_t *lane, lv_lane_item_t *it)
{
    uv_mutex_lock(&lane->lock);
    int left = --it->refs;
    uv_mutex_unlock(&lane->lock);
    if (left)
        return;
    it->free_fn(it);
    uv_mutex_lock(&lane->lock);
    bool last = --lane->live_items == 0 && lane->closed;
    uv_mutex_unlock(&lane->lock);
    if (last)
        lane_free(lane);
}

void lv_lane_item_drop(lv_lane_t *lane, lv_lane_item_t *it)
{
    uv_mutex_lock(&lane->lock);
    it->refs = 1;
    uv_mutex_unlock(&lane->lock);
    lv_lane_unref(lane, it);
}

void lv_lane_post_io(lv_lane_t *lane, lv_lane_item_t *it)
{
    uv_mutex_lock(&lane->lock);
    bool wake = !it->on_io;
    if (wake) {
        it->on_io = true;
        it->refs++;
        lv_queue_insert_tail(&lane->io_q, &it->io_link);
    }
    uv_mutex_unlock(&lane->lock);
    if (wake)
        uv_async_send(&lane->io_async);
}

void lv_lane_post_main(lv_lane_t *lane, lv_lane_item_t *it)
{
    uv_mutex_lock(&lane->lock);
    bool wake = !it->on_main;
    if (wake) {
        it->on_main = true;
        it->refs++;
        lv_queue_insert_tail(&lane->main_q, &it->main_link);
    }
    uv_mutex_unlock(&lane->lock);
    if (wake)
        uv_async_send(&lane->main_async);
}

/* The batch goes: one lock, one wake-up. An item already in the main queue just drops the soon
 * list's reference (the main queue holds one of its own). */
static void flush_soon(lv_lane_t *lane)
{
    if (lv_queue_empty(&lane->soon_q))
        return;
    uv_mutex_lock(&lane->lock);
    while (!lv_queue_empty(&lane->soon_q)) {
        lv_queue_t *node = lv_queue_head(&lane->soon_q);
        lv_queue_remove(node);
        lv_lane_item_t *it = LV_CONTAINER_OF(node, lv_lane_item_t, soon_link);
        it->on_soon = false;
        if (it->on_main) {
            it->refs--; /* never the last: the main queue holds one */
        } else {
            it->on_main = true;
            lv_queue_insert_tail(&lane->main_q, &it->main_link);
        }
    }
    uv_mutex_unlock(&lane->lock);
    uv_async_send(&lane->main_async);
}

static void on_soon_timer(uv_timer_t *t) { flush_soon(t->data); }

void lv_lane_post_main_soon(lv_lane_t *lane, lv_lane_item_t *it)
{
    if (it->on_soon)
        return;
    uv_mutex_lock(&lane->lock);
    it->refs++;
    uv_mutex_unlock(&lane->lock);
    it->on_soon = true;
    lv_queue_insert_tail(&lane->soon_q, &it->soon_link);
    if (!uv_is_active((uv_handle_t *)&lane->soon_timer))
        uv_timer_start(&lane->soon_timer, on_soon_timer, LV_LANE_BATCH_MS, 0);
}

/* Run what was queued on one side when the drain began (later posts wake the async again, so
 * they are not lost, and a busy other side cannot keep this one in here). Each item is unlinked
 * before it runs, so it may be posted again from inside its own turn. run = false drops them. */
static void drain(lv_lane_t *lane, bool io_side, bool run)
{
    lv_queue_t *q = io_side ? &lane->io_q : &lane->main_q;
    size_t n = 0;
    lv_queue_t *node;
    uv_mutex_lock(&lane->lock);
    LV_QUEUE_FOREACH(node, q)
        n++;
    uv_mutex_unlock(&lane->lock);
    while (n--) {
        uv_mutex_lock(&lane->lock);
        if (lv_queue_empty(q)) {
            uv_mutex_unlock(&lane->lock);
            break;
        }
        node = lv_queue_head(q);
        lv_queue_remove(node);
        lv_lane_item_t *it;
        if (io_side) {
            it = LV_CONTAINER_OF(node, lv_lane_item_t, io_link);
            it->on_io = false;
        } else {
            it = LV_CONTAINER_OF(node, lv_lane_item_t, main_link);
            it->on_main = false;
        }
        uv_mutex_unlock(&lane->lock);
        if (run)
            (io_side ? it->io_turn : it->main_turn)(it);
        lv_lane_unref(lane, it); /* the queue's reference */
    }
}

static void on_io_async(uv_async_t *a)
{
    lv_lane_t *lane = a->data;
    drain(lane, true, true);
    if (!lane->threaded)
        return; /* inline: lv_lane_destroy closes everything itself */
    uv_mutex_lock(&lane->lock);
    bool stop = lane->stopping && lv_queue_empty(&lane->io_q);
    uv_mutex_unlock(&lane->lock);
    if (stop && !uv_is_closing((uv_handle_t *)a)) {
        /* the chats' own handles were closed by their cancels above; once these go too, the
         * thread's uv_run returns */
        flush_soon(lane);
        uv_close((uv_handle_t *)&lane->soon_timer, NULL);
        uv_close((uv_handle_t *)&lane->io_check, NULL);
        lv_http_destroy(lane->io_http);
        lane->io_http = NULL;
        lv_h1c_destroy(lane->io_h1c);
        lane->io_h1c = NULL;
        uv_close((uv_handle_t *)a, NULL);
    }
}

static void on_main_async(uv_async_t *a) { drain(a->data, false, true); }

/* The I/O thread's loop, paced: after a wake-up it lets lv_lane_io_pace_ms() pass (work included)
 * before it polls again, so what arrives meanwhile (the next tokens of every stream, new requests)
 * is read in one go. Without it the thread woke once per token at light load, and a wake-up is a
 * context switch (on this VM, most of a token's cost: 1,200 against 820 µs per frame at 50
 * sessions with one loop). Idle, it sleeps in epoll as usual.
 * The pause grows with the transfers in flight, from 4 ms up to 10 ms at 80 and more: every read
 * of a stream is a system call, and at 4 ms a 100 ms stream of 5 ms tokens was read about 8 times.
 * At 2,000 TLS sessions 10 ms took livevlm from 405-408 to 354-366 µs per frame, with client p50
 * within the runs' spread (181-196 against 189-190 ms) and p99 no worse (the CPU it frees is what
 * the tail waits for); 16 ms saved little more, for p50 206 ms (threads.md). Light load keeps
 * 4 ms. */
unsigned lv_lane_io_pace_ms(size_t in_flight)
{
    size_t ms = in_flight / LV_LANE_IO_PACE_PER_MS;
    return (unsigned)LV_MIN(LV_MAX(ms, (size_t)LV_LANE_IO_PACE_MS), (size_t)LV_LANE_IO_PACE_MAX_MS);
}

static void io_thread(void *arg)
{
    lv_lane_t *lane = arg;
#ifdef __GLIBC__
    pthread_setname_np(pthread_self(), "lv-backend"); /* for top -H, perf and /proc/PID/task */
#endif
    while (uv_run(lane->io_loop, UV_RUN_ONCE)) {
        uint64_t spent_ms = (uv_hrtime() - lane->io_woke_ns) / 1000000u;
        unsigned pace = lv_lane_io_pace_ms(lv_h1c_in_flight(lane->io_h1c) + lv_http_in_flight(lane->io_http));
        if (spent_ms < pace)
            uv_sleep((unsigned)(pace - spent_ms));
    }
}

/* Right after the I/O loop's poll returned: when this turn's work began. */
static void on_io_check(uv_check_t *h)
{
    lv_lane_t *lane = h->data;
    lane->io_woke_ns = uv_hrtime();
}

static void on_closed(uv_handle_t *h);

int lv_lane_create(uv_loop_t *main_loop, lv_http_t *main_http, bool threaded, lv_lane_t **out)
{
    int rc = LV_ENOMEM;
    lv_lane_t *lane = calloc(1, sizeof *lane);
    if (!lane)
        return rc;
    lane->main_loop = main_loop;
    lane->threaded = threaded;
    lv_queue_init(&lane->io_q);
    lv_queue_init(&lane->main_q);
    lv_queue_init(&lane->soon_q);
    rc = LV_EIO;
    if (uv_mutex_init(&lane->lock) != 0) {
        free(lane);
        return rc;
    }
    if (uv_async_init(main_loop, &lane->main_async, on_main_async) != 0) {
        uv_mutex_destroy(&lane->lock);
        free(lane);
        return rc;
    }
    lane->main_async.data = lane;
    lane->open_handles = 1; /* from here on the memory goes with on_closed */
    if (!threaded) {
        lane->io_loop = main_loop;
        lane->io_http = main_http;
        if ((rc = lv_h1c_create(main_loop, &lane->io_h1c)) != 0)
            goto fail;
        rc = LV_EIO;
        if (uv_async_init(main_loop, &lane->io_async, on_io_async) != 0)
            goto fail;
        lane->io_async.data = lane;
        lane->open_handles = 2;
        uv_timer_init(main_loop, &lane->soon_timer); /* cannot fail on a live loop */
        lane->soon_timer.data = lane;
        lane->open_handles = 3;
        *out = lane;
        return 0;
    }
    if (uv_loop_init(&lane->own_loop) != 0)
        goto fail;
    lane->io_loop = &lane->own_loop;
    if ((rc = lv_http_create(lane->io_loop, &lane->io_http)) != 0 ||
        (rc = lv_h1c_create(lane->io_loop, &lane->io_h1c)) != 0)
        goto fail_loop;
    rc = LV_EIO;
    if (uv_async_init(lane->io_loop, &lane->io_async, on_io_async) != 0)
        goto fail_loop;
    lane->io_async.data = lane;
    uv_timer_init(lane->io_loop, &lane->soon_timer);
    lane->soon_timer.data = lane;
    uv_check_init(lane->io_loop, &lane->io_check);
    lane->io_check.data = lane;
    uv_check_start(&lane->io_check, on_io_check);
    uv_unref((uv_handle_t *)&lane->io_check); /* it does not keep the loop alive */
    if (uv_thread_create(&lane->thread, io_thread, lane) != 0) {
        uv_close((uv_handle_t *)&lane->io_async, NULL);
        uv_close((uv_handle_t *)&lane->soon_timer, NULL);
        uv_close((uv_handle_t *)&lane->io_check, NULL);
        goto fail_loop;
    }
    *out = lane;
    return 0;
fail_loop:
    /* nothing ran on the thread's loop: let it close what was made there, here */
    if (lane->io_http)
        lv_http_destroy(lane->io_http);
    lv_h1c_destroy(lane->io_h1c);
    uv_run(&lane->own_loop, UV_RUN_DEFAULT);
    uv_loop_close(&lane->own_loop);
fail:
    if (!threaded)
        lv_h1c_destroy(lane->io_h1c); /* closes on the main loop, which runs on (NULL: none made) */
    uv_close((uv_handle_t *)&lane->main_async, on_closed);
    return rc;
}

static void on_closed(uv_handle_t *h)
{
    lv_lane_t *lane = h->data;
    if (--lane->open_handles)
        return;
    uv_mutex_lock(&lane->lock);
    lane->closed = true;
    bool last = lane->live_items == 0;
    uv_mutex_unlock(&lane->lock);
    if (last)
        lane_free(lane);
}

void lv_lane_destroy(lv_lane_t *lane)
{
    if (!lane)
        return;
    uv_mutex_lock(&lane->lock);
    lane->stopping = true;
    uv_mutex_unlock(&lane->lock);
    if (lane->threaded) {
        uv_async_send(&lane->io_async);
        uv_thread_join(&lane->thread);
        if (uv_loop_close(&lane->own_loop) != 0)
            lv_log(LV_LOG_WARN, "lane: the backend I/O loop still had handles at exit");
    } else {
        drain(lane, true, true); /* e.g. cancels: their transfers leave lv_http, timers close */
        flush_soon(lane);
        lv_h1c_destroy(lane->io_h1c);
        lane->io_h1c = NULL;
        uv_close((uv_handle_t *)&lane->io_async, on_closed);
        uv_close((uv_handle_t *)&lane->soon_timer, on_closed);
    }
    drain(lane, false, false); /* their owners are gone: only the references go */
    uv_close((uv_handle_t *)&lane->main_async, on_closed);
}

uv_loop_t *lv_lane_io_loop(lv_lane_t *lane) { return lane->io_loop; }
lv_http_t *lv_lane_io_http(lv_lane_t *lane) { return lane->io_http; }
lv_h1c_t *lv_lane_io_h1c(lv_lane_t *lane) { return lane->io_h1c; }
bool lv_lane_threaded(const lv_lane_t *lane) { return lane->threaded; }
