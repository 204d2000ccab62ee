/* lv_engine.c - the page's WebSocket on the frame pipeline: client messages (hello, settings,
 * start/stop, frames) go into lv_pipeline (src/core), and the pipeline's ports come back out here
 * as the page's JSON (the WebSocket is a viewer and a source of its session). Also the host side
 * of the pipeline: its timers, the local dispatcher on the backend pool, metrics, stats pushes,
 * hello deadlines and the idle sweep. Everything here runs on the loop thread. */
#include "lv_engine.h"
#include "lv_fair.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lv_analyze.h"
#include "lv_allow.h"
#include "lv_app.h"
#include "lv_backend.h"
#include "lv_buf.h"
#include "lv_camera.h"
#include "lv_cluster.h"
#include "lv_cluster_sessions.h"
#include "lv_common.h"
#include "lv_dispatch_local.h"
#include "lv_drr.h"
#include "lv_frame.h"
#include "lv_iptable.h"
#include "lv_jpeg.h"
#include "lv_log.h"
#include "lv_net.h"
#include "lv_offer.h"
#include "lv_outmsg.h"
#include "lv_pipeline.h"
#include "lv_port_dispatch.h"
#include "lv_quota.h"
#include "lv_port_source.h"
#include "lv_port_viewer.h"
#include "lv_queue.h"
#include "lv_session.h"
#include "lv_settings.h"
#include "lv_stat.h"
#include "lv_sysmon.h"
#include "lv_usage.h"
#include "lv_trace.h"
#include "lv_wsconn.h"
#include "lv_wsframe.h"
#include "lv_wsmsg.h"

#define TICK_MS 20
#define SWEEP_MS 1000
#define HELLO_TIMEOUT_MS 10000
#define MAX_TEXT_BYTES 65536
#define MAX_JSON_DEPTH 16
#define RATE_MSGS_PER_S 50.0
#define RATE_NOTICE_MS 1000  /* at most one rate_limited error per socket per second */
#define FLOOD_FACTOR 10      /* more than 10x RATE_MSGS_PER_S in a second ... */
#define FLOOD_SECONDS 3      /* ... for this many seconds in a row closes the socket with 1008 */
static void credit_clear(lv_app_t *app, lv_session_t *s);
static void camera_sync(lv_app_t *app, lv_session_t *s);

/* ---------- messages ---------- */

/* lv_msg_new, lv_msg_from_json, lv_msg_unref: lv_msg.c (each WebSocket frame is built once, its
 * header in front of the payload, and shared by every socket it goes to) */

/* Queue a message on every socket of a session. */
static void session_send(lv_session_t *s, lv_msg_t *m)
{
    lv_queue_t *n, *next;
    for (n = s->viewers.next; n != &s->viewers; n = next) {
        next = n->next;
        lv_conn_send(LV_CONTAINER_OF(n, lv_conn_t, viewer.link), m);
    }
}

/* Build, send to a session, release: the common case for session-wide messages. */
static void session_send_json(lv_session_t *s, json_t *obj)
{
    lv_msg_t *m = lv_msg_from_json(obj);
    json_decref(obj);
    if (!m)
        return;
    session_send(s, m);
    lv_msg_unref(m);
}

/* Send a built message (lv_outmsg.h, lv_msg_from_json) to c and drop the builder's reference;
 * NULL (the build failed) is ignored. */
static void conn_send_msg(lv_conn_t *c, lv_msg_t *m)
{
    if (!m)
        return;
    lv_conn_send(c, m);
    lv_msg_unref(m);
}

static void conn_send_json(lv_conn_t *c, json_t *obj)
{
    lv_msg_t *m = lv_msg_from_json(obj);
    json_decref(obj);
    conn_send_msg(c, m);
}

/* ---------- session views ---------- */

static json_t *metrics_json(const lv_session_t *s)
{
    return json_pack("{s:f, s:f, s:I, s:b, s:I, s:I, s:I, s:I}", "last_latency_ms", s->last_latency_ms,
                     "avg_latency_ms", s->rec.avg_latency_ms, "total_inferences", (json_int_t)s->rec.total_inferences,
                     "is_processing", s->job != NULL, "frames_received", (json_int_t)s->frames_received,
                     "frames_replaced", (json_int_t)s->frames_replaced, "frames_rejected",
                     (json_int_t)s->frames_rejected, "errors", (json_int_t)s->errors);
}

static json_t *history_json(const lv_session_t *s)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < s->history_len; i++) {
        const lv_history_entry_t *e = lv_session_history_at(s, i);
        json_array_append_new(arr, json_pack("{s:I, s:s, s:f, s:I}", "answer_id", (json_int_t)e->answer_id, "text",
                                             e->text ? e->text : "", "latency_ms", e->latency_ms, "wall_ms",
                                             (json_int_t)e->wall_ms));
    }
    return arr;
}

static void send_session_hello(lv_conn_t *c, const char *secret, bool resumed)
{
    lv_session_t *s = c->session;
    json_t *o = json_pack("{s:s, s:i, s:s, s:b, s:b, s:o, s:o, s:o}", "type", "session", "protocol", 1, "session_id",
                          s->rec.id, "resumed", resumed, "started", s->rec.started, "settings",
                          lv_settings_to_json(&s->rec.settings), "metrics", metrics_json(s), "history",
                          history_json(s));
    if (secret)
        json_object_set_new(o, "resume_secret", json_string(secret));
    conn_send_json(c, o);
}

/* The page's WebSocket as a source (lv_port_source.h): a credit asks it for one frame. */
static void ws_request_frame(lv_source_t *src, lv_session_t *s, uint32_t credit_id)
{
    lv_conn_t *c = LV_CONTAINER_OF(src, lv_conn_t, source);
    if (strcmp(s->rec.settings.source, "page") != 0)
        return; /* a camera or a WebRTC stream answers this session's credits, not the page */
    conn_send_msg(c, lv_outmsg_credit(credit_id));
}

static const lv_source_ops_t ws_source_ops = {ws_request_frame, NULL};

/* The page's WebSocket as a viewer (lv_port_viewer.h): the pipeline's events become its JSON, the
 * hot ones written in place by lv_outmsg.c (no JSON trees, one allocation each). */
static void ws_queued(lv_viewer_t *v, lv_session_t *s, size_t position, size_t queued)
{
    conn_send_msg(LV_CONTAINER_OF(v, lv_conn_t, viewer), lv_outmsg_queued(position, queued));
}

static void ws_frame_dropped(lv_viewer_t *v, lv_session_t *s, const char *reason, double age_ms)
{
    conn_send_msg(LV_CONTAINER_OF(v, lv_conn_t, viewer), lv_outmsg_frame_dropped(reason, age_ms));
}

