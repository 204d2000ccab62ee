/* test_redis.c - the cluster's Redis client against a real redis-server started here (a free
 * loopback port, a temp dir, killed at the end): replies in order, binary-safe arguments, EVALSHA
 * with the NOSCRIPT reload, pub/sub, BLPOP, AUTH, a killed and restarted server (callbacks failed
 * once, on_state, re-subscription), a connect refused or never answered, close with commands
 * pending. Every wait runs the loop under a deadline; the servers die with this process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <uv.h>

#include "lv_common.h"
#include "lv_redis.h"
#include "lv_redisurl.h"
#include "redis_fixture.h"

#define WAIT_MS 5000

/* ---------- the loop, under deadlines ---------- */

typedef struct {
    uv_loop_t loop;
    rfx_deadline_t deadline;
    lv_redis_t *r;
    rfx_server_t srv;
    /* what the client told us */
    int states[16];
    int nstates;
    int msgs;
    char last_channel[64];
    char last_payload[64];
    size_t last_len;
    bool close_on_down, close_on_message; /* lv_redis_close from inside those callbacks */
} fx_t;

static fx_t *fx;

/* Run the loop until cond(arg) holds; false when ms passed first. */
static bool run_until(bool (*cond)(void *), void *arg, int ms)
{
    return rfx_run_until(&fx->deadline, cond, arg, ms);
}

static void run_for(int ms)
{
    rfx_run_for(&fx->deadline, ms);
}

static bool is_up(void *arg)
{
    (void)arg;
    return lv_redis_up(fx->r);
}

static bool is_down(void *arg)
{
    (void)arg;
    return !lv_redis_up(fx->r);
}

static void on_state(void *ud, bool up)
{
    fx_t *f = ud;
    if (f->nstates < (int)LV_ARRAY_LEN(f->states))
        f->states[f->nstates] = up;
    f->nstates++;
    if (!up && f->close_on_down) {
        lv_redis_close(f->r);
        f->r = NULL;
    }
}

static void on_message(void *ud, const char *channel, const char *payload, size_t len)
{
    fx_t *f = ud;
    f->msgs++;
    snprintf(f->last_channel, sizeof(f->last_channel), "%s", channel);
    f->last_len = len;
    memcpy(f->last_payload, payload, LV_MIN(len, sizeof(f->last_payload)));
    if (f->close_on_message) {
        lv_redis_close(f->r);
        f->r = NULL;
    }
}

static void client_open(const char *url_text, int connect_timeout_ms)
{
    lv_redisurl_t url;
    const char *why = NULL;
    if (lv_redisurl_parse(url_text, &url, &why) != 0)
        fail_msg("url %s: %s", url_text, why);
    lv_redis_cfg_t cfg = {.name = "test",
                          .connect_timeout_ms = connect_timeout_ms,
                          .ud = fx,
                          .on_state = on_state,
                          .on_message = on_message};
    assert_int_equal(lv_redis_create(&fx->loop, &url, &cfg, &fx->r), 0);
}

static void client_open_port(int port)
{
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    client_open(url, 0);
}

/* Close the client and run the loop until every handle is closed (bounded). */
static void client_close(void)
{
    lv_redis_close(fx->r); /* NULL when a callback closed it */
    fx->r = NULL;
    uint64_t deadline = lv_now_ms() + WAIT_MS;
    /* our deadline timer, stopped, keeps nothing alive: what runs is the client's closing */
    uv_timer_stop(&fx->deadline.timer);
    while (uv_run(&fx->loop, UV_RUN_NOWAIT) != 0) {
        if (lv_now_ms() > deadline)
            fail_msg("handles still open %d ms after lv_redis_close", WAIT_MS);
    }
}

static int setup(void **state)
{
    fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    rfx_deadline_init(&fx->deadline, &fx->loop);
    assert_int_equal(rfx_init(&fx->srv, "redis"), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (fx->r) {
        lv_redis_close(fx->r);
        fx->r = NULL;
    }
    int rc = rfx_loop_close(&fx->loop, &fx->deadline, 1000);
    rfx_cleanup(&fx->srv);
    free(fx);
    fx = NULL;
    assert_int_equal(rc, 0);
    return 0;
}

/* ---------- replies recorded ---------- */

#define REC_MAX 512

typedef struct {
    int calls[REC_MAX]; /* per request: how many times its callback ran */
    int order[REC_MAX]; /* request index in the order of the callbacks */
    int n;              /* callbacks so far */
    int want;
    int errs;
    char err[REC_MAX][16];
    int type[REC_MAX];
    long long integer[REC_MAX];
    char str[REC_MAX][64];
    size_t len[REC_MAX];
    size_t elements[REC_MAX];
    char el1[REC_MAX][64]; /* second element of an array reply */
} rec_t;

typedef struct {
    rec_t *rec;
    int i;
} slot_t;

static slot_t slots[REC_MAX];

static void *slot(rec_t *rec, int i)
{
    slots[i].rec = rec;
    slots[i].i = i;
    return &slots[i];
}

static void on_reply(void *ud, const redisReply *reply, const char *err)
{
    slot_t *s = ud;
    rec_t *rec = s->rec;
    int i = s->i;
    rec->calls[i]++;
    if (rec->n < REC_MAX)
        rec->order[rec->n] = i;
    rec->n++;
    if (err) {
        rec->errs++;
        snprintf(rec->err[i], sizeof(rec->err[i]), "%s", err);
        assert_null(reply);
        return;
    }
    assert_non_null(reply);
    rec->type[i] = reply->type;
    rec->integer[i] = reply->integer;
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_ERROR) {
        rec->len[i] = reply->len;
        memcpy(rec->str[i], reply->str, LV_MIN(reply->len, sizeof(rec->str[i]) - 1));
    }
    if (reply->type == REDIS_REPLY_ARRAY) {
        rec->elements[i] = reply->elements;
        if (reply->elements >= 1 && reply->element[0]->type == REDIS_REPLY_STRING)
            memcpy(rec->str[i], reply->element[0]->str, LV_MIN(reply->element[0]->len, sizeof(rec->str[i]) - 1));
        if (reply->elements >= 2 && reply->element[1]->type == REDIS_REPLY_STRING) {
            rec->len[i] = reply->element[1]->len;
            memcpy(rec->el1[i], reply->element[1]->str, LV_MIN(reply->element[1]->len, sizeof(rec->el1[i]) - 1));
        }
    }
}

