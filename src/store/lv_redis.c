/* lv_redis.c - the cluster's Redis client (see lv_redis.h): three hiredis async connections on the
 * loop, each reconnecting by itself, with one request record per accepted command so that its
 * callback runs exactly once whatever happens to the connection. */
#include "lv_redis.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <openssl/evp.h>

#include "lv_common.h"
#include "lv_log.h"
#include "lv_queue.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
#define CONNECT_TIMEOUT_DEFAULT_MS 2000
/* A connection that keeps failing is named again in the log at most this often. */
#define STILL_DOWN_LOG_MS 60000
/* A connection that flaps (up, lost, up...) logs its losses at most this often. */
#define LOST_LOG_MS 10000
/* A command (or a BLPOP past its own timeout) unanswered this long means the server or the path to
 * it is stuck (SIGSTOP, a partition that drops packets: TCP would wait 15 min): the connections
 * are given up and opened again, so callers hear about it. Far above any reply this cluster's
 * commands and scripts take; Redis's own busy-script limit is 5 s too. */
#define REPLY_TIMEOUT_MS 5000
#define WATCHDOG_PERIOD_MS 1000
#define NAME_MAX_BYTES 64
#define CHANNEL_MAX_BYTES 256
#define EVAL_ARGC_MAX (1 << 20)
#define ERR_MAX_BYTES 160

typedef enum { CONN_CMD = 0, CONN_SUB, CONN_BLOCK, CONN_COUNT } conn_kind_t;

static const char *const conn_names[CONN_COUNT] = {"commands", "pub/sub", "blocking"};

typedef enum {
    CONN_OFF = 0,    /* not opened yet (pub/sub, blocking), or closing */
    CONN_WAIT,       /* backing off before the next attempt; ac is NULL */
    CONN_CONNECTING, /* ac set: TCP connect and AUTH / SELECT / PING under way (timer armed) */
    CONN_READY,      /* the handshake answered: commands flow */
} conn_state_t;

typedef struct {
    lv_redis_t *r;
    conn_kind_t kind;
    conn_state_t state;
    bool opened;
    bool ever_ready;
    /* The context in use. Set to NULL the moment it stops being ours: hiredis is freeing it (a
     * loss), or we gave up on it (then it waits in doomed until the reap timer frees it, because
     * hiredis must not free a context from inside one of its callbacks). */
    redisAsyncContext *ac;
    redisAsyncContext *doomed;
    uv_timer_t timer; /* CONNECTING: the connect timeout; WAIT: the backoff */
    uint32_t backoff_ms;
    uint32_t attempt; /* numbers the attempts, so a late name resolution is known as stale */
    /* logging: one line when an outage starts and one when it ends, not one per attempt */
    bool outage;
    bool outage_logged;
    uint64_t outage_since_ms;
    uint64_t next_still_log_ms;
    uint64_t last_lost_log_ms;
    uint32_t failures;
} conn_t;

/* One accepted command. hiredis holds it as privdata from the send until its callback runs (with
 * the reply, or NULL when the context is freed), and that callback alone frees it. `owed` says the
 * user's callback has not run yet; close runs it early ("closing") and leaves the record to
 * hiredis. A BLPOP held until the blocking connection is ready is not sent (sent false). */
typedef struct {
    lv_queue_t link; /* r->reqs while owed */
    lv_redis_t *r;
    lv_redis_reply_fn cb;
    void *ud;
    conn_kind_t kind;
    bool owed;
    bool sent;
    bool retried;
    int script; /* eval: the script id (for NOSCRIPT); -1 otherwise */
    char *cmd;  /* eval: the formatted EVALSHA, resent after SCRIPT LOAD; blpop: until sent */
    size_t cmd_len;
    uint64_t sent_ms; /* when handed to hiredis (the watchdog's clock) */
    int blpop_timeout_s;
} req_t;

/* A host name resolved on the thread pool: hiredis 0.14 would call getaddrinfo on the loop, and
 * with DNS down that stalls every socket of the process at each retry. Outlives its attempt (and
 * the client: close detaches it) until libuv calls back. */
typedef struct {
    uv_getaddrinfo_t req;
    lv_queue_t link; /* r->resolving while its connection waits for it */
    conn_t *c;       /* NULL once detached */
    uint32_t attempt;
} resolve_t;

typedef struct {
    char *lua;
    char sha[41];
} script_t;

struct lv_redis {
    uv_loop_t *loop;
    lv_redisurl_t url;
    char url_clean[LV_REDISURL_MAX + 16];
    char name[NAME_MAX_BYTES];
    lv_redis_cfg_t cfg;
    uint64_t connect_timeout_ms;
    conn_t conn[CONN_COUNT];
    uv_timer_t reap;     /* frees doomed contexts outside hiredis's callbacks */
    uv_timer_t watchdog; /* REPLY_TIMEOUT_MS */
    lv_queue_t resolving;
    int handles_open;
    bool closing;
    bool up;
    lv_queue_t reqs; /* owed requests, oldest first */
    req_t *blpop;    /* the one BLPOP accepted and not yet answered */
    script_t scripts[LV_REDIS_SCRIPTS_MAX];
    int nscripts;
    char *channels[LV_REDIS_CHANNELS_MAX];
    int nchannels;
    uint64_t next_script_log_ms;
    lv_redis_stats_t stats;
};