static void ws_error(lv_viewer_t *v, lv_session_t *s, const char *code, const char *message, uint64_t answer_id)
{
    lv_conn_t *c = LV_CONTAINER_OF(v, lv_conn_t, viewer);
    json_t *o = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
    if (o && answer_id)
        json_object_set_new(o, "answer_id", json_integer((json_int_t)answer_id));
    conn_send_json(c, o);
}

static void ws_answer_cancelled(lv_viewer_t *v, lv_session_t *s, uint64_t answer_id, const char *reason)
{
    conn_send_msg(LV_CONTAINER_OF(v, lv_conn_t, viewer), lv_outmsg_answer_cancelled(answer_id, reason));
}

static void ws_answer_start(lv_viewer_t *v, lv_session_t *s, const lv_job_t *job)
{
    conn_send_msg(LV_CONTAINER_OF(v, lv_conn_t, viewer), lv_outmsg_answer_start(job));
}

/* The hottest message (docs/protocol.md has their fields). */
static void ws_delta(lv_viewer_t *v, lv_session_t *s, uint64_t answer_id, const char *text, size_t len)
{
    conn_send_msg(LV_CONTAINER_OF(v, lv_conn_t, viewer), lv_outmsg_delta(answer_id, text, len));
}

static void ws_answer(lv_viewer_t *v, lv_session_t *s, const lv_job_t *job, const lv_dispatch_result_t *r,
                      double latency_ms)
{
    conn_send_msg(LV_CONTAINER_OF(v, lv_conn_t, viewer), lv_outmsg_answer(s, job, r));
}

static const lv_viewer_ops_t ws_viewer_ops = {
    .queued = ws_queued,
    .answer_start = ws_answer_start,
    .delta = ws_delta,
    .answer = ws_answer,
    .error = ws_error,
    .frame_dropped = ws_frame_dropped,
    .answer_cancelled = ws_answer_cancelled,
};

static void attach(lv_conn_t *c, lv_session_t *s)
{
    uint64_t now = lv_now_ms();
    c->session = s;
    c->viewer.ops = &ws_viewer_ops;
    c->source.ops = &ws_source_ops;
    lv_pipeline_attach_viewer(&c->app->pipe, s, &c->viewer, now);
    lv_pipeline_attach_source(&c->app->pipe, s, &c->source, now);
}

/* ---------- cameras (lv_camera.h) ---------- */

static lv_camera_t *source_camera(lv_app_t *app, const lv_settings_t *st)
{
    if (strncmp(st->source, "camera:", 7) != 0)
        return NULL;
    return lv_cameras_find(app->cameras, st->source + 7, strlen(st->source + 7));
}

static void send_camera_state(lv_session_t *s, void *ud)
{
    lv_camera_info_t in;
    lv_camera_info(ud, &in);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "type", "camera_state", "camera", in.id, "state",
                          lv_camera_state_name(in.state), "reason", in.reason);
    if (o)
        session_send_json(s, o);
}

/* A camera's state changed (lv_cameras_new's on_state): its watchers hear it. */
static void on_camera_state(lv_camera_t *cam, void *ud)
{
    (void)ud;
    lv_camera_foreach_watcher(cam, send_camera_state, cam);
}

/* s's source names a camera that is not configured (removed from the config since the session
 * was saved, and the session came back from the state file): nothing would ever answer its
 * credits, so its sockets hear why and its source falls back to the page (settings_updated). */
static void source_camera_gone(lv_app_t *app, lv_session_t *s)
{
    char msg[192];
    snprintf(msg, sizeof(msg),
             "camera '%.32s' is not configured on this server (any more); the session takes its frames from "
             "the page again (GET /api/v1/cameras lists the cameras)",
             s->rec.settings.source + 7);
    session_send_json(s, json_pack("{s:s, s:s, s:s, s:s}", "type", "error", "code", "invalid_setting", "message",
                                   msg, "field", "source"));
    lv_engine_set_source(app, s, "page"); /* settings_commit: saved, settings_updated, camera_sync */
}

/* A session watches the camera its source names while it is started and somebody has it open;
 * otherwise it watches none (a camera nobody looks at costs no inference). Called after every
 * change of those: start, stop, settings, a socket attached or gone. */
static void camera_sync(lv_app_t *app, lv_session_t *s)
{
    /* new settings are checked (check_choice); only a restored session can name a missing camera.
     * Told when somebody is there to hear it (resume, start) */
    if (s->n_viewers > 0 && !app->stopping && strncmp(s->rec.settings.source, "camera:", 7) == 0 &&
        !source_camera(app, &s->rec.settings)) {
        source_camera_gone(app, s);
        return;
    }
    if (!app->cameras)
        return;
    lv_camera_t *want = s->rec.started && s->n_viewers > 0 && !app->stopping ? source_camera(app, &s->rec.settings)
                                                                              : NULL;
    for (size_t i = 0; i < lv_cameras_count(app->cameras); i++) {
        lv_camera_t *cam = lv_cameras_at(app->cameras, i);
        if (cam != want && lv_camera_watching(cam, s))
            lv_camera_unwatch(cam, s);
    }
    if (want && !lv_camera_watching(want, s)) {
        lv_camera_info_t before, after;
        lv_camera_info(want, &before);
        /* a camera that changes state as it is watched (idle -> starting) told every watcher,
         * this one included: it hears its state once */
        if (lv_camera_watch(want, s) == 0 && (lv_camera_info(want, &after), after.state == before.state))
            send_camera_state(s, want);
    }
}

/* ---------- the pipeline's host ---------- */

static void on_kick(uv_timer_t *t)
{
    lv_app_t *app = t->data;
    app->kick_pending = false;
    if (!app->stopping)
        lv_pipeline_run(&app->pipe);
}

/* Run the scheduler on the next loop turn (coalesced). */
static void engine_kick(lv_app_t *app)
{
    if (app->kick_pending || app->stopping)
        return;
    app->kick_pending = true;
    uv_timer_start(&app->kick, on_kick, 0, 0);
}

/* ---------- client messages ---------- */

/* The backend and model a session chose must exist: the backend id is configured, and the model
 * is listed by a backend it could go to. A model is refused only when that is known (every such
 * backend has listed its models); until then it is accepted and frames get no_backend if it is
 * not served. Only a changed choice is checked: a backend that drops a model later must not make
 * every other update fail. 0, or LV_EINVAL with the field and a message in msg. */