static bool rec_done(void *arg)
{
    rec_t *rec = arg;
    return rec->n >= rec->want;
}

static void rec_wait(rec_t *rec, int want)
{
    rec->want = want;
    if (!run_until(rec_done, rec, WAIT_MS))
        fail_msg("%d of %d callbacks within %d ms", rec->n, want, WAIT_MS);
}

static int cmd(rec_t *rec, int i, const char *a0, const char *a1, const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    int argc = a2 ? 3 : a1 ? 2 : 1;
    return lv_redis_cmd(fx->r, on_reply, slot(rec, i), argc, argv, NULL);
}

static void start_and_connect(void)
{
    assert_int_equal(rfx_start(&fx->srv), 0);
    client_open_port(fx->srv.port);
    if (!run_until(is_up, NULL, WAIT_MS))
        fail_msg("not up within %d ms", WAIT_MS);
    assert_int_equal(fx->nstates, 1);
    assert_int_equal(fx->states[0], 1);
}

/* ---------- tests ---------- */

static void commands_in_order(void **state)
{
    (void)state;
    static rec_t rec;
    memset(&rec, 0, sizeof(rec));
    start_and_connect();
    /* binary-safe: NUL, CR LF and a byte over 0x7f in key and value */
    static const char key[] = "k\0\r\n\xff";
    static const char val[] = "v\0a\r\nb\x80";
    const char *argv[3] = {"SET", key, val};
    size_t lens[3] = {3, sizeof(key) - 1, sizeof(val) - 1};
    assert_int_equal(lv_redis_cmd(fx->r, on_reply, slot(&rec, 0), 3, argv, lens), 0);
    const char *gargv[2] = {"GET", key};
    size_t glens[2] = {3, sizeof(key) - 1};
    assert_int_equal(lv_redis_cmd(fx->r, on_reply, slot(&rec, 1), 2, gargv, glens), 0);
    /* the format form, %b binary */
    assert_int_equal(lv_redis_cmdf(fx->r, on_reply, slot(&rec, 2), "STRLEN %b", key, sizeof(key) - 1), 0);
    /* a pipeline of 300 INCRs: callbacks in order, values 1..300 */
    for (int i = 3; i < 303; i++)
        assert_int_equal(cmd(&rec, i, "INCR", "counter", NULL), 0);
    /* a Redis error reply is a reply, not an err */
    assert_int_equal(cmd(&rec, 303, "NOSUCHCOMMAND", NULL, NULL), 0);
    /* cb NULL: accepted, reply dropped */
    assert_int_equal(lv_redis_cmd(fx->r, NULL, NULL, 1, (const char *[]){"PING"}, NULL), 0);
    assert_int_equal(cmd(&rec, 304, "PING", NULL, NULL), 0);
    assert_int_equal(lv_redis_cmd(fx->r, on_reply, NULL, 0, argv, NULL), LV_EINVAL);
    lv_redis_stats_t st;
    lv_redis_stats(fx->r, &st);
    assert_int_equal(st.pending, 306);
    rec_wait(&rec, 305);
    run_for(50); /* nothing more comes */
    assert_int_equal(rec.n, 305);
    for (int i = 0; i < 305; i++) {
        assert_int_equal(rec.calls[i], 1);
        assert_int_equal(rec.order[i], i);
    }
    assert_int_equal(rec.errs, 0);
    assert_int_equal(rec.type[0], REDIS_REPLY_STATUS);
    assert_string_equal(rec.str[0], "OK");
    assert_int_equal(rec.type[1], REDIS_REPLY_STRING);
    assert_int_equal(rec.len[1], sizeof(val) - 1);
    assert_memory_equal(rec.str[1], val, sizeof(val) - 1);
    assert_int_equal(rec.integer[2], (long long)sizeof(val) - 1);
    for (int i = 3; i < 303; i++)
        assert_int_equal(rec.integer[i], i - 2);
    assert_int_equal(rec.type[303], REDIS_REPLY_ERROR);
    assert_int_equal(rec.type[304], REDIS_REPLY_STATUS);
    lv_redis_stats(fx->r, &st);
    assert_true(st.up);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.commands, 306);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.reconnects, 0);
    client_close();
    assert_int_equal(fx->nstates, 1); /* close says nothing to on_state */
}