static void conn_connect(conn_t *c);
static void conn_timer_cb(uv_timer_t *t);

/* ---------- the libuv adapter ----------
 * hiredis 0.14's adapters/libuv.h is followed here with one change: libuv reports a socket error
 * (POLLERR: a refused connect, a reset) as a negative status with no events and stops the handle,
 * and that adapter returns on any status, so hiredis never learns and the connection hangs (a
 * refused connect until the connect timer, a reset one for ever). Here hiredis is handed the
 * events it waits for, so its read or write meets the error itself (as hiredis 1.x does). */

typedef struct {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up: the context may be gone */
    uv_poll_t poll;
    int events;
} ev_t;

static void ev_poll_cb(uv_poll_t *h, int status, int events)
{
    ev_t *p = h->data;
    int ev = status < 0 ? p->events : events;
    if (p->ac && (ev & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
    /* libuv stopped the handle on the error; a context still alive still waits for its events */
    if (status < 0 && p->ac && p->events)
        uv_poll_start(&p->poll, p->events, ev_poll_cb);
}

static void ev_update(ev_t *p)
{
    if (p->events)
        uv_poll_start(&p->poll, p->events, ev_poll_cb);
    else
        uv_poll_stop(&p->poll);
}

static void ev_add_read(void *d)
{
    ev_t *p = d;
    p->events |= UV_READABLE;
    ev_update(p);
}

static void ev_del_read(void *d)
{
    ev_t *p = d;
    p->events &= ~UV_READABLE;
    ev_update(p);
}

static void ev_add_write(void *d)
{
    ev_t *p = d;
    p->events |= UV_WRITABLE;
    ev_update(p);
}

static void ev_del_write(void *d)
{
    ev_t *p = d;
    p->events &= ~UV_WRITABLE;
    ev_update(p);
}

static void ev_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Called by hiredis when it frees the context (before it closes the socket). */
static void ev_cleanup(void *d)
{
    ev_t *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    ev_t *p = calloc(1, sizeof(*p));
    if (!p)
        return LV_ENOMEM;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return LV_EIO;
    }
    p->poll.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ---------- requests ---------- */

static req_t *req_new(lv_redis_t *r, conn_kind_t kind, lv_redis_reply_fn cb, void *ud)
{
    req_t *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    lv_queue_init(&q->link);
    q->r = r;
    q->kind = kind;
    q->cb = cb;
    q->ud = ud;
    q->script = -1;
    return q;
}

static void req_free(req_t *q)
{
    if (!q)
        return;
    if (q->cmd)
        redisFreeCommand(q->cmd);
    free(q);
}

/* Accounting for an accepted request (after hiredis took it, or held). */
static void req_owe(lv_redis_t *r, req_t *q)
{
    q->owed = true;
    lv_queue_insert_tail(&r->reqs, &q->link);
    r->stats.pending++;
    r->stats.commands++;
}

/* Undo req_owe when the send failed before the caller heard 0. */
static void req_unowe(lv_redis_t *r, req_t *q)
{
    q->owed = false;
    lv_queue_remove(&q->link);
    r->stats.pending--;
    r->stats.commands--;
}

/* Run the user's callback, once. The record itself stays where it is (hiredis or the caller frees). */
static void req_finish(req_t *q, const redisReply *reply, const char *err)
{
    if (!q->owed)
        return;
    lv_redis_t *r = q->r;
    q->owed = false;
    lv_queue_remove(&q->link);
    r->stats.pending--;
    if (err)
        r->stats.errors++;
    if (r->blpop == q)
        r->blpop = NULL; /* before the callback, which may ask for the next one */
    if (q->cb)
        q->cb(q->ud, reply, err);
}

/* ---------- connection state ---------- */

static void set_up(lv_redis_t *r, bool up)
{
    if (r->up == up)
        return;
    r->up = up;
    if (r->cfg.on_state)
        r->cfg.on_state(r->cfg.ud, up);
}

static void fail_held_blpop(lv_redis_t *r, const char *err)
{
    req_t *q = r->blpop;
    if (!q || q->sent)
        return; /* a sent one hears from hiredis */
    r->blpop = NULL;
    req_finish(q, NULL, err);
    req_free(q);
}

/* The attempt or the connection ended (c->ac already detached): log, report, retry later. */
static void conn_down(conn_t *c, const char *why)
{
    lv_redis_t *r = c->r;
    bool was_ready = c->state == CONN_READY;
    uv_timer_stop(&c->timer);
    if (r->closing) {
        c->state = CONN_OFF;
        return;
    }
    c->state = CONN_WAIT;
    uint64_t now = lv_now_ms();
    if (!c->outage) {
        c->outage = true;
        c->outage_since_ms = now;
        c->failures = 0;
        c->next_still_log_ms = now + STILL_DOWN_LOG_MS;
        c->outage_logged = true;
        if (was_ready && c->last_lost_log_ms && now - c->last_lost_log_ms < LOST_LOG_MS) {
            c->outage_logged = false; /* flapping: said a moment ago */
            LV_DEBUG("redis %s: %s connection to %s lost again (%s)", r->name, conn_names[c->kind], r->url_clean, why);
        } else if (was_ready) {
            c->last_lost_log_ms = now;
            LV_WARN("redis %s: %s connection to %s lost (%s); reconnecting", r->name, conn_names[c->kind], r->url_clean,
                    why);
        } else {
            LV_WARN("redis %s: cannot open the %s connection to %s (%s); retrying", r->name, conn_names[c->kind],
                    r->url_clean, why);
        }
    } else if (now >= c->next_still_log_ms) {
        c->next_still_log_ms = now + STILL_DOWN_LOG_MS;
        c->outage_logged = true;
        LV_WARN("redis %s: %s connection to %s still down after %.0f s, %u attempts (%s)", r->name, conn_names[c->kind],
                r->url_clean, (double)(now - c->outage_since_ms) / 1000.0, c->failures + !was_ready, why);
    } else {
        LV_DEBUG("redis %s: %s connection attempt failed (%s)", r->name, conn_names[c->kind], why);
    }
    if (!was_ready)
        c->failures++; /* attempts, not the loss itself */
    uv_timer_start(&c->timer, conn_timer_cb, c->backoff_ms, 0);
    c->backoff_ms = LV_MIN(c->backoff_ms * 2, BACKOFF_MAX_MS);
    /* last: the callbacks below may do anything, lv_redis_close included */
    if (c->kind == CONN_CMD)
        set_up(r, false);
    else if (c->kind == CONN_BLOCK)
        fail_held_blpop(r, "connection lost");
}

/* hiredis is freeing c->ac by itself (a lost connection, a failed connect): forget it. */
static void conn_gone(conn_t *c, const char *why)
{
    c->ac = NULL;
    conn_down(c, why);
}

static void reap_cb(uv_timer_t *t)
{
    lv_redis_t *r = t->data;
    for (int i = 0; i < CONN_COUNT; i++) {
        redisAsyncContext *ac = r->conn[i].doomed;
        r->conn[i].doomed = NULL;
        if (ac)
            redisAsyncFree(ac); /* its pending callbacks run now, with NULL */
    }
}

/* We give up on c->ac (connect timeout, a refused handshake): hiredis frees it from the reap
 * timer, never from inside one of its own callbacks (where this may run). */
static void conn_abort(conn_t *c, const char *why)
{
    lv_redis_t *r = c->r;
    if (c->ac) {
        c->doomed = c->ac; /* at most one: a new ac is made only after the reap (conn_connect) */
        c->ac = NULL;
        if (!r->closing)
            uv_timer_start(&r->reap, reap_cb, 0, 0);
    }
    conn_down(c, why);
}

/* ---------- hiredis callbacks ---------- */

static bool is_error(const redisReply *reply, const char *prefix)
{
    return reply->type == REDIS_REPLY_ERROR && reply->str && strncmp(reply->str, prefix, strlen(prefix)) == 0;
}

/* The context's own error text (hiredis copies it to ac->errstr only after the connect callback). */
static const char *ac_why(const redisAsyncContext *ac, const char *fallback)
{
    return ac->c.err && ac->c.errstr[0] ? ac->c.errstr : fallback;
}

static void on_script_load(redisAsyncContext *ac, void *reply_, void *priv)
{
    lv_redis_t *r = priv;
    const redisReply *reply = reply_;
    (void)ac;
    if (!reply || reply->type != REDIS_REPLY_ERROR || r->closing)
        return;
    /* the EVALSHA behind it answers NOSCRIPT again; this line says why (a script Redis refuses) */
    uint64_t now = lv_now_ms();
    if (now >= r->next_script_log_ms) {
        r->next_script_log_ms = now + STILL_DOWN_LOG_MS;
        LV_WARN("redis %s: SCRIPT LOAD refused: %.200s", r->name, reply->str ? reply->str : "");
    }
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *priv);

/* NOSCRIPT: this Redis has not seen the script (restarted, SCRIPT FLUSH). Load it and send the
 * same EVALSHA again, pipelined behind the load on the same connection, so it runs after it. */
static int eval_retry(lv_redis_t *r, redisAsyncContext *ac, req_t *q)
{
    const script_t *s = &r->scripts[q->script];
    q->retried = true;
    if (redisAsyncCommand(ac, on_script_load, r, "SCRIPT LOAD %s", s->lua) != REDIS_OK)
        return LV_ECLOSED;
    if (redisAsyncFormattedCommand(ac, on_reply, q, q->cmd, q->cmd_len) != REDIS_OK)
        return LV_ECLOSED;
    return 0;
}

/* Every accepted command's reply, or NULL when hiredis frees its context: the one place that
 * frees a sent request. */
static void on_reply(redisAsyncContext *ac, void *reply_, void *priv)
{
    req_t *q = priv;
    lv_redis_t *r = q->r;
    conn_t *c = &r->conn[q->kind];
    const redisReply *reply = reply_;
    if (!reply) {
        /* hiredis is failing what the context had pending: the first one tells us the connection
         * is gone, before its disconnect callback, so a callback below already sees it down */
        if (c->ac == ac)
            conn_gone(c, ac_why(ac, "connection lost"));
        req_finish(q, NULL, r->closing ? "closing" : "connection lost");
        req_free(q);
        return;
    }
    if (q->script >= 0 && !q->retried && q->owed && is_error(reply, "NOSCRIPT") && c->ac == ac && !r->closing) {
        if (eval_retry(r, ac, q) == 0)
            return; /* hiredis holds q again */
        req_finish(q, NULL, "connection lost");
        req_free(q);
        return;
    }
    req_finish(q, reply, NULL);
    req_free(q);
}

static void on_message(redisAsyncContext *ac, void *reply_, void *priv)
{
    conn_t *c = priv;
    lv_redis_t *r = c->r;
    const redisReply *reply = reply_;
    /* NULL: hiredis frees the context and calls each channel's callback once; the loss itself is
     * seen by the disconnect callback */
    if (!reply || r->closing || c->ac != ac)
        return;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 && reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING && reply->element[2]->type == REDIS_REPLY_STRING &&
        strcmp(reply->element[0]->str, "message") == 0) {
        r->stats.messages++;
        if (r->cfg.on_message)
            r->cfg.on_message(r->cfg.ud, reply->element[1]->str, reply->element[2]->str, reply->element[2]->len);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR)
        LV_WARN("redis %s: SUBSCRIBE refused: %.200s", r->name, reply->str ? reply->str : "");
    /* else a subscribe confirmation */
}

static void conn_send_subscribe(conn_t *c, const char *channel)
{
    if (redisAsyncCommand(c->ac, on_message, c, "SUBSCRIBE %s", channel) != REDIS_OK)
        conn_abort(c, "SUBSCRIBE could not be sent");
}

static int blpop_send(lv_redis_t *r)
{
    conn_t *c = &r->conn[CONN_BLOCK];
    req_t *q = r->blpop;
    if (redisAsyncFormattedCommand(c->ac, on_reply, q, q->cmd, q->cmd_len) != REDIS_OK)
        return LV_ECLOSED;
    q->sent = true;
    q->sent_ms = lv_now_ms();
    return 0;
}

static void conn_ready(conn_t *c)
{
    lv_redis_t *r = c->r;
    uv_timer_stop(&c->timer);
    c->state = CONN_READY;
    c->backoff_ms = BACKOFF_FIRST_MS;
    if (c->ever_ready)
        r->stats.reconnects++;
    if (c->outage && c->outage_logged)
        LV_INFO("redis %s: %s connection to %s is back after %.1f s (%u attempt(s) failed)", r->name,
                conn_names[c->kind], r->url_clean, (double)(lv_now_ms() - c->outage_since_ms) / 1000.0, c->failures);
    else if (!c->ever_ready)
        LV_INFO("redis %s: %s connection to %s is up", r->name, conn_names[c->kind], r->url_clean);
    c->ever_ready = true;
    c->outage = false;
    switch (c->kind) {
    case CONN_CMD:
        set_up(r, true);
        break;
    case CONN_SUB:
        for (int i = 0; i < r->nchannels && c->state == CONN_READY; i++)
            conn_send_subscribe(c, r->channels[i]);
        break;
    case CONN_BLOCK:
        if (r->blpop && !r->blpop->sent && blpop_send(r) != 0)
            fail_held_blpop(r, "connection lost");
        break;
    default:
        break;
    }
}

/* AUTH and SELECT: an error reply ends the attempt (a wrong password is retried with backoff, as
 * the operator may be fixing it; the log says Redis's reason). */
static void on_handshake_step(redisAsyncContext *ac, void *reply_, void *priv)
{
    conn_t *c = priv;
    const redisReply *reply = reply_;
    if (c->ac != ac || c->r->closing)
        return; /* an attempt already given up */
    if (!reply) {
        conn_gone(c, ac_why(ac, "connection lost"));
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[ERR_MAX_BYTES];
        snprintf(why, sizeof(why), "Redis answered the handshake: %.120s", reply->str ? reply->str : "error");
        conn_abort(c, why);
    }
}

/* PING, the last of the handshake: its answer means AUTH and SELECT were taken. */
static void on_handshake_done(redisAsyncContext *ac, void *reply_, void *priv)
{
    conn_t *c = priv;
    const redisReply *reply = reply_;
    if (c->ac != ac || c->r->closing || c->state != CONN_CONNECTING)
        return;
    if (!reply) {
        conn_gone(c, ac_why(ac, "connection lost"));
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[ERR_MAX_BYTES];
        snprintf(why, sizeof(why), "Redis answered PING: %.120s", reply->str ? reply->str : "error");
        conn_abort(c, why);
        return;
    }
    conn_ready(c);
}

/* hiredis 0.14 runs this outside its callback guard: never free the context here. On failure
 * hiredis frees it right after we return. */
static void on_connect(const redisAsyncContext *ac, int status)
{
    conn_t *c = ac->data;
    if (status == REDIS_OK) {
        /* TCP only: on a Unix socket hiredis would flag the context with the setsockopt error */
        if (c->ac == ac && !c->r->url.is_unix)
            redisEnableKeepAlive(&c->ac->c);
        return;
    }
    if (c->doomed == ac)
        c->doomed = NULL; /* hiredis frees it, not the reap */
    if (c->ac == ac)
        conn_gone(c, ac_why(ac, "connect failed"));
}

/* A connected context is being freed: by hiredis on a loss (c->ac still names it), or by us. */
static void on_disconnect(const redisAsyncContext *ac, int status)
{
    conn_t *c = ac->data;
    (void)status;
    if (c->doomed == ac)
        c->doomed = NULL;
    if (c->ac == ac)
        conn_gone(c, ac_why(ac, "connection closed"));
}

/* ---------- connecting ---------- */

static void conn_timer_cb(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->r->closing)
        return;
    if (c->state == CONN_CONNECTING) {
        char why[ERR_MAX_BYTES];
        snprintf(why, sizeof(why), "no answer within %llu ms", (unsigned long long)c->r->connect_timeout_ms);
        conn_abort(c, why);
    } else if (c->state == CONN_WAIT) {
        conn_connect(c);
    }
}