static int check_choice(lv_app_t *app, const lv_settings_t *next, const lv_settings_t *prev, const char **field,
                        char *msg, size_t msg_size)
{
    bool model_changed = strcmp(next->model, prev->model) != 0;
    if (strncmp(next->source, "camera:", 7) == 0 && !source_camera(app, next)) {
        *field = "source";
        snprintf(msg, msg_size, "no camera with that id is configured (GET /api/v1/cameras lists them)");
        return LV_EINVAL;
    }
    if (next->backend[0] && !lv_pool_find(app->pool, next->backend)) {
        *field = "backend";
        snprintf(msg, msg_size, "no backend with that id is configured");
        return LV_EINVAL;
    }
    if ((model_changed || strcmp(next->backend, prev->backend) != 0) &&
        lv_pool_model_known(app->pool, next->backend, next->model) == 0) {
        *field = model_changed ? "model" : "backend";
        snprintf(msg, msg_size, "no %s%s serves model '%.256s' (GET /api/v1/models lists what is served)",
                 next->backend[0] ? "backend " : "configured backend", next->backend, next->model);
        return LV_EINVAL;
    }
    return 0;
}

static void send_session_not_found(lv_conn_t *c)
{
    lv_conn_send_error(c, "session_not_found",
                       "no session with that id and secret (it may have expired); send hello without them to start "
                       "a new one",
                       NULL);
}

static void send_too_many_sessions(lv_conn_t *c)
{
    lv_log_ctx_t lctx = {.tenant = c->principal.tenant, .user = c->principal.user_id, .ip = c->ip};
    LV_INFO_CTX(&lctx, "refused a session to %s: too many sessions", c->ip);
    lv_conn_send_error(c, "too_many_sessions",
                       "session limit reached (per address or in total); close other tabs or wait for idle sessions "
                       "to expire",
                       NULL);
    lv_conn_close(c, LV_WS_CLOSE_POLICY, "too many sessions");
}

/* A new session would pass the sessions quota of the user or its tenant: quota_exceeded (its
 * fields, then the error with a sentence), and the socket closes. */