static void sha1_hex(const char *text, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL), 1);
    for (unsigned i = 0; i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void on_exists(void *ud, const redisReply *reply, const char *err)
{
    int *out = ud;
    assert_null(err);
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->elements, 3);
    for (int i = 0; i < 3; i++)
        out[i] = (int)reply->element[i]->integer;
}

static void eval_reloads_on_noscript(void **state)
{
    (void)state;
    static rec_t rec;
    memset(&rec, 0, sizeof(rec));
    start_and_connect();
    int id = -1, id2 = -1;
    assert_int_equal(lv_redis_script_add(fx->r, "return {KEYS[1], ARGV[1]}", &id), 0);
    assert_int_equal(lv_redis_script_add(fx->r, "return redis.call('INCRBY', KEYS[1], ARGV[1])", &id2), 0);
    assert_int_not_equal(id, id2);
    assert_int_equal(cmd(&rec, 0, "SCRIPT", "FLUSH", NULL), 0);
    /* binary-safe arguments, copied: the caller's buffers are gone before the retry is sent */
    char key[8] = "ke\0y", arg[8] = "a\r\n\0b";
    const char *argv[2] = {key, arg};
    size_t lens[2] = {4, 5};
    assert_int_equal(lv_redis_eval(fx->r, id, on_reply, slot(&rec, 1), 1, 2, argv, lens), 0);
    memset(key, 'X', sizeof(key));
    memset(arg, 'X', sizeof(arg));
    const char *argv2[2] = {"n", "5"};
    assert_int_equal(lv_redis_eval(fx->r, id2, on_reply, slot(&rec, 2), 1, 2, argv2, NULL), 0);
    assert_int_equal(lv_redis_eval(fx->r, id2, on_reply, slot(&rec, 3), 1, 2, argv2, NULL), 0);
    rec_wait(&rec, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(rec.order[i], i);
    assert_int_equal(rec.errs, 0);
    assert_int_equal(rec.type[1], REDIS_REPLY_ARRAY);
    assert_int_equal(rec.elements[1], 2);
    assert_memory_equal(rec.str[1], "ke\0y", 4);
    assert_int_equal(rec.len[1], 5);
    assert_memory_equal(rec.el1[1], "a\r\n\0b", 5);
    assert_int_equal(rec.type[2], REDIS_REPLY_INTEGER);
    assert_int_equal(rec.integer[2], 5);
    assert_int_equal(rec.integer[3], 10);
    /* the scripts exist now: only EVALSHA was sent, so the client loaded them; and the SHA-1s it
     * computed are Redis's own */
    char sha1[41], sha2[41];
    sha1_hex("return {KEYS[1], ARGV[1]}", sha1);
    sha1_hex("return redis.call('INCRBY', KEYS[1], ARGV[1])", sha2);
    static int exists[3];
    assert_int_equal(lv_redis_cmdf(fx->r, on_exists, exists, "SCRIPT EXISTS %s %s %s", sha1, sha2,
                                   "0000000000000000000000000000000000000000"),
                     0);
    assert_int_equal(lv_redis_cmdf(fx->r, on_reply, slot(&rec, 4), "SCRIPT LOAD %s", "return {KEYS[1], ARGV[1]}"), 0);
    rec_wait(&rec, 5);
    assert_int_equal(exists[0], 1);
    assert_int_equal(exists[1], 1);
    assert_int_equal(exists[2], 0);
    assert_int_equal(rec.type[4], REDIS_REPLY_STRING);
    assert_string_equal(rec.str[4], sha1);
    /* bad ids and counts */
    assert_int_equal(lv_redis_eval(fx->r, 99, on_reply, NULL, 0, 0, NULL, NULL), LV_EINVAL);
    assert_int_equal(lv_redis_eval(fx->r, id, on_reply, NULL, 3, 2, argv2, NULL), LV_EINVAL);
    assert_int_equal(lv_redis_eval(fx->r, id, on_reply, NULL, -1, 2, argv2, NULL), LV_EINVAL);
    for (int i = 0; i < LV_REDIS_SCRIPTS_MAX - 2; i++) {
        int x;
        assert_int_equal(lv_redis_script_add(fx->r, "return 1", &x), 0);
    }
    int x;
    assert_int_equal(lv_redis_script_add(fx->r, "return 1", &x), LV_ELIMIT);
    client_close();
}

static bool got_msgs(void *arg)
{
    return fx->msgs >= *(int *)arg;
}

/* PUBLISH every 50 ms until the client hears one more message (a subscription is confirmed only
 * by what arrives); false after ms. */
static bool publish_until_heard(const char *channel, const char *payload, size_t len, int ms)
{
    int want = fx->msgs + 1;
    uint64_t deadline = lv_now_ms() + (uint64_t)ms;
    while (lv_now_ms() < deadline) {
        if (lv_redis_up(fx->r))
            lv_redis_cmdf(fx->r, NULL, NULL, "PUBLISH %s %b", channel, payload, len);
        if (run_until(got_msgs, &want, 50))
            return true;
    }
    return false;
}

static void pubsub(void **state)
{
    (void)state;
    start_and_connect();
    assert_int_equal(lv_redis_subscribe(fx->r, "lv:ev:a"), 0);
    assert_int_equal(lv_redis_subscribe(fx->r, "lv:ev:a"), 0); /* the same again: kept once */
    assert_int_equal(lv_redis_subscribe(fx->r, "lv:cancel"), 0);
    assert_true(publish_until_heard("lv:ev:a", "x\0y\r\n", 5, WAIT_MS));
    assert_string_equal(fx->last_channel, "lv:ev:a");
    assert_int_equal(fx->last_len, 5);
    assert_memory_equal(fx->last_payload, "x\0y\r\n", 5);
    assert_true(publish_until_heard("lv:cancel", "job1", 4, WAIT_MS));
    assert_string_equal(fx->last_channel, "lv:cancel");
    /* a channel added while subscribed */
    assert_int_equal(lv_redis_subscribe(fx->r, "late"), 0);
    assert_true(publish_until_heard("late", "", 0, WAIT_MS));
    assert_int_equal(fx->last_len, 0);
    /* a channel nobody subscribed: nothing */
    int before = fx->msgs;
    lv_redis_cmdf(fx->r, NULL, NULL, "PUBLISH other x");
    run_for(100);
    assert_int_equal(fx->msgs, before);
    /* the command connection still answers while the other one is subscribed */
    static rec_t rec;
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(cmd(&rec, 0, "PING", NULL, NULL), 0);
    rec_wait(&rec, 1);
    assert_int_equal(rec.type[0], REDIS_REPLY_STATUS);
    lv_redis_stats_t st;
    lv_redis_stats(fx->r, &st);
    assert_int_equal((int)st.messages, fx->msgs);
    /* caps */
    assert_int_equal(lv_redis_subscribe(fx->r, ""), LV_EINVAL);
    char ch[16];
    int n = 3;
    for (int i = 0; n < LV_REDIS_CHANNELS_MAX; i++, n++) {
        snprintf(ch, sizeof(ch), "c%d", i);
        assert_int_equal(lv_redis_subscribe(fx->r, ch), 0);
    }
    assert_int_equal(lv_redis_subscribe(fx->r, "one-too-many"), LV_ELIMIT);
    client_close();
}

static void blpop(void **state)
{
    (void)state;
    static rec_t rec;
    memset(&rec, 0, sizeof(rec));
    start_and_connect();
    /* empty list: a nil reply after the timeout */
    uint64_t t0 = lv_now_ms();
    assert_int_equal(lv_redis_blpop(fx->r, "lv:q:ready", 1, on_reply, slot(&rec, 0)), 0);
    assert_int_equal(lv_redis_blpop(fx->r, "lv:q:ready", 1, on_reply, slot(&rec, 9)), LV_EAGAIN);
    rec_wait(&rec, 1);
    uint64_t took = lv_now_ms() - t0;
    assert_int_equal(rec.calls[0], 1);
    assert_null(rec.err[0][0] ? rec.err[0] : NULL);
    assert_int_equal(rec.type[0], REDIS_REPLY_NIL);
    assert_true(took >= 900 && took < 3000);
    /* woken by a push from the command connection, long before its timeout */
    t0 = lv_now_ms();
    assert_int_equal(lv_redis_blpop(fx->r, "lv:q:ready", 5, on_reply, slot(&rec, 1)), 0);
    run_for(100);
    assert_int_equal(rec.n, 1);
    assert_int_equal(cmd(&rec, 2, "RPUSH", "lv:q:ready", "tok"), 0);
    rec_wait(&rec, 3);
    assert_true(lv_now_ms() - t0 < 2000);
    assert_int_equal(rec.type[1], REDIS_REPLY_ARRAY);
    assert_int_equal(rec.elements[1], 2);
    assert_string_equal(rec.str[1], "lv:q:ready");
    assert_string_equal(rec.el1[1], "tok");
    /* the next one may be asked from the callback's aftermath at once */
    assert_int_equal(lv_redis_blpop(fx->r, "lv:q:ready", 0, on_reply, slot(&rec, 3)), 0);
    assert_int_equal(cmd(&rec, 4, "RPUSH", "lv:q:ready", "tok2"), 0);
    rec_wait(&rec, 5);
    assert_string_equal(rec.el1[3], "tok2");
    assert_int_equal(lv_redis_blpop(fx->r, NULL, 1, on_reply, NULL), LV_EINVAL);
    assert_int_equal(lv_redis_blpop(fx->r, "k", -1, on_reply, NULL), LV_EINVAL);
    client_close();
}

static void auth(void **state)
{
    (void)state;
    static rec_t rec;
    memset(&rec, 0, sizeof(rec));
    static const char *const requirepass[] = {"--requirepass", "s3cr%t", NULL};
    fx->srv.extra_args = requirepass;
    assert_int_equal(rfx_start(&fx->srv), 0);
    char url[128];
    /* the password percent-encoded in the URL; user "default" (Redis 6+ AUTH user pass) */
    snprintf(url, sizeof(url), "redis://default:s3cr%%25t@127.0.0.1:%d/3", fx->srv.port);
    client_open(url, 0);
    assert_true(run_until(is_up, NULL, WAIT_MS));
    assert_int_equal(cmd(&rec, 0, "SET", "in-db-3", "1"), 0);
    rec_wait(&rec, 1);
    assert_int_equal(rec.type[0], REDIS_REPLY_STATUS);
    /* SELECT 3 was taken: the key is in db 3, not 0 */
    assert_int_equal(lv_redis_cmdf(fx->r, on_reply, slot(&rec, 1), "SELECT 0"), 0);
    assert_int_equal(cmd(&rec, 2, "EXISTS", "in-db-3", NULL), 0);
    rec_wait(&rec, 3);
    assert_int_equal(rec.integer[2], 0);
    /* the blocking and pub/sub connections authenticate too */
    assert_int_equal(lv_redis_blpop(fx->r, "nothing", 1, on_reply, slot(&rec, 3)), 0);
    rec_wait(&rec, 4);
    assert_int_equal(rec.type[3], REDIS_REPLY_NIL);
    assert_int_equal(lv_redis_subscribe(fx->r, "ch"), 0);
    assert_true(publish_until_heard("ch", "p", 1, WAIT_MS));
    client_close();

    /* the password alone */
    snprintf(url, sizeof(url), "redis://:s3cr%%25t@127.0.0.1:%d", fx->srv.port);
    client_open(url, 0);
    assert_true(run_until(is_up, NULL, WAIT_MS));
    client_close();

    /* a wrong password never comes up, and keeps retrying quietly */
    fx->nstates = 0;
    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d", fx->srv.port);
    client_open(url, 0);
    run_for(700);
    assert_false(lv_redis_up(fx->r));
    assert_int_equal(fx->nstates, 0);
    assert_int_equal(cmd(&rec, 4, "PING", NULL, NULL), LV_ECLOSED);
    assert_int_equal(lv_redis_blpop(fx->r, "k", 1, on_reply, NULL), LV_ECLOSED);
    client_close();

    /* no password for a server that wants one: the same */
    client_open_port(fx->srv.port);
    run_for(300);
    assert_false(lv_redis_up(fx->r));
    client_close();
    assert_int_equal(fx->nstates, 0);
}

static void kill_and_restart(void **state)
{
    (void)state;
    static rec_t rec;
    memset(&rec, 0, sizeof(rec));
    start_and_connect();
    assert_int_equal(lv_redis_subscribe(fx->r, "ch"), 0);
    assert_true(publish_until_heard("ch", "before", 6, WAIT_MS));
    int id;
    assert_int_equal(lv_redis_script_add(fx->r, "return ARGV[1]", &id), 0);
    const char *argv[1] = {"e1"};
    assert_int_equal(lv_redis_eval(fx->r, id, on_reply, slot(&rec, 20), 0, 1, argv, NULL), 0);
    rec_wait(&rec, 1);
    assert_string_equal(rec.str[20], "e1");
    memset(&rec, 0, sizeof(rec));

    /* pending when the server dies: a BLPOP holding the command connection, commands queued
     * behind it, and a BLPOP on the blocking connection */
    assert_int_equal(lv_redis_cmdf(fx->r, on_reply, slot(&rec, 0), "BLPOP nolist 30"), 0);
    for (int i = 1; i <= 10; i++)
        assert_int_equal(cmd(&rec, i, "PING", NULL, NULL), 0);
    assert_int_equal(lv_redis_eval(fx->r, id, on_reply, slot(&rec, 11), 0, 1, argv, NULL), 0);
    assert_int_equal(lv_redis_blpop(fx->r, "lv:q:ready", 30, on_reply, slot(&rec, 12)), 0);
    run_for(200);
    assert_int_equal(rec.n, 0);
    rfx_kill(&fx->srv);
    rec_wait(&rec, 13);
    assert_true(run_until(is_down, NULL, WAIT_MS));
    for (int i = 0; i <= 12; i++) {
        assert_int_equal(rec.calls[i], 1);
        assert_string_equal(rec.err[i], "connection lost");
    }
    assert_int_equal(fx->nstates, 2);
    assert_int_equal(fx->states[1], 0);
    /* refused at once while down */
    assert_int_equal(cmd(&rec, 13, "PING", NULL, NULL), LV_ECLOSED);
    assert_int_equal(lv_redis_eval(fx->r, id, on_reply, slot(&rec, 13), 0, 1, argv, NULL), LV_ECLOSED);
    assert_int_equal(lv_redis_blpop(fx->r, "k", 1, on_reply, slot(&rec, 13)), LV_ECLOSED);
    run_for(500); /* retries against a closed port: nothing more is called back */
    assert_int_equal(rec.n, 13);
    assert_int_equal(fx->nstates, 2);
    lv_redis_stats_t st;
    lv_redis_stats(fx->r, &st);
    assert_false(st.up);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.errors, 13);

    /* back on the same port: up again, scripts reloaded (a new server has none), channels
     * subscribed again, the blocking connection serves again */
    assert_int_equal(rfx_start(&fx->srv), 0);
    assert_true(run_until(is_up, NULL, WAIT_MS));
    assert_int_equal(fx->nstates, 3);
    assert_int_equal(fx->states[2], 1);
    /* the client loaded its scripts into the new server before it said up */
    char sha[41];
    sha1_hex("return ARGV[1]", sha);
    static int exists[3];
    assert_int_equal(lv_redis_cmdf(fx->r, on_exists, exists, "SCRIPT EXISTS %s %s %s", sha, sha, sha), 0);
    const char *argv2[1] = {"e2"};
    assert_int_equal(lv_redis_eval(fx->r, id, on_reply, slot(&rec, 14), 0, 1, argv2, NULL), 0);
    rec_wait(&rec, 14);
    assert_int_equal(exists[0], 1);
    assert_int_equal(rec.type[14], REDIS_REPLY_STRING);
    assert_string_equal(rec.str[14], "e2");
    assert_true(publish_until_heard("ch", "after", 5, WAIT_MS));
    assert_memory_equal(fx->last_payload, "after", 5);
    assert_int_equal(lv_redis_blpop(fx->r, "lv:q:ready", 5, on_reply, slot(&rec, 15)), 0);
    assert_int_equal(cmd(&rec, 16, "RPUSH", "lv:q:ready", "t"), 0);
    rec_wait(&rec, 16);
    assert_string_equal(rec.el1[15], "t");
    lv_redis_stats(fx->r, &st);
    assert_true(st.reconnects >= 3); /* each of the three connections */
    client_close();
    assert_int_equal(fx->nstates, 3);
}