/* Queue AUTH, SELECT and PING on a context still connecting (hiredis writes them once connected). */
static int conn_send_handshake(conn_t *c)
{
    const lv_redisurl_t *u = &c->r->url;
    redisAsyncContext *ac = c->ac;
    if (u->password[0]) {
        int rc = u->user[0] ? redisAsyncCommand(ac, on_handshake_step, c, "AUTH %s %s", u->user, u->password)
                            : redisAsyncCommand(ac, on_handshake_step, c, "AUTH %s", u->password);
        if (rc != REDIS_OK)
            return LV_ENOMEM;
    }
    if (u->db > 0 && redisAsyncCommand(ac, on_handshake_step, c, "SELECT %d", u->db) != REDIS_OK)
        return LV_ENOMEM;
    /* the scripts, so that a new or restarted Redis does not answer NOSCRIPT to each eval already
     * in flight when up is reported (a refusal is logged; the eval's own reload remains) */
    for (int i = 0; c->kind == CONN_CMD && i < c->r->nscripts; i++)
        if (redisAsyncCommand(ac, on_script_load, c->r, "SCRIPT LOAD %s", c->r->scripts[i].lua) != REDIS_OK)
            return LV_ENOMEM;
    if (redisAsyncCommand(ac, on_handshake_done, c, "PING") != REDIS_OK)
        return LV_ENOMEM;
    return 0;
}