/* The quota_exceeded message of a refusal (lv_quota_over_json's fields); NULL without memory. */
static json_t *quota_exceeded_json(const lv_quota_over_t *over)
{
    json_t *o = lv_quota_over_json(over);
    if (o && json_object_set_new(o, "type", json_string("quota_exceeded")) != 0) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

static void send_sessions_quota(lv_conn_t *c, const lv_quota_over_t *over)
{
    char msg[400];
    json_t *o = quota_exceeded_json(over);
    if (o)
        conn_send_json(c, o);
    lv_quota_sentence(over, msg, sizeof(msg));
    lv_usage_count_refusal(c->app, over->scope, over->quota);
    lv_conn_send_error(c, "quota_exceeded", msg, NULL);
    lv_conn_close(c, LV_WS_CLOSE_POLICY, "sessions quota");
}

void lv_engine_hello_over_quota(lv_conn_t *c, const lv_quota_over_t *over)
{
    if (!c->kill)
        send_sessions_quota(c, over);
}

/* Cluster mode, Redis unreachable: the socket stays open and the page says hello again by itself
 * (docs/protocol.md). Its hello deadline counts from this answer, so a page retrying within the
 * deadline is not closed for "no hello". */
static void send_cluster_unavailable(lv_conn_t *c)
{
    c->opened_ms = lv_now_ms();
    lv_conn_send_error(c, "cluster_unavailable",
                       "The session store is unreachable right now; the page retries by itself.", NULL);
}

/* The session is c's now: the hello's answer, as for a local resume or a new session. secret: the
 * new session's resume secret (NULL when resumed). */
static void hello_answer(lv_conn_t *c, lv_session_t *s, const char *secret)
{
    if (c->trace.trace_id[0])
        s->trace = c->trace; /* the upgrade request's traceparent (docs/protocol.md "Tracing") */
    lv_log_ctx_t lctx = lv_trace_log_ctx(s, c->ip);
    LV_INFO_CTX(&lctx, "session %.8s %s", s->rec.id, secret ? "created" : "resumed");
    attach(c, s);
    send_session_hello(c, secret, secret == NULL);
    camera_sync(c->app, s); /* a started camera session resumed: camera_state after its session */
}

void lv_engine_hello_done(lv_conn_t *c, lv_session_t *s, const char *secret, int rc)
{
    if (c->kill)
        return; /* closing: nothing more goes out (a session made for it is detached and expires) */
    if (rc == 0 && s) {
        hello_answer(c, s, secret);
        return;
    }
    if (rc == LV_ENOTFOUND)
        send_session_not_found(c);
    else if (rc == LV_ELIMIT)
        send_too_many_sessions(c);
    else if (rc == LV_ECLOSED)
        send_cluster_unavailable(c);
    else
        lv_conn_send_error(c, "internal", "could not create or resume a session", NULL);
}

/* End s here: each page socket hears error `code` with `message` and is closed with
 * close_reason, its camera and WebRTC stream are let go (the stream hears gone_reason), and the
 * copy here is freed; forget also deletes its cluster record (this frontend's, when it owns it). */
static void session_end(lv_app_t *app, lv_session_t *s, const char *code, const char *message,
                        const char *close_reason, const char *gone_reason, bool forget)
{
    uint64_t now = lv_now_ms();
    lv_queue_t *n, *next;
    for (n = s->viewers.next; n != &s->viewers; n = next) {
        next = n->next;
        lv_viewer_t *v = LV_CONTAINER_OF(n, lv_viewer_t, link);
        if (v->ops != &ws_viewer_ops)
            continue;
        lv_conn_t *c = LV_CONTAINER_OF(v, lv_conn_t, viewer);
        lv_conn_send_error(c, code, message, NULL);
        lv_conn_close(c, LV_WS_CLOSE_NORMAL, close_reason);
        c->session = NULL; /* lv_engine_on_close then finds nothing to detach */
        lv_pipeline_detach_viewer(&app->pipe, s, &c->viewer, now);
        lv_pipeline_detach_source(&app->pipe, s, &c->source, now);
    }
    lv_cameras_unwatch_all(app->cameras, s);
    lv_offer_session_close(app, s, gone_reason);
    if (s->n_viewers || s->n_sources) {
        /* someone not known here still holds it (never a page's session): keep it, it expires */
        LV_WARN("session %.8s is still watched by something other than a page; it is kept", s->rec.id);
        return;
    }
    if (forget)
        lv_csess_session_gone(app, s);
    lv_pipeline_release(&app->pipe, s); /* queue place, credit, job */
    lv_registry_remove(app->reg, s);
}

void lv_engine_session_release(lv_app_t *app, lv_session_t *s, const char *code, const char *message)
{
    session_end(app, s, code, message, "session moved", "the session moved to another server", false);
}

void lv_engine_session_kick(lv_app_t *app, lv_session_t *s, const char *message)
{
    LV_INFO("session %.8s ended by an administrator", s->rec.id);
    session_end(app, s, "kicked_by_admin", message, "ended by an administrator", message, true);
}

void lv_engine_session_revoke(lv_app_t *app, lv_session_t *s, const char *code, const char *message)
{
    LV_INFO("session %.8s ended: %s", s->rec.id, code);
    session_end(app, s, code, message, "access revoked", message, true);
}

static void handle_hello(lv_conn_t *c, const lv_client_msg_t *m)
{
    lv_app_t *app = c->app;
    int rc;
    if (c->session) {
        lv_conn_send_error(c, "bad_message", "hello was already sent on this socket", NULL);
        return;
    }
    if (app->cluster && lv_csess_hello_pending(app, c)) {
        lv_conn_send_error(c, "bad_message", "the hello sent on this socket is still being answered", NULL);
        return;
    }
    if (m->session_id || m->resume_secret) {
        lv_session_t *s = NULL;
        if (!m->session_id || !m->resume_secret) {
            send_session_not_found(c);
            return;
        }
        /* In a cluster a session may live in Redis only (its frontend died, or the page came here
         * through the balancer), or its copy here may be stale (another frontend served it since:
         * only one with a socket here is surely ours). Those go asynchronous. While Redis is
         * unreachable nobody can take a session over, so a copy held here is resumed as it is (a
         * stale one is found out at its first write once Redis is back: session_moved). */
        lv_session_t *here = app->cluster ? lv_session_find(app->reg, m->session_id) : NULL;
        if (app->cluster && (!here || !lv_session_attached(here))) {
            rc = lv_csess_resume(app, c, m->session_id, m->resume_secret);
            if (rc == 0)
                return; /* lv_engine_hello_done answers */
            if (rc == LV_ENOTFOUND) {
                send_session_not_found(c);
                return;
            }
            if (!here) {
                send_cluster_unavailable(c);
                return;
            }
        }
        if (lv_session_resume(app->reg, m->session_id, m->resume_secret, &s) != 0) {
            send_session_not_found(c);
            return;
        }
        hello_answer(c, s, NULL);
        return;
    }
    lv_settings_t settings, base;
    lv_allow_t allow;
    const char *field = NULL, *why = NULL, *code;
    char msg[400];
    lv_allow_of(app, c->principal.tenant, &allow);
    lv_settings_defaults(&settings);
    lv_allow_default_model(app, &allow, settings.model, sizeof(settings.model)); /* the tenant's first */
    base = settings;
    if (m->settings) {
        if (lv_settings_apply_json(&settings, m->settings, &field, &why) != 0) {
            lv_conn_send_error(c, "invalid_setting", why ? why : "invalid setting", field);
            return;
        }
    }
    /* the tenant's word first: a forbidden backend is that, whatever it serves */
    if ((code = lv_allow_check(&allow, &settings, &field, msg, sizeof(msg))) != NULL) {
        lv_conn_send_error(c, code, msg, field);
        return;
    }
    if (m->settings && check_choice(app, &settings, &base, &field, msg, sizeof(msg)) != 0) {
        lv_conn_send_error(c, "invalid_setting", msg, field);
        return;
    }
    lv_allow_fill(&allow, &settings);
    lv_quota_over_t over;
    /* a cluster counts live sessions cluster-wide, the sessions quotas with them (admission) */
    if (!app->cluster && lv_quota_sessions_over(app, &c->principal, &over)) {
        send_sessions_quota(c, &over);
        return;
    }
    if (app->cluster) {
        /* the principal's (and its tenant's) live sessions are counted cluster-wide first;
         * nothing is made while Redis is unreachable */
        if (lv_csess_admit(app, c, &settings) != 0)
            send_cluster_unavailable(c);
        return; /* else lv_engine_hello_done answers */
    }
    char secret[65];
    lv_session_t *s = NULL;
    rc = lv_session_create(app->reg, c->principal.key, c->principal.tenant, &settings, secret, &s);
    if (rc == LV_ELIMIT) {
        send_too_many_sessions(c);
        return;
    }
    if (rc) {
        lv_conn_send_error(c, "internal", "could not create a session", NULL);
        return;
    }
    hello_answer(c, s, secret);
    memset(secret, 0, sizeof(secret));
}

/* The session's frames come from elsewhere now. A WebRTC stream that fed it is closed (a decoder
 * for nobody otherwise), and the credit the old source owed is dropped so the new one is asked at
 * once, not after the re-ask delay (max(5 s, 2 intervals)). Cameras follow in camera_sync. */
static void source_switched(lv_app_t *app, lv_session_t *s)
{
    if (strcmp(s->rec.settings.source, "webrtc") != 0)
        lv_offer_session_close(app, s, "the session's source changed");
    credit_clear(app, s);
    if (s->rec.started) {
        s->next_credit_ms = lv_now_ms();
        lv_pipeline_credit_reschedule(&app->pipe, s);
    }
}

/* next (checked) becomes s's settings: saved, every socket of s hears settings_updated, the source
 * switched when it changed. update_settings and POST /offer (lv_engine_set_source) both end here. */
static void settings_commit(lv_app_t *app, lv_session_t *s, const lv_settings_t *next)
{
    bool interval_changed = next->interval_ms != s->rec.settings.interval_ms;
    bool source_changed = strcmp(next->source, s->rec.settings.source) != 0;
    lv_pipeline_settings_changed(&app->pipe, s, next); /* the answer in progress was asked with the old ones */
    s->rec.settings = *next;
    if (interval_changed && s->rec.started && !s->credit_outstanding)
        s->next_credit_ms = lv_now_ms();
    if (interval_changed) /* due now, or its unanswered credit re-asked after two new intervals */
        lv_pipeline_credit_reschedule(&app->pipe, s);
    if (source_changed)
        source_switched(app, s);
    lv_session_save(app->reg, s);
    session_send_json(s, json_pack("{s:s, s:o}", "type", "settings_updated", "settings", lv_settings_to_json(next)));
    camera_sync(app, s);
}

static void handle_update_settings(lv_conn_t *c, const lv_client_msg_t *m)
{
    lv_session_t *s = c->session;
    const char *field = NULL, *why = NULL;
    if (!m->settings) {
        lv_conn_send_error(c, "bad_message", "update_settings needs a \"settings\" object", "settings");
        return;
    }
    lv_settings_t next = s->rec.settings;
    if (lv_settings_apply_json(&next, m->settings, &field, &why) != 0) {
        lv_conn_send_error(c, "invalid_setting", why ? why : "invalid setting", field);
        return;
    }
    char msg[400];
    /* the whole choice, changed or not (the tenant may have been narrowed since), and first */
    lv_allow_t allow;
    lv_allow_of(c->app, s->rec.tenant, &allow);
    const char *code = lv_allow_check(&allow, &next, &field, msg, sizeof(msg));
    if (code) {
        lv_conn_send_error(c, code, msg, field);
        return;
    }
    if (check_choice(c->app, &next, &s->rec.settings, &field, msg, sizeof(msg)) != 0) {
        lv_conn_send_error(c, "invalid_setting", msg, field);
        return;
    }
    lv_allow_fill(&allow, &next);
    s->refused_ms = 0; /* allowed again: a later narrowing is told again */
    settings_commit(c->app, s, &next);
}

void lv_engine_set_source(lv_app_t *app, lv_session_t *s, const char *source)
{
    if (strcmp(s->rec.settings.source, source) == 0)
        return;
    lv_settings_t next = s->rec.settings;
    snprintf(next.source, sizeof(next.source), "%s", source);
    settings_commit(app, s, &next);
}

/* A text message over the rate is dropped unread. The sender hears of it at most once a second, in
 * one error that says how many went since the last one: a reply per dropped message would let a
 * flood fill the socket's send queue and close it as a "slow reader" (docs/protocol.md, Caps). */
static void text_dropped(lv_conn_t *c, uint64_t now)
{
    c->rl_dropped++;
    lv_stat_rate_limited(c->app, "messages");
    if (c->rl_notice_ms && now - c->rl_notice_ms < RATE_NOTICE_MS)
        return;
    char msg[160];
    snprintf(msg, sizeof(msg), "too many messages: at most %d per second; %llu dropped", (int)RATE_MSGS_PER_S,
             (unsigned long long)c->rl_dropped);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "type", "error", "code", "rate_limited", "message", msg, "dropped",
                          (json_int_t)c->rl_dropped);
    if (o)
        conn_send_json(c, o);
    c->rl_notice_ms = now;
    c->rl_dropped = 0;
}