static int fill_calls, fill_errs;
static lv_redis_t *reentry_r;
static int reentry_rc = 1;

static void on_fill(void *ud, const redisReply *reply, const char *err)
{
    (void)ud;
    (void)reply;
    fill_calls++;
    if (err && strcmp(err, "closing") == 0)
        fill_errs++;
}

/* A callback run by close that tries a new command: refused. */
static void on_reentry(void *ud, const redisReply *reply, const char *err)
{
    on_reply(ud, reply, err);
    reentry_rc = lv_redis_cmdf(reentry_r, on_fill, NULL, "PING");
}

static void close_with_pending(void **state)
{
    (void)state;
    static rec_t rec;
    memset(&rec, 0, sizeof(rec));
    start_and_connect();
    int id;
    assert_int_equal(lv_redis_script_add(fx->r, "return 1", &id), 0);
    assert_int_equal(lv_redis_cmdf(fx->r, on_reply, slot(&rec, 0), "BLPOP nolist 30"), 0);
    for (int i = 1; i <= 100; i++)
        assert_int_equal(cmd(&rec, i, "PING", NULL, NULL), 0);
    assert_int_equal(lv_redis_eval(fx->r, id, on_reply, slot(&rec, 101), 0, 0, NULL, NULL), 0);
    assert_int_equal(lv_redis_blpop(fx->r, "lv:q:ready", 30, on_reply, slot(&rec, 102)), 0);
    reentry_r = fx->r;
    assert_int_equal(lv_redis_cmdf(fx->r, on_reentry, slot(&rec, 103), "PING"), 0);
    run_for(200);
    assert_int_equal(rec.n, 0);
    /* fill up to the cap behind the blocked connection */
    lv_redis_stats_t st;
    lv_redis_stats(fx->r, &st);
    fill_calls = fill_errs = 0;
    size_t fill = LV_REDIS_PENDING_MAX - st.pending;
    for (size_t i = 0; i < fill; i++)
        assert_int_equal(lv_redis_cmdf(fx->r, on_fill, NULL, "PING"), 0);
    assert_int_equal(lv_redis_cmdf(fx->r, on_fill, NULL, "PING"), LV_ELIMIT);
    assert_int_equal(lv_redis_eval(fx->r, id, on_fill, NULL, 0, 0, NULL, NULL), LV_ELIMIT);
    lv_redis_stats(fx->r, &st);
    assert_int_equal(st.pending, LV_REDIS_PENDING_MAX);
    lv_redis_close(fx->r);
    /* every callback ran, once, before close returned */
    assert_int_equal(rec.n, 104);
    for (int i = 0; i <= 103; i++) {
        assert_int_equal(rec.calls[i], 1);
        assert_string_equal(rec.err[i], "closing");
    }
    assert_int_equal(fill_calls, (int)fill);
    assert_int_equal(fill_errs, (int)fill);
    assert_int_equal(reentry_rc, LV_ECLOSED);
    fx->r = NULL;
    client_close();
    assert_int_equal(rec.n, 104);
    assert_int_equal(fill_calls, (int)fill);

    /* a BLPOP held while its connection opens, and a client closed before the loop ever ran */
    memset(&rec, 0, sizeof(rec));
    client_open_port(fx->srv.port);
    assert_true(run_until(is_up, NULL, WAIT_MS));
    assert_int_equal(lv_redis_blpop(fx->r, "k", 30, on_reply, slot(&rec, 0)), 0);
    assert_int_equal(cmd(&rec, 1, "PING", NULL, NULL), 0);
    lv_redis_close(fx->r);
    assert_int_equal(rec.n, 2);
    assert_string_equal(rec.err[0], "closing");
    assert_string_equal(rec.err[1], "closing");
    fx->r = NULL;
    client_close();
    client_open_port(fx->srv.port);
    assert_int_equal(lv_redis_subscribe(fx->r, "x"), 0);
    client_close();
    lv_redis_close(NULL);
    assert_int_equal(rec.n, 2);
}

