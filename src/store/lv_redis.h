/* lv_redis.h - the cluster's Redis client: hiredis's async API on this process's libuv loop
 * (hiredis/adapters/libuv.h), kept connected. Loop thread only.
 *
 * Three connections, because hiredis 0.14 cannot mix modes on one (DESIGN.md, deps-measured.md):
 *   - commands: everything lv_redis_cmd / lv_redis_eval send, pipelined in order;
 *   - pub/sub: the channels given to lv_redis_subscribe (opened at the first subscribe);
 *   - blocking: one BLPOP at a time (lv_redis_blpop; opened at the first call).
 * Each connects on create and reconnects by itself after any loss (backoff 100 ms doubling to
 * 2 s, reset by a good connection); AUTH and SELECT from the URL are sent first on each, then a
 * PING: a connection is ready once that answers. An attempt (name resolution, TCP, handshake)
 * that takes longer than connect_timeout_ms is given up and retried. A host name is resolved on
 * libuv's thread pool, never on the loop. A subscriber is subscribed again to all its channels
 * after a reconnect. `up` is the command connection's state: on_state hears each change
 * (false -> true after AUTH/SELECT succeeded, true -> false on loss), never twice the same value,
 * and nothing at close. A command left unanswered for 5 s (or a BLPOP 5 s past its own timeout)
 * counts as a loss: a stopped server or a partition is noticed in seconds, not in TCP's minutes,
 * so never send a blocking command (BLPOP, WAIT, ...) through lv_redis_cmd. Logs: one line when
 * a connection goes down and one when it is back (then one a minute while it stays down), with the
 * URL as lv_redisurl_clean prints it.
 *
 * Callbacks: a command that lv_redis_cmd accepted (returned 0) gets its callback EXACTLY ONCE: with
 * the reply, or with reply NULL and err set ("connection lost", "closing"; a Redis error reply is
 * NOT an err: it is a reply of type REDIS_REPLY_ERROR). The reply is borrowed for the call. A
 * callback never runs inside the call that accepted its command. A callback (and on_state,
 * on_message) may issue new commands, and may even call lv_redis_close: hiredis's contexts are
 * freed later, from the loop, never under one of its own callbacks.
 * While down, lv_redis_cmd refuses at once (LV_ECLOSED, callback not called): callers decide
 * (fail the job, report degraded) instead of commands piling up; at most LV_REDIS_PENDING_MAX
 * commands (the BLPOP included) wait for replies (LV_ELIMIT past it).
 *
 * Scripts: lv_redis_script_add registers Lua text once (its SHA-1 computed here); lv_redis_eval
 * sends EVALSHA and, on a NOSCRIPT reply (a restarted Redis), SCRIPT LOAD + EVALSHA again before
 * the callback runs; the caller sees one reply.
 *
 * Ownership: lv_redis_create returns the client, owned by the caller; lv_redis_close fails every
 * pending callback (reply NULL, err "closing") before it returns and frees the rest once libuv has
 * closed the handles: the loop must run after it (until it has nothing left) for the memory to
 * go. The password comes from the URL or, when the URL has none, from LIVEVLM_REDIS_PASSWORD
 * (read by lv_redis_create); it is never logged. */
#ifndef LV_REDIS_H
#define LV_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "lv_redisurl.h"

#define LV_REDIS_PENDING_MAX 200000
#define LV_REDIS_SCRIPTS_MAX 16
#define LV_REDIS_CHANNELS_MAX 16

typedef struct lv_redis lv_redis_t;

/** One command's outcome: reply (borrowed) or NULL with err (a static sentence). */
typedef void (*lv_redis_reply_fn)(void *ud, const redisReply *reply, const char *err);

typedef struct {
    const char *name;       /* for logs: "frontend 3fa2c1", "worker 9b01aa" (copied) */
    int connect_timeout_ms; /* <= 0: 2000 */
    void *ud;
    /** The command connection went up (true) or down (false). May be NULL. */
    void (*on_state)(void *ud, bool up);
    /** A message on a subscribed channel (payload binary-safe, borrowed). May be NULL. */
    void (*on_message)(void *ud, const char *channel, const char *payload, size_t len);
} lv_redis_cfg_t;

typedef struct {
    bool up;
    uint64_t commands;   /* sent */
    uint64_t errors;     /* callbacks with err set */
    uint64_t reconnects; /* successful connects after the first, all connections */
    size_t pending;      /* commands waiting for replies now */
    uint64_t messages;   /* pub/sub messages received */
} lv_redis_stats_t;

/** Start connecting (returns before the connection is up). url is copied. LV_ENOMEM. */
int lv_redis_create(uv_loop_t *loop, const lv_redisurl_t *url, const lv_redis_cfg_t *cfg, lv_redis_t **out);
/** Fail what is pending, close the connections, free once the handles are closed. NULL ignored. */
void lv_redis_close(lv_redis_t *r);
bool lv_redis_up(const lv_redis_t *r);
void lv_redis_stats(const lv_redis_t *r, lv_redis_stats_t *out);

/** Send one command given as argv (binary-safe). cb may be NULL (the reply is dropped). 0, or
 * LV_ECLOSED (down), LV_ELIMIT (too many pending), LV_ENOMEM, LV_EINVAL (argc < 1). */
int lv_redis_cmd(lv_redis_t *r, lv_redis_reply_fn cb, void *ud, int argc, const char **argv, const size_t *argvlen);
/** The same with hiredis's printf-like format ("%s", "%b" for binary + length, "%d"...). */
int lv_redis_cmdf(lv_redis_t *r, lv_redis_reply_fn cb, void *ud, const char *fmt, ...);

/** Register a script (lua is copied); *id is its handle for lv_redis_eval. LV_ELIMIT, LV_ENOMEM. */
int lv_redis_script_add(lv_redis_t *r, const char *lua, int *id);
/** EVALSHA script id with nkeys keys then the rest of argv as ARGV (argc = nkeys + number of args;
 * argv/argvlen are binary-safe and copied before the call returns). Same returns as lv_redis_cmd. */
int lv_redis_eval(lv_redis_t *r, int id, lv_redis_reply_fn cb, void *ud, int nkeys, int argc, const char **argv,
                  const size_t *argvlen);

/** Subscribe to channel (copied; kept across reconnects; subscribing twice is one subscription).
 * Returns before the subscription is in place (no confirmation is reported). LV_EINVAL for an
 * empty name or one over 256 bytes, LV_ELIMIT past LV_REDIS_CHANNELS_MAX, LV_ECLOSED closing. */
int lv_redis_subscribe(lv_redis_t *r, const char *channel);

/** BLPOP key timeout_s on the blocking connection. One at a time: LV_EAGAIN while one is pending
 * (its callback may ask for the next one). LV_ECLOSED while the command connection is down. A
 * BLPOP asked while the blocking connection is (re)opening waits for it and fails with it.
 * cb gets the reply (an array [key, value], or a nil reply on timeout) or NULL + err (lost). */
int lv_redis_blpop(lv_redis_t *r, const char *key, int timeout_s, lv_redis_reply_fn cb, void *ud);

#endif