/* A page with a bug may send too fast for a moment; far beyond the rate for seconds on end is a
 * flood, and reading it costs the loop: the socket is closed (1008). 1 when it was. */
static int text_flood(lv_conn_t *c, uint64_t now)
{
    if (now - c->flood_win_ms >= 1000) {
        bool over = c->flood_win_n > FLOOD_FACTOR * RATE_MSGS_PER_S;
        /* a strike counts only for the window right before this one: a quiet second resets */
        c->flood_strikes = over && now - c->flood_win_ms < 2000 ? c->flood_strikes + 1 : 0;
        c->flood_win_ms = now;
        c->flood_win_n = 0;
    }
    if (++c->flood_win_n <= FLOOD_FACTOR * RATE_MSGS_PER_S || c->flood_strikes < FLOOD_SECONDS - 1)
        return 0;
    lv_log_ctx_t lctx = c->session ? lv_trace_log_ctx(c->session, c->ip) : (lv_log_ctx_t){.ip = c->ip};
    LV_WARN_CTX(&lctx, "closing a WebSocket from %s: more than %d text messages a second for %d s", c->ip,
                (int)(FLOOD_FACTOR * RATE_MSGS_PER_S), FLOOD_SECONDS);
    lv_stat_rate_limited(c->app, "flood");
    lv_conn_close(c, LV_WS_CLOSE_POLICY, "message flood");
    return 1;
}

static void handle_text(lv_conn_t *c, const char *p, size_t len)
{
    lv_client_msg_t m;
    const char *code = NULL, *text = NULL;
    uint64_t now = lv_now_ms();
    if (c->kill || text_flood(c, now))
        return;
    /* token bucket: RATE_MSGS_PER_S sustained, the same as burst */
    c->rl_tokens += (double)(now - c->rl_last_ms) * RATE_MSGS_PER_S / 1000.0;
    if (c->rl_tokens > RATE_MSGS_PER_S)
        c->rl_tokens = RATE_MSGS_PER_S;
    c->rl_last_ms = now;
    if (c->rl_tokens < 1.0) {
        text_dropped(c, now);
        return;
    }
    c->rl_tokens -= 1.0;
    if (lv_wsmsg_parse(p, len, MAX_TEXT_BYTES, MAX_JSON_DEPTH, &m, &code, &text) != 0) {
        lv_conn_send_error(c, code ? code : "bad_message", text ? text : "malformed message", NULL);
        return;
    }
    if (m.type == LV_MSG_HELLO) {
        handle_hello(c, &m);
        goto out;
    }
    if (m.type == LV_MSG_UNKNOWN) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown message type '%.64s'", m.type_name ? m.type_name : "");
        lv_conn_send_error(c, "unknown_type", msg, NULL);
        goto out;
    }
    if (!c->session) {
        lv_conn_send_error(c, "hello_required", "send {\"type\":\"hello\"} first", NULL);
        goto out;
    }
    lv_session_t *s = c->session;
    switch (m.type) {
    case LV_MSG_UPDATE_SETTINGS:
        handle_update_settings(c, &m);
        break;
    case LV_MSG_START:
        /* a viewer gets no credits: it may start a camera's session (the camera wall), never one
         * whose frames it would send itself */
        if (c->principal.role == LV_PRINCIPAL_VIEWER && strncmp(s->rec.settings.source, "camera:", 7) != 0) {
            lv_conn_send_error(c, "forbidden_role",
                               "this account is a viewer: it may watch a camera, not send frames to a model", NULL);
            break;
        }
        lv_pipeline_start(&c->app->pipe, s, now);
        lv_session_save(c->app->reg, s);
        session_send_json(s, json_pack("{s:s}", "type", "started"));
        camera_sync(c->app, s);
        break;
    case LV_MSG_STOP:
        lv_pipeline_stop(&c->app->pipe, s, now);
        lv_session_save(c->app->reg, s);
        session_send_json(s, json_pack("{s:s}", "type", "stopped"));
        camera_sync(c->app, s);
        break;
    case LV_MSG_PING: {
        json_t *o = json_pack("{s:s}", "type", "pong");
        if (m.t)
            json_object_set(o, "t", m.t);
        conn_send_json(c, o);
        break;
    }
    default:
        break;
    }
out:
    lv_wsmsg_free(&m);
}