/* Open a context to addr (an IP literal or the socket path) for the attempt under way. */
static void conn_open_context(conn_t *c, const char *addr)
{
    lv_redis_t *r = c->r;
    char why[ERR_MAX_BYTES];
    redisAsyncContext *ac = r->url.is_unix ? redisAsyncConnectUnix(addr) : redisAsyncConnect(addr, r->url.port);
    if (!ac) {
        conn_down(c, "out of memory");
        return;
    }
    if (ac->err) {
        snprintf(why, sizeof(why), "%s", ac_why(ac, "connect failed"));
        redisAsyncFree(ac); /* never connected, no callback of ours attached yet */
        conn_down(c, why);
        return;
    }
    ac->data = c;
    if (ev_attach(ac, r->loop) != 0) {
        redisAsyncFree(ac);
        conn_down(c, "cannot watch the socket");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    if (conn_send_handshake(c) != 0)
        conn_abort(c, "out of memory");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve_t *rs = LV_CONTAINER_OF(req, resolve_t, req);
    conn_t *c = rs->c;
    if (c)
        lv_queue_remove(&rs->link);
    if (!c || c->r->closing || rs->attempt != c->attempt || c->state != CONN_CONNECTING || c->ac)
        goto out; /* detached, or its attempt timed out meanwhile */
    if (status < 0) {
        char why[ERR_MAX_BYTES];
        snprintf(why, sizeof(why), "the host name does not resolve: %s", uv_strerror(status));
        conn_down(c, why);
        goto out;
    }
    /* IPv4 first (as hiredis 0.14 itself tries), then IPv6; each failed attempt takes the next
     * address, so one dead address of a name does not stop the others from being tried */
    int n = 0;
    for (const struct addrinfo *a = res; a; a = a->ai_next)
        n += a->ai_family == AF_INET || a->ai_family == AF_INET6;
    if (n == 0) {
        conn_down(c, "the host name has no IPv4 or IPv6 address");
        goto out;
    }
    int want = (int)(c->failures % (uint32_t)n), i = 0;
    char ip[INET6_ADDRSTRLEN] = "";
    for (int pass = 0; pass < 2 && !ip[0]; pass++) {
        int family = pass == 0 ? AF_INET : AF_INET6;
        for (const struct addrinfo *a = res; a && !ip[0]; a = a->ai_next) {
            if (a->ai_family != family || i++ != want)
                continue;
            const void *sa = family == AF_INET ? (const void *)&((const struct sockaddr_in *)a->ai_addr)->sin_addr
                                               : (const void *)&((const struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
            if (!inet_ntop(family, sa, ip, sizeof(ip)))
                ip[0] = '\0';
        }
    }
    if (!ip[0])
        conn_down(c, "the host name's address cannot be used");
    else
        conn_open_context(c, ip);
out:
    uv_freeaddrinfo(res);
    free(rs);
}

static bool is_ip_literal(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* One attempt: the connect timer covers it all (name, TCP, AUTH, SELECT, PING). */
static void conn_connect(conn_t *c)
{
    lv_redis_t *r = c->r;
    if (c->doomed) {
        /* not inside its callbacks: we run from a timer or a fresh API call */
        redisAsyncContext *old = c->doomed;
        c->doomed = NULL;
        redisAsyncFree(old);
    }
    c->opened = true;
    c->state = CONN_CONNECTING;
    c->attempt++;
    uv_timer_start(&c->timer, conn_timer_cb, r->connect_timeout_ms, 0);
    if (r->url.is_unix) {
        conn_open_context(c, r->url.path);
        return;
    }
    if (is_ip_literal(r->url.host)) {
        conn_open_context(c, r->url.host);
        return;
    }
    resolve_t *rs = calloc(1, sizeof(*rs));
    if (!rs) {
        conn_down(c, "out of memory");
        return;
    }
    rs->c = c;
    rs->attempt = c->attempt;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    int rc = uv_getaddrinfo(r->loop, &rs->req, on_resolved, r->url.host, NULL, &hints);
    if (rc != 0) {
        free(rs);
        char why[ERR_MAX_BYTES];
        snprintf(why, sizeof(why), "the host name cannot be resolved: %s", uv_strerror(rc));
        conn_down(c, why);
        return;
    }
    lv_queue_insert_tail(&r->resolving, &rs->link);
}

/* ---------- the watchdog ---------- */

static void watchdog_cb(uv_timer_t *t)
{
    lv_redis_t *r = t->data;
    if (r->closing)
        return;
    uint64_t now = lv_now_ms();
    char why[ERR_MAX_BYTES];
    /* commands are answered in order: the oldest owed one (the list's first but for the one
     * BLPOP, which has its own connection) says whether the connection still moves */
    const req_t *oldest = NULL;
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &r->reqs)
    {
        const req_t *q = LV_CONTAINER_OF(n, req_t, link);
        if (q->kind == CONN_CMD) {
            oldest = q;
            break;
        }
    }
    if (r->conn[CONN_CMD].state == CONN_READY && oldest && oldest->sent && now - oldest->sent_ms > REPLY_TIMEOUT_MS) {
        snprintf(why, sizeof(why), "no reply for %.1f s", (double)(now - oldest->sent_ms) / 1000.0);
        /* the others most likely hang on the same path: open them all again, commands last (its
         * on_state callback may do anything) */
        for (int i = CONN_COUNT - 1; i >= 0; i--)
            if (r->conn[i].state == CONN_READY)
                conn_abort(&r->conn[i], why);
        return;
    }
    const req_t *b = r->blpop;
    if (r->conn[CONN_BLOCK].state == CONN_READY && b && b->sent && b->blpop_timeout_s > 0 &&
        now - b->sent_ms > (uint64_t)b->blpop_timeout_s * 1000 + REPLY_TIMEOUT_MS) {
        snprintf(why, sizeof(why), "BLPOP unanswered %d s past its timeout", REPLY_TIMEOUT_MS / 1000);
        conn_abort(&r->conn[CONN_BLOCK], why);
    }
}

/* ---------- the API ---------- */

int lv_redis_create(uv_loop_t *loop, const lv_redisurl_t *url, const lv_redis_cfg_t *cfg, lv_redis_t **out)
{
    *out = NULL;
    if (!loop || !url || !cfg)
        return LV_EINVAL;
    lv_redis_t *r = calloc(1, sizeof(*r));
    if (!r)
        return LV_ENOMEM;
    r->loop = loop;
    r->url = *url;
    if (!r->url.password[0]) {
        /* a password kept off the command line and out of the URL (lv_redisurl.h) */
        const char *pw = getenv("LIVEVLM_REDIS_PASSWORD");
        if (pw && *pw)
            snprintf(r->url.password, sizeof(r->url.password), "%s", pw);
    }
    lv_redisurl_clean(&r->url, r->url_clean, sizeof(r->url_clean));
    r->cfg = *cfg;
    snprintf(r->name, sizeof(r->name), "%s", cfg->name ? cfg->name : "client");
    r->cfg.name = r->name;
    r->connect_timeout_ms =
        cfg->connect_timeout_ms > 0 ? (uint64_t)cfg->connect_timeout_ms : CONNECT_TIMEOUT_DEFAULT_MS;
    lv_queue_init(&r->reqs);
    lv_queue_init(&r->resolving);
    uv_timer_init(loop, &r->reap);
    r->reap.data = r;
    uv_timer_init(loop, &r->watchdog);
    r->watchdog.data = r;
    uv_timer_start(&r->watchdog, watchdog_cb, WATCHDOG_PERIOD_MS, WATCHDOG_PERIOD_MS);
    uv_unref((uv_handle_t *)&r->watchdog); /* never what keeps a loop running */
    r->handles_open = 2;
    for (int i = 0; i < CONN_COUNT; i++) {
        conn_t *c = &r->conn[i];
        c->r = r;
        c->kind = (conn_kind_t)i;
        c->backoff_ms = BACKOFF_FIRST_MS;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        r->handles_open++;
    }
    conn_connect(&r->conn[CONN_CMD]);
    *out = r;
    return 0;
}

static void free_all(lv_redis_t *r)
{
    for (int i = 0; i < CONN_COUNT; i++) {
        conn_t *c = &r->conn[i];
        redisAsyncContext *ac = c->doomed;
        c->doomed = NULL;
        if (ac)
            redisAsyncFree(ac);
        ac = c->ac;
        c->ac = NULL;
        if (ac)
            redisAsyncFree(ac); /* requests still held by hiredis are freed by on_reply */
    }
    for (int i = 0; i < r->nscripts; i++)
        free(r->scripts[i].lua);
    for (int i = 0; i < r->nchannels; i++)
        free(r->channels[i]);
    free(r);
}

/* The timers are closed first; the contexts (and their poll handles) are freed once they are, from
 * a close callback, which no hiredis callback can be running under. */
static void on_handle_closed(uv_handle_t *h)
{
    lv_redis_t *r = h->data;
    if (--r->handles_open == 0)
        free_all(r);
}

void lv_redis_close(lv_redis_t *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    r->up = false; /* no on_state: the owner is the one closing */
    req_t *held = r->blpop && !r->blpop->sent ? r->blpop : NULL;
    /* every owed callback now; a callback's new command is refused (closing) */
    while (!lv_queue_empty(&r->reqs)) {
        req_t *q = LV_CONTAINER_OF(lv_queue_head(&r->reqs), req_t, link);
        req_finish(q, NULL, "closing");
    }
    req_free(held); /* never given to hiredis: ours to free */
    r->blpop = NULL;
    for (int i = 0; i < CONN_COUNT; i++) {
        conn_t *c = &r->conn[i];
        c->state = CONN_OFF;
        uv_timer_stop(&c->timer);
        c->timer.data = r;
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    }
    uv_timer_stop(&r->reap);
    uv_close((uv_handle_t *)&r->reap, on_handle_closed);
    uv_close((uv_handle_t *)&r->watchdog, on_handle_closed);
    /* a name resolution still on the thread pool frees itself when it returns */
    while (!lv_queue_empty(&r->resolving)) {
        resolve_t *rs = LV_CONTAINER_OF(lv_queue_head(&r->resolving), resolve_t, link);
        lv_queue_remove(&rs->link);
        rs->c = NULL;
        uv_cancel((uv_req_t *)&rs->req);
    }
}

bool lv_redis_up(const lv_redis_t *r)
{
    return r && r->up && !r->closing;
}

void lv_redis_stats(const lv_redis_t *r, lv_redis_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!r)
        return;
    *out = r->stats;
    out->up = lv_redis_up(r);
}

/* Whether a new command may be accepted now. */
static int accept_check(const lv_redis_t *r)
{
    if (r->closing || !r->up || !r->conn[CONN_CMD].ac)
        return LV_ECLOSED;
    if (r->stats.pending >= LV_REDIS_PENDING_MAX)
        return LV_ELIMIT;
    return 0;
}

/* hiredis refuses a command for a context going away, or when it is out of memory. */
static int send_error(const redisAsyncContext *ac)
{
    return ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING) ? LV_ECLOSED : LV_ENOMEM;
}

/* Hand q (with its formatted command) to the command connection. */
static int cmd_send_formatted(lv_redis_t *r, req_t *q, const char *cmd, size_t len)
{
    redisAsyncContext *ac = r->conn[CONN_CMD].ac;
    req_owe(r, q);
    if (redisAsyncFormattedCommand(ac, on_reply, q, cmd, len) != REDIS_OK) {
        req_unowe(r, q);
        return send_error(ac);
    }
    q->sent = true;
    q->sent_ms = lv_now_ms();
    return 0;
}

int lv_redis_cmd(lv_redis_t *r, lv_redis_reply_fn cb, void *ud, int argc, const char **argv, const size_t *argvlen)
{
    if (!r || argc < 1 || !argv)
        return LV_EINVAL;
    int rc = accept_check(r);
    if (rc)
        return rc;
    char *cmd = NULL;
    req_t *q = req_new(r, CONN_CMD, cb, ud);
    if (!q)
        return LV_ENOMEM;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        rc = LV_ENOMEM;
        goto out;
    }
    rc = cmd_send_formatted(r, q, cmd, (size_t)len);
out:
    if (cmd)
        redisFreeCommand(cmd);
    if (rc)
        req_free(q);
    return rc;
}