static void refused_then_server_appears(void **state)
{
    (void)state;
    int port = rfx_free_port();
    assert_true(port > 0);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    /* a long connect timeout: a refused connect must be seen as refused, not timed out */
    client_open(url, 20000);
    run_for(500);
    assert_false(lv_redis_up(fx->r));
    assert_int_equal(fx->nstates, 0);
    assert_int_equal(lv_redis_subscribe(fx->r, "ch"), 0); /* kept until there is a server */
    fx->srv.port = port;
    assert_int_equal(rfx_start(&fx->srv), 0);
    uint64_t t0 = lv_now_ms();
    assert_true(run_until(is_up, NULL, WAIT_MS));
    assert_true(lv_now_ms() - t0 < 3000); /* the backoff is capped at 2 s */
    assert_int_equal(fx->nstates, 1);
    assert_true(publish_until_heard("ch", "m", 1, WAIT_MS));
    client_close();
}

typedef struct {
    uv_tcp_t server;
    uv_tcp_t conns[32];
    int accepted;
} mute_t;

static void mute_on_conn(uv_stream_t *s, int status)
{
    mute_t *m = s->data;
    if (status < 0 || m->accepted >= (int)LV_ARRAY_LEN(m->conns))
        return;
    uv_tcp_t *c = &m->conns[m->accepted];
    uv_tcp_init(s->loop, c);
    if (uv_accept(s, (uv_stream_t *)c) == 0)
        m->accepted++; /* and never answers */
    else
        uv_close((uv_handle_t *)c, NULL);
}