/* The session's tenant may have been narrowed since it chose its model and backend (an admin,
 * `livevlm tenant set`: the snapshot is current within a second). Asked before each credit and
 * each page frame. The tenant's backends are copied into its settings here too, so its next job
 * is dispatched among the current ones. Refused: its sockets hear model_not_allowed or
 * backend_not_allowed once (until it is allowed again, or changes its settings), and it gets no
 * credits. A request already running ends (at most one answer per session). */
static bool tenant_refuses(lv_app_t *app, lv_session_t *s)
{
    lv_allow_t allow;
    const char *field = NULL;
    char msg[400];
    lv_allow_of(app, s->rec.tenant, &allow);
    lv_allow_fill(&allow, &s->rec.settings); /* not saved: a server-side field (lv_settings.h) */
    const char *code = lv_allow_check(&allow, &s->rec.settings, &field, msg, sizeof(msg));
    if (!code) {
        s->refused_ms = 0;
        return false;
    }
    if (!s->refused_ms) {
        s->refused_ms = lv_now_ms();
        LV_INFO("session %.8s: %s", s->rec.id, msg);
        session_send_json(s, json_pack("{s:s, s:s, s:s, s:s}", "type", "error", "code", code, "message", msg,
                                       "field", field));
    }
    return true;
}

static void reject_frame(lv_conn_t *c, const char *code, const char *message, const char *reason)
{
    c->session->frames_rejected++;
    lv_stat_drop(c->app, reason);
    lv_conn_send_error(c, code, message, NULL);
}

bool lv_engine_frame_budget_take(lv_app_t *app, const char *principal, uint64_t now_ms)
{
    if (!app->cluster)
        return lv_iptable_frame_allowed(app->ips, principal, app->cfg.user_fpm, now_ms);
    if (!lv_cluster_fpm_allows(app->cluster, principal, (unsigned)app->cfg.user_fpm))
        return false;
    lv_cluster_fpm_count(app->cluster, principal);
    return true;
}

int lv_engine_frame_budget_retry_s(lv_app_t *app, const char *principal, uint64_t now_ms)
{
    if (app->cluster) /* the cluster's minute is the wall clock's */
        return (int)(lv_cluster_fpm_retry_ms(app->cluster) / 1000) + 1;
    return (int)(lv_iptable_frame_retry_ms(app->ips, principal, now_ms) / 1000) + 1;
}

static void handle_frame(lv_conn_t *c, const unsigned char *p, size_t len)
{
    lv_app_t *app = c->app;
    lv_session_t *s = c->session;
    lv_frame_hdr_t hdr;
    lv_jpeg_info_t info;
    const char *why = NULL;
    uint64_t t0 = lv_now_us();
    if (c->principal.role == LV_PRINCIPAL_VIEWER) { /* docs/internals/accounts.md "Roles" */
        lv_conn_send_error(c, "forbidden_role", "this account is a viewer: it may watch, not send frames to a model",
                           NULL);
        return;
    }
    if (!s) {
        lv_conn_send_error(c, "hello_required", "send {\"type\":\"hello\"} before frames", NULL);
        return;
    }
    s->frames_received++;
    if (lv_frame_parse(p, len, &hdr) != 0) {
        reject_frame(c, "bad_frame", "a frame must be a JPEG, bare or behind the 16-byte LVF1 header", "rejected");
        return;
    }
    lv_jpeg_caps_t caps = {app->cfg.max_frame_bytes, app->cfg.max_frame_side, app->cfg.max_frame_pixels};
    int rc = lv_jpeg_check(hdr.jpeg, hdr.jpeg_len, &caps, &info, &why);
    if (rc != 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "frame rejected: %s", why ? why : "invalid JPEG");
        reject_frame(c, rc == LV_ELIMIT ? "frame_too_large" : "bad_frame", msg, "rejected");
        return;
    }
    /* a frame answers the outstanding credit when it names it, or names none (a bare JPEG, or
     * id 0): a client that does not use the header is still asked at its interval */
    if (s->credit_outstanding && (hdr.credit_id == 0 || hdr.credit_id == s->credit_outstanding))
        credit_clear(app, s);
    if (!s->rec.started) {
        reject_frame(c, "not_started", "send {\"type\":\"start\"} before frames", "not_started");
        return;
    }
    if (tenant_refuses(app, s)) { /* its viewers were told once */
        s->frames_rejected++;
        lv_stat_drop(app, "not_allowed");
        return;
    }
    uint64_t now_ms = t0 / 1000;
    if (app->cfg.user_fpm > 0 && !lv_engine_frame_budget_take(app, s->rec.principal, now_ms)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "frame rate limit: at most %d frames per minute per user; frames are accepted "
                 "again in %d s", app->cfg.user_fpm, lv_engine_frame_budget_retry_s(app, s->rec.principal, now_ms));
        lv_stat_rate_limited(app, "frames");
        reject_frame(c, "rate_limited", msg, "rate_limited");
        return;
    }
    lv_frame_t *f = lv_frame_new(hdr.jpeg, hdr.jpeg_len);
    if (!f)
        return;
    f->recv_us = t0;
    f->capture_age_ms = hdr.capture_age_ms;
    f->width = info.width;
    f->height = info.height;
    app->frames_total++;
    if (lv_pipeline_put_frame(&app->pipe, s, f))
        lv_stat_drop(app, "replaced");
    lv_stat_frame_received(app, lv_now_us() - t0);
}

void lv_engine_on_message(lv_conn_t *c, const char *p, size_t len, bool binary)
{
    if (binary)
        handle_frame(c, (const unsigned char *)p, len);
    else
        handle_text(c, p, len);
}

void lv_engine_on_close(lv_conn_t *c)
{
    lv_session_t *s = c->session;
    if (c->app->cluster)
        lv_csess_conn_closed(c->app, c); /* a hello still in flight is answered to nobody */
    if (!s)
        return;
    uint64_t now = lv_now_ms();
    c->session = NULL;
    lv_pipeline_detach_viewer(&c->app->pipe, s, &c->viewer, now);
    lv_pipeline_detach_source(&c->app->pipe, s, &c->source, now);
    camera_sync(c->app, s);
}

/* ---------- periodic work ---------- */

static void credit_clear(lv_app_t *app, lv_session_t *s) { lv_pipeline_credit_clear(&app->pipe, s); }

/* The pipeline's hooks (lv_pipeline.h): metrics, and the principal's frame budget. */
static void pipe_kick(void *ud) { engine_kick(ud); }
static void pipe_dropped(void *ud, const char *reason) { lv_stat_drop((lv_app_t *)ud, reason); }

