/* lv_net_int.h - what lv_net.c (listeners, accept, the periodic check, posted work) and lv_sock.c
 * (one socket's I/O) share. Private to those two files. */
#ifndef LV_NET_INT_H
#define LV_NET_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "lv_net.h"
#include "lv_tlist.h"

#define LV__NET_RBUF 65536           /* one read; also the largest input cap */
#define LV__TLS_GATHER 16384         /* one TLS record's worth of small messages per SSL_write */

struct lv_net {
    uv_loop_t *loop;
    lv_net_config_t cfg;
    lv_net_limits_t lim;
    void *ssl_ctx;
    int listen_fd;
    uv_poll_t listen_poll;
    bool listening;
    int port;
    uv_timer_t tick;
    uv_idle_t idle;                  /* runs posted work; active only while there is some */
    lv_tlist_t lists[LV_TMO__COUNT];
    lv_tlist_t write_list;
    lv_queue_t socks;
    lv_queue_t posted;
    size_t n_socks;
    size_t max_conns;
    uint64_t accept_resume_ms;       /* 0 = not paused */
    uint64_t refused_full, refused_pending, last_refuse_log_ms;
    uint64_t forwarded_invalid;      /* lv_net_forwarded_invalid_inc */
    bool shutting_down, done_due, destroyed;
    uint64_t shutdown_deadline_ms;
    void (*done)(void *ud);
    void *done_ud;
    int handles_open;                /* handles whose close callback has not run yet */
    char rbuf[LV__NET_RBUF];         /* every socket reads here first */
    unsigned char tls_scratch[LV__TLS_GATHER];
};

/* lv_net.c */
/** Run s's posted work (s->post_read, s->post_flush) on a later loop turn. */
void lv__net_post(lv_sock_t *s);
/** s (already unlinked and freed) was one of net's sockets: count it out. */
void lv__net_sock_gone(lv_net_t *net);

/* lv_sock.c */
void lv__sock_update_poll(lv_sock_t *s);
/** Posted work: offer buffered input (read), write the queue (flush). */
void lv__sock_run_posted(lv_sock_t *s, bool read, bool flush);

#endif