static void connect_timeout(void **state)
{
    (void)state;
    static mute_t m;
    memset(&m, 0, sizeof(m));
    int port = rfx_free_port();
    assert_true(port > 0);
    uv_tcp_init(&fx->loop, &m.server);
    m.server.data = &m;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    assert_int_equal(uv_tcp_bind(&m.server, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&m.server, 16, mute_on_conn), 0);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    client_open(url, 200);
    /* attempts at about 0, 300 (200 timeout + 100 backoff), 700, 1300 ms */
    run_for(1100);
    assert_false(lv_redis_up(fx->r));
    assert_int_equal(fx->nstates, 0);
    assert_true(m.accepted >= 2 && m.accepted <= 5); /* at least one attempt given up and retried */
    for (int i = 0; i < m.accepted; i++)
        uv_close((uv_handle_t *)&m.conns[i], NULL);
    uv_close((uv_handle_t *)&m.server, NULL);
    client_close();
}

/* A server that stops answering (SIGSTOP: the socket stays open, as in a partition that drops
 * packets) is given up after the reply timeout: callbacks fail, on_state says down; it comes back
 * by itself once the server answers again. */
static void stalled_server(void **state)
{
    (void)state;
    static rec_t rec;
    memset(&rec, 0, sizeof(rec));
    start_and_connect();
    assert_int_equal(lv_redis_subscribe(fx->r, "ch"), 0);
    assert_true(publish_until_heard("ch", "1", 1, WAIT_MS));
    assert_int_equal(lv_redis_blpop(fx->r, "lv:q:ready", 1, on_reply, slot(&rec, 10)), 0);
    rec_wait(&rec, 1); /* the blocking connection is open */
    memset(&rec, 0, sizeof(rec));
    kill(fx->srv.pid, SIGSTOP);
    uint64_t t0 = lv_now_ms();
    for (int i = 0; i < 5; i++)
        assert_int_equal(cmd(&rec, i, "PING", NULL, NULL), 0);
    assert_int_equal(lv_redis_blpop(fx->r, "lv:q:ready", 1, on_reply, slot(&rec, 5)), 0);
    if (!run_until(is_down, NULL, 9000)) {
        kill(fx->srv.pid, SIGCONT);
        fail_msg("still up %d ms after the server stopped", 9000);
    }
    uint64_t took = lv_now_ms() - t0;
    rec_wait(&rec, 6);
    kill(fx->srv.pid, SIGCONT);
    assert_true(took >= 4000 && took < 8000);
    for (int i = 0; i <= 5; i++) {
        assert_int_equal(rec.calls[i], 1);
        assert_string_equal(rec.err[i], "connection lost");
    }
    assert_int_equal(fx->nstates, 2);
    assert_true(run_until(is_up, NULL, WAIT_MS));
    assert_int_equal(fx->nstates, 3);
    assert_int_equal(cmd(&rec, 6, "PING", NULL, NULL), 0);
    rec_wait(&rec, 7);
    assert_int_equal(rec.type[6], REDIS_REPLY_STATUS);
    assert_true(publish_until_heard("ch", "2", 1, WAIT_MS));
    client_close();
}