/* Over a quota (lv_quota.h): no credit until it renews (the tick asks again), and the session's
 * sockets hear quota_exceeded once per refusal (docs/protocol.md). */
static bool quota_allows(lv_app_t *app, const lv_session_t *s)
{
    lv_quota_over_t why;
    if (!lv_quota_over(app, s->rec.principal, s->rec.tenant, &why))
        return true;
    if (!why.hold && lv_quota_tell_once(app, s->rec.id, &why)) {
        json_t *o = quota_exceeded_json(&why);
        if (o)
            session_send_json((lv_session_t *)s, o); /* sending does not change the session */
        lv_usage_count_refusal(app, why.scope, why.quota);
    }
    return false;
}

static bool pipe_credit_allowed(void *ud, const lv_session_t *s, uint64_t now)
{
    lv_app_t *app = ud;
    /* the cast: only the server's own fields change (allow_backends, refused_ms) */
    if (tenant_refuses(app, (lv_session_t *)s))
        return false;
    if (!quota_allows(app, s))
        return false;
    if (app->cfg.user_fpm > 0 &&
        !(app->cluster /* the budget is the principal's across every frontend */
              ? lv_cluster_fpm_allows(app->cluster, s->rec.principal, (unsigned)app->cfg.user_fpm)
              : lv_iptable_frame_would_allow(app->ips, s->rec.principal, app->cfg.user_fpm, now)))
        return false;
    /* a credit is granted right after this answer: its frame is charged now (a camera's or a
     * WebRTC stream's frames never pass handle_frame) */
    lv_quota_frame(app, s->rec.principal, s->rec.tenant);
    lv_usage_count_frame(app, s->rec.tenant);
    return true;
}

static void pipe_dispatched(void *ud, double queue_wait_ms, double frame_age_ms)
{
    lv_stat_dispatch(ud, queue_wait_ms, frame_age_ms);
}

static void pipe_answered(void *ud, const lv_job_t *job, const lv_dispatch_result_t *r, double latency_ms,
                          uint64_t gateway_us)
{
    lv_app_t *app = ud;
    lv_log_ctx_t lctx = lv_trace_log_ctx(job->session, NULL);
    lctx.answer = job->answer_id;
    lctx.backend = job->backend_id;
    lctx.model = job->model;
    LV_DEBUG_CTX(&lctx, "answer %llu of session %.8s: %d tokens in %.0f ms", (unsigned long long)job->answer_id,
                 job->session->rec.id, r->tokens, latency_ms);
    app->answers_total++;
    lv_stat_answer(app, r->ttft_us, latency_ms, gateway_us);
}

/* Every answer's and error's end is journaled before the page hears it (lv_usage.h), and charged
 * to the principal's quotas. A follower or a kept answer (docs/internals/coalescing.md) cost no
 * backend work of its own: it is recorded with no tokens. */
static void pipe_answer_end(void *ud, const lv_job_t *view, const lv_dispatch_result_t *r)
{
    lv_app_t *app = ud;
    const lv_session_t *s = view->session;
    bool own = !view->lead && view->dispatch_us;
    lv_usage_t u;
    memset(&u, 0, sizeof(u));
    /* unique across sessions: 20 hex of the session id (80 random bits) and its answer number */
    snprintf(u.answer_id, sizeof(u.answer_id), "%.20s-%llu", s->rec.id, (unsigned long long)view->answer_id);
    u.t_ms = (int64_t)lv_wall_ms();
    snprintf(u.tenant, sizeof(u.tenant), "%s", s->rec.tenant[0] ? s->rec.tenant : "default");
    snprintf(u.user_id, sizeof(u.user_id), "%.32s", lv_quota_user_of(s->rec.principal));
    snprintf(u.session_id, sizeof(u.session_id), "%s", s->rec.id);
    snprintf(u.backend, sizeof(u.backend), "%.64s", view->backend_id);
    snprintf(u.model, sizeof(u.model), "%.128s", view->model);
    u.image_bytes = view->frame ? (int64_t)view->frame->len : 0;
    if (own) {
        u.prompt_tokens = r->prompt_tokens > 0 ? r->prompt_tokens : 0;
        u.completion_tokens = r->tokens > 0 ? r->tokens : 0;
        u.backend_ms = (int64_t)((lv_now_us() - view->dispatch_us) / 1000u);
    }
    snprintf(u.outcome, sizeof(u.outcome), "%s",
             r->rc == 0 ? "ok" : r->error_code && strcmp(r->error_code, "backend_timeout") == 0 ? "timeout" : "error");
    lv_usage_record(app, &u);
    lv_quota_answer(app, s->rec.principal, u.tenant, u.prompt_tokens + u.completion_tokens, r->rc == 0);
}

static void pipe_failed(void *ud, const char *code)
{
    lv_app_t *app = ud;
    app->errors_total++;
    lv_stat_error(app, code);
}

static void pipe_cancelled(void *ud, const char *reason) { lv_stat_cancel(ud, reason); }
static void pipe_coalesced(void *ud, const lv_job_t *follower)
{
    (void)follower;
    lv_stat_coalesced(ud);
}
static void local_retried(void *ud) { lv_stat_retry(ud); }
static void local_shaped(void *ud, double ms) { lv_stat_shape(ud, ms); }

static void send_stats_and_deadlines(lv_app_t *app, uint64_t now)
{
    size_t len = 0;
    const char *stats = app->sysmon ? lv_sysmon_json(app->sysmon, &len) : NULL;
    lv_msg_t *msg = NULL;
    lv_queue_t *n, *next;
    for (n = app->conns.next; n != &app->conns; n = next) {
        next = n->next;
        lv_conn_t *c = LV_CONTAINER_OF(n, lv_conn_t, app_link);
        if (!c->session) {
            /* a hello waiting for Redis is not late: it is answered, or ends with its socket */
            if (now - c->opened_ms > HELLO_TIMEOUT_MS && !(app->cluster && lv_csess_hello_pending(app, c))) {
                lv_conn_send_error(c, "hello_required", "no hello within 10 s", NULL);
                lv_conn_close(c, LV_WS_CLOSE_POLICY, "no hello");
            }
            continue;
        }
        int every = c->session->rec.settings.stats_interval_ms;
        if (!stats || every <= 0 || now - c->last_stats_ms < (uint64_t)every)
            continue;
        if (!msg) {
            /* rendered once per tick for every socket that is due, in place */
            static const char head[] = "{\"type\":\"gpu_stats\",\"stats\":";
            lv_buf_t b;
            msg = lv_msg_text_start(sizeof(head) + len, &b);
            if (!msg)
                return;
            if (lv_buf_append(&b, head, sizeof(head) - 1) == 0 && lv_buf_append(&b, stats, len) == 0 &&
                lv_buf_append(&b, "}", 1) == 0) {
                msg = lv_msg_text_finish(msg, &b);
            } else {
                lv_msg_unref(msg);
                return;
            }
        }
        c->last_stats_ms = now;
        lv_conn_send(c, msg);
    }
    lv_msg_unref(msg);
}