int lv_redis_cmdf(lv_redis_t *r, lv_redis_reply_fn cb, void *ud, const char *fmt, ...)
{
    if (!r || !fmt)
        return LV_EINVAL;
    int rc = accept_check(r);
    if (rc)
        return rc;
    char *cmd = NULL;
    req_t *q = req_new(r, CONN_CMD, cb, ud);
    if (!q)
        return LV_ENOMEM;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len <= 0) {
        rc = len == -1 ? LV_EINVAL : LV_ENOMEM;
        goto out;
    }
    rc = cmd_send_formatted(r, q, cmd, (size_t)len);
out:
    if (cmd)
        redisFreeCommand(cmd);
    if (rc)
        req_free(q);
    return rc;
}

int lv_redis_script_add(lv_redis_t *r, const char *lua, int *id)
{
    if (!r || !lua || !id)
        return LV_EINVAL;
    if (r->nscripts >= LV_REDIS_SCRIPTS_MAX)
        return LV_ELIMIT;
    script_t *s = &r->scripts[r->nscripts];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t n = strlen(lua);
    if (EVP_Digest(lua, n, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return LV_ENOMEM;
    s->lua = malloc(n + 1);
    if (!s->lua)
        return LV_ENOMEM;
    memcpy(s->lua, lua, n + 1);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 20; i++) {
        s->sha[2 * i] = hex[md[i] >> 4];
        s->sha[2 * i + 1] = hex[md[i] & 15];
    }
    s->sha[40] = '\0';
    *id = r->nscripts++;
    return 0;
}

int lv_redis_eval(lv_redis_t *r, int id, lv_redis_reply_fn cb, void *ud, int nkeys, int argc, const char **argv,
                  const size_t *argvlen)
{
    if (!r || id < 0 || id >= r->nscripts || nkeys < 0 || argc < nkeys || argc > EVAL_ARGC_MAX || (argc > 0 && !argv))
        return LV_EINVAL;
    int rc = accept_check(r);
    if (rc)
        return rc;
    const char **av = NULL;
    size_t *al = NULL;
    req_t *q = req_new(r, CONN_CMD, cb, ud);
    if (!q)
        return LV_ENOMEM;
    av = malloc(sizeof(*av) * (size_t)(argc + 3));
    al = malloc(sizeof(*al) * (size_t)(argc + 3));
    if (!av || !al) {
        rc = LV_ENOMEM;
        goto out;
    }
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    av[0] = "EVALSHA";
    al[0] = 7;
    av[1] = r->scripts[id].sha;
    al[1] = 40;
    av[2] = nk;
    al[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    /* the formatted command is the copy of argv a NOSCRIPT retry sends again */
    int len = redisFormatCommandArgv(&q->cmd, argc + 3, av, al);
    if (len < 0) {
        q->cmd = NULL;
        rc = LV_ENOMEM;
        goto out;
    }
    q->cmd_len = (size_t)len;
    q->script = id;
    rc = cmd_send_formatted(r, q, q->cmd, q->cmd_len);
out:
    free(av);
    free(al);
    if (rc)
        req_free(q);
    return rc;
}

int lv_redis_subscribe(lv_redis_t *r, const char *channel)
{
    if (!r || !channel || !channel[0] || strnlen(channel, CHANNEL_MAX_BYTES + 1) > CHANNEL_MAX_BYTES)
        return LV_EINVAL;
    if (r->closing)
        return LV_ECLOSED;
    for (int i = 0; i < r->nchannels; i++)
        if (strcmp(r->channels[i], channel) == 0)
            return 0;
    if (r->nchannels >= LV_REDIS_CHANNELS_MAX)
        return LV_ELIMIT;
    size_t n = strlen(channel);
    char *copy = malloc(n + 1);
    if (!copy)
        return LV_ENOMEM;
    memcpy(copy, channel, n + 1);
    r->channels[r->nchannels++] = copy;
    conn_t *c = &r->conn[CONN_SUB];
    if (!c->opened)
        conn_connect(c); /* subscribes to every channel once ready */
    else if (c->state == CONN_READY)
        conn_send_subscribe(c, copy);
    return 0;
}

int lv_redis_blpop(lv_redis_t *r, const char *key, int timeout_s, lv_redis_reply_fn cb, void *ud)
{
    if (!r || !key || timeout_s < 0)
        return LV_EINVAL;
    if (r->closing || !r->up)
        return LV_ECLOSED;
    if (r->blpop)
        return LV_EAGAIN;
    if (r->stats.pending >= LV_REDIS_PENDING_MAX)
        return LV_ELIMIT;
    req_t *q = req_new(r, CONN_BLOCK, cb, ud);
    if (!q)
        return LV_ENOMEM;
    int len = redisFormatCommand(&q->cmd, "BLPOP %s %d", key, timeout_s);
    if (len < 0) {
        q->cmd = NULL;
        req_free(q);
        return LV_ENOMEM;
    }
    q->cmd_len = (size_t)len;
    q->blpop_timeout_s = timeout_s;
    conn_t *c = &r->conn[CONN_BLOCK];
    req_owe(r, q);
    r->blpop = q;
    if (c->state == CONN_READY) {
        if (blpop_send(r) != 0) {
            int rc = send_error(c->ac);
            r->blpop = NULL;
            req_unowe(r, q);
            req_free(q);
            return rc;
        }
    } else if (!c->opened) {
        /* held until the connection is ready; a failed attempt fails it (conn_down) */
        c->opened = true;
        c->state = CONN_WAIT;
        uv_timer_start(&c->timer, conn_timer_cb, 0, 0);
    }
    return 0;
}