/* A host name (resolved on the thread pool) and a Unix socket. */
static void name_and_unix_socket(void **state)
{
    (void)state;
    static rec_t rec;
    memset(&rec, 0, sizeof(rec));
    /* relative to the server's dir, where it runs */
    static const char *const unix_socket[] = {"--unixsocket", "redis.sock", "--unixsocketperm", "700", NULL};
    fx->srv.extra_args = unix_socket;
    assert_int_equal(rfx_start(&fx->srv), 0);
    char url[128];
    snprintf(url, sizeof(url), "redis://localhost:%d/1", fx->srv.port);
    client_open(url, 0);
    assert_true(run_until(is_up, NULL, WAIT_MS));
    assert_int_equal(cmd(&rec, 0, "SET", "where", "tcp"), 0);
    rec_wait(&rec, 1);
    client_close();
    snprintf(url, sizeof(url), "unix://%s/redis.sock?db=1", fx->srv.dir);
    client_open(url, 0);
    assert_true(run_until(is_up, NULL, WAIT_MS));
    assert_int_equal(cmd(&rec, 1, "GET", "where", NULL), 0);
    rec_wait(&rec, 2);
    assert_string_equal(rec.str[1], "tcp");
    assert_int_equal(lv_redis_subscribe(fx->r, "u"), 0);
    assert_true(publish_until_heard("u", "x", 1, WAIT_MS));
    client_close();
    /* a socket path with no server: refused, retried, closed cleanly */
    snprintf(url, sizeof(url), "unix://%s/none.sock", fx->srv.dir);
    client_open(url, 0);
    run_for(300);
    assert_false(lv_redis_up(fx->r));
    client_close();
    /* closed while its name is still being resolved */
    snprintf(url, sizeof(url), "redis://localhost:%d", fx->srv.port);
    client_open(url, 0);
    client_close();
}