static void on_tick(uv_timer_t *t)
{
    lv_app_t *app = t->data;
    uint64_t now = lv_now_ms();
    lv_pipeline_tick(&app->pipe, now);
    lv_analyze_reap(app);
    if (now - app->last_slow_tick_ms >= 100) {
        app->last_slow_tick_ms = now;
        send_stats_and_deadlines(app, now);
    }
}

static void before_free(lv_session_t *s, void *ud)
{
    lv_app_t *app = ud;
    lv_csess_session_gone(app, s); /* cluster: its record goes too, if this frontend owns it */
    lv_cameras_unwatch_all(app->cameras, s);
    lv_pipeline_release(&app->pipe, s); /* queue place, credit, job */
    lv_log_ctx_t lctx = lv_trace_log_ctx(s, NULL);
    LV_INFO_CTX(&lctx, "session %.8s expired after %d s without a socket", s->rec.id, app->cfg.session_idle_s);
}

static void before_evict(lv_session_t *s, void *ud)
{
    lv_app_t *app = ud;
    lv_csess_session_gone(app, s);
    lv_cameras_unwatch_all(app->cameras, s);
    lv_pipeline_release(&app->pipe, s); /* queue place, credit, job */
    lv_log_ctx_t lctx = lv_trace_log_ctx(s, NULL);
    LV_INFO_CTX(&lctx, "session %.8s (no socket) gave way to a new session from the same address (%zu per address)",
                s->rec.id, app->cfg.max_sessions_per_ip);
}

static void on_sweep(uv_timer_t *t)
{
    lv_app_t *app = t->data;
    lv_registry_sweep(app->reg, lv_now_ms(), (uint64_t)app->cfg.session_idle_s * 1000u, 4096, before_free, app);
}

int lv_engine_start(lv_app_t *app)
{
    if (lv_drr_init(&app->drr, 1) != 0 || lv_stat_create(app) != 0)
        return LV_ENOMEM;
    lv_drr_track_jobs(&app->drr); /* fair share of the slots in flight, not only of turns */
    for (size_t i = 0; i < app->cfg.n_user_weights; i++)
        if (lv_drr_set_weight(&app->drr, app->cfg.user_weights[i].user, app->cfg.user_weights[i].weight) != 0)
            LV_WARN("user weight for %s not applied", app->cfg.user_weights[i].user);
    lv_fair_apply(app); /* the accounts' tenant and user weights, when the snapshot came first */
    lv_dispatch_local_cfg_t dcfg = {
        .connect_timeout_ms = app->cfg.connect_timeout_ms,
        .first_token_timeout_ms = app->cfg.first_token_timeout_ms,
        .total_timeout_ms = app->cfg.total_timeout_ms,
        .stream_idle_timeout_ms = app->cfg.stream_idle_timeout_ms,
        .max_frame_bytes = app->cfg.max_frame_bytes,
        .no_backend_help = app->no_backend_help,
        .ud = app,
        .retried = local_retried,
        .shaped = local_shaped,
    };
    if (app->cluster)
        app->dispatch = lv_cluster_dispatch(app->cluster); /* the cluster's queue; the cluster owns it */
    else if (lv_dispatch_local_create(app->loop, app->pool, &dcfg, &app->dispatch) != 0)
        return LV_ENOMEM;
    if (!app->dispatch)
        return LV_EIO;
    lv_pipeline_hooks_t hooks = {
        .ud = app,
        .kick = pipe_kick,
        .credit_allowed = pipe_credit_allowed,
        .dropped = pipe_dropped,
        .dispatched = pipe_dispatched,
        .answered = pipe_answered,
        .answer_end = pipe_answer_end,
        .failed = pipe_failed,
        .cancelled = pipe_cancelled,
        .coalesced = pipe_coalesced,
    };
    if (lv_pipeline_init(&app->pipe, app->reg, &app->drr, app->dispatch, &hooks) != 0)
        return LV_EIO;
    if (lv_analyze_init(app) != 0)
        return LV_ENOMEM;
    /* the journal's replay is queued before any request can reach the database */
    if (lv_usage_start(app) != 0)
        LV_ERROR("usage: the journal could not be opened; answers are served but not recorded");
    if (lv_quota_start(app) != 0)
        return LV_ENOMEM;
    app->pipe.max_frame_age_ms = app->cfg.max_frame_age_ms;
    app->pipe.detached_cancel_ms = app->cfg.detached_cancel_ms;
    app->pipe.delta_rate = app->cfg.delta_rate;
    lv_registry_set_evict_cb(app->reg, before_evict, app);
    if (app->cfg.n_cameras > 0) {
        char err[300] = "";
        app->cameras = lv_cameras_new(app->loop, &app->pipe, app->cfg.cameras, app->cfg.n_cameras, on_camera_state,
                                      app, err, sizeof(err));
        if (!app->cameras) {
            LV_ERROR("cameras: %s", err);
            return LV_EIO;
        }
        LV_INFO("%zu camera(s) defined; each is opened when the first session watches it", app->cfg.n_cameras);
    }
    uv_timer_init(app->loop, &app->tick);
    uv_timer_init(app->loop, &app->sweep);
    uv_timer_init(app->loop, &app->kick);
    app->tick.data = app->sweep.data = app->kick.data = app;
    uv_timer_start(&app->tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_start(&app->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    return 0;
}

void lv_engine_stop(lv_app_t *app)
{
    /* the cameras' pipelines go down on the thread pool; the set frees itself when they are down */
    lv_cameras_close(app->cameras);
    app->cameras = NULL;
    /* cancel every backend call before the pool goes */
    lv_analyze_stop(app);
    lv_pipeline_shutdown(&app->pipe);
    lv_usage_stop(app); /* the last answers' records are queued for the database, which closes later */
    lv_quota_stop(app);
    if (!app->cluster)
        lv_dispatch_local_close(app->dispatch);
    app->dispatch = NULL;
    uv_timer_stop(&app->tick);
    uv_timer_stop(&app->sweep);
    uv_timer_stop(&app->kick);
    uv_close((uv_handle_t *)&app->tick, NULL);
    uv_close((uv_handle_t *)&app->sweep, NULL);
    uv_close((uv_handle_t *)&app->kick, NULL);
}