static lv_redis_t *closer_r;
static int close_at = -1;

static void on_reply_maybe_close(void *ud, const redisReply *reply, const char *err)
{
    on_reply(ud, reply, err);
    if (((slot_t *)ud)->i == close_at) {
        lv_redis_close(closer_r);
        fx->r = NULL;
    }
}

/* lv_redis_close from inside a reply callback (more replies behind it in the same read), from
 * on_state(false) while hiredis fails what was pending, from on_message: every callback once, the
 * rest freed from the loop (ASan/LSan check the frees). */
static void close_from_callbacks(void **state)
{
    (void)state;
    static rec_t rec;
    memset(&rec, 0, sizeof(rec));
    start_and_connect();
    closer_r = fx->r;
    close_at = 10;
    for (int i = 0; i < 50; i++)
        assert_int_equal(lv_redis_cmdf(fx->r, on_reply_maybe_close, slot(&rec, i), "PING"), 0);
    rec_wait(&rec, 50);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(rec.calls[i], 1);
        if (i <= 10)
            assert_int_equal(rec.type[i], REDIS_REPLY_STATUS);
        else
            assert_string_equal(rec.err[i], "closing");
    }
    assert_null(fx->r);
    client_close();

    /* from on_state(false): the server dies with commands pending */
    memset(&rec, 0, sizeof(rec));
    fx->nstates = 0;
    client_open_port(fx->srv.port);
    assert_true(run_until(is_up, NULL, WAIT_MS));
    assert_int_equal(lv_redis_cmdf(fx->r, on_reply, slot(&rec, 0), "BLPOP nolist 30"), 0);
    for (int i = 1; i < 20; i++)
        assert_int_equal(cmd(&rec, i, "PING", NULL, NULL), 0);
    assert_int_equal(lv_redis_blpop(fx->r, "k", 30, on_reply, slot(&rec, 20)), 0);
    run_for(200);
    fx->close_on_down = true;
    rfx_kill(&fx->srv);
    rec_wait(&rec, 21);
    assert_null(fx->r);
    run_for(100);
    for (int i = 0; i <= 20; i++)
        assert_int_equal(rec.calls[i], 1);
    assert_int_equal(rec.errs, 21);
    assert_int_equal(fx->nstates, 2);
    client_close();
    fx->close_on_down = false;

    /* from on_message, with a command pending */
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(rfx_start(&fx->srv), 0);
    client_open_port(fx->srv.port);
    assert_true(run_until(is_up, NULL, WAIT_MS));
    assert_int_equal(lv_redis_subscribe(fx->r, "ch"), 0);
    fx->close_on_message = true;
    int want = 1;
    for (int i = 0; i < 100 && fx->r && !got_msgs(&want); i++) {
        lv_redis_cmdf(fx->r, NULL, NULL, "PUBLISH ch x");
        run_for(50);
    }
    assert_null(fx->r);
    assert_int_equal(fx->msgs, 1);
    run_for(100);
    assert_int_equal(fx->msgs, 1);
    client_close();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (access(RFX_REDIS_SERVER, X_OK) != 0) {
        fprintf(stderr, "test_redis: %s not found\n", RFX_REDIS_SERVER);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(commands_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(eval_reloads_on_noscript, setup, teardown),
        cmocka_unit_test_setup_teardown(pubsub, setup, teardown),
        cmocka_unit_test_setup_teardown(blpop, setup, teardown),
        cmocka_unit_test_setup_teardown(auth, setup, teardown),
        cmocka_unit_test_setup_teardown(kill_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(close_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_then_server_appears, setup, teardown),
        cmocka_unit_test_setup_teardown(connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(stalled_server, setup, teardown),
        cmocka_unit_test_setup_teardown(name_and_unix_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(close_from_callbacks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
