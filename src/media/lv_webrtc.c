/* lv_webrtc.c - WebRTC ingest (lv_webrtc.h; design in docs/internals/webrtc.md): webrtcbin per
 * offer, its video decoded into a frame grabber (lv_grab.h) that the offer's session watches. */
#define GST_USE_UNSTABLE_API /* webrtcbin's headers ask for it */
#include "lv_webrtc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#include <gst/webrtc/webrtc.h>

#include "lv_common.h"
#include "lv_grab.h"
#include "lv_log.h"
#include "lv_principal.h"
#include "lv_queue.h"

#define SWEEP_MS 250
#define PROMISE_MS 5000   /* one negotiation step (set-remote, create-answer, set-local) */
#define MAX_CANDIDATES 64 /* gathered candidates kept for the answer */
#define REASON_MAX 200

/* What GStreamer's threads tell the loop (bits of feed_t.events). */
enum { EV_GATHERED = 1u << 0, EV_ENDED = 1u << 1 };

typedef enum { FEED_NEGOTIATING, FEED_LIVE, FEED_CLOSING } feed_state_t;

struct lv_webrtc_feed {
    lv_webrtc_t *w;
    lv_queue_t link; /* w->feeds while not closing, then w->closing until freed */
    feed_state_t state;
    lv_session_t *session; /* while watching (the session cannot go while we watch it) */
    char principal[LV_PRINCIPAL_KEY_MAX];
    char session_id[80];
    lv_grab_t *grab;
    GstElement *pipeline, *webrtc, *sink;
    char *offer;            /* the offer's text, for the setup work; freed after it */
    lv_webrtc_answer_fn fn; /* NULL once answered or abandoned */
    void *user;
    uv_work_t work; /* setup, answer readout or teardown: one at a time (job_start) */
    uv_work_cb job_work;
    uv_after_work_cb job_after;
    bool work_busy;   /* a job is waiting, queued or running; its after-callback is owed */
    bool job_waiting; /* in w->jobs_waiting (job_link), not yet handed to libuv */
    lv_queue_t job_link;
    bool answer_asked; /* the answer readout was queued */
    bool gather_timed_out;
    char *answer; /* the readout's result (owned) */
    char setup_error[REASON_MAX];
    uint64_t started_ms, answered_ms;
    /* shared with GStreamer's threads, under w->mu */
    lv_queue_t event_link; /* in w->events while events != 0 */
    bool event_queued;
    unsigned events;
    char end_reason[REASON_MAX];
    char *candidates[MAX_CANDIDATES]; /* "candidate:..." lines as gathered, by mline */
    unsigned cand_mline[MAX_CANDIDATES];
    size_t n_candidates;
    int video_linked; /* the first video pad is decoded, later ones go to a fakesink */
};

struct lv_webrtc {
    uv_loop_t *loop;
    lv_pipeline_t *pipe;
    lv_webrtc_opts_t opts;
    char stun[256];
    uv_async_t async;
    uv_timer_t sweep;
    GMutex mu;         /* events */
    lv_queue_t events; /* feed_t.event_link */
    lv_queue_t feeds;   /* feed_t.link */
    lv_queue_t closing; /* feed_t.link of ended feeds whose pipeline is not freed yet */
    size_t n_feeds;     /* in feeds */
    size_t n_alive;     /* feeds not yet freed (closing ones included) */
    size_t peak_alive;
    /* GStreamer's jobs hold at most jobs_max of the libuv pool's threads at once, so that JPEG
     * encodes and frame shaping always keep the rest; the others wait in jobs_waiting */
    size_t jobs_running, jobs_max;
    lv_queue_t jobs_waiting; /* feed_t.job_link */
    /* GStreamer's own start (lv_webrtc_create): on the pool, once */
    uv_work_t init_work;
    bool init_busy;
    int init_rc;     /* LV_EAGAIN while it runs, then 0 or LV_EIO (loop thread) */
    int init_result; /* written by the job, read after it (init_done) */
    char init_why[REASON_MAX];
    lv_webrtc_ready_fn ready_fn;
    void *ready_user;
    uint32_t next_uid;
    bool destroying;
    int handles_open;
    lv_webrtc_stats_t stats;
};

static void feed_end(lv_webrtc_feed_t *f, const char *reason, bool tell_viewers);
static void queue_answer(lv_webrtc_feed_t *f);

/* ---------- GStreamer's threads ---------- */

/* Hand events to the loop. First reason wins: it is the one that ended the feed. */
static void post_event(lv_webrtc_feed_t *f, unsigned ev, const char *reason)
{
    lv_webrtc_t *w = f->w;
    g_mutex_lock(&w->mu);
    f->events |= ev;
    if (reason && !f->end_reason[0])
        snprintf(f->end_reason, sizeof(f->end_reason), "%s", reason);
    if (!f->event_queued) {
        f->event_queued = true;
        lv_queue_insert_tail(&w->events, &f->event_link);
    }
    g_mutex_unlock(&w->mu);
    uv_async_send(&w->async);
}

static void on_gathering(GObject *obj, GParamSpec *ps, gpointer ud)
{
    GstWebRTCICEGatheringState st;
    g_object_get(obj, "ice-gathering-state", &st, NULL);
    if (st == GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE)
        post_event(ud, EV_GATHERED, NULL);
}

static void on_ice_state(GObject *obj, GParamSpec *ps, gpointer ud)
{
    GstWebRTCICEConnectionState st;
    g_object_get(obj, "ice-connection-state", &st, NULL);
    /* "disconnected" is often transient (a network change); the no-video watchdog covers it */
    if (st == GST_WEBRTC_ICE_CONNECTION_STATE_FAILED)
        post_event(ud, EV_ENDED, "the connection failed (ICE)");
    else if (st == GST_WEBRTC_ICE_CONNECTION_STATE_CLOSED)
        post_event(ud, EV_ENDED, "the peer closed the connection");
}

/* Kept so the answer carries every candidate even where the local description lacks some. */
static void on_ice_candidate(GstElement *webrtc, guint mline, gchar *cand, gpointer ud)
{
    lv_webrtc_feed_t *f = ud;
    g_mutex_lock(&f->w->mu);
    if (f->n_candidates < MAX_CANDIDATES && cand && strncmp(cand, "candidate:", 10) == 0) {
        f->candidates[f->n_candidates] = g_strdup(cand);
        f->cand_mline[f->n_candidates++] = mline;
    }
    g_mutex_unlock(&f->w->mu);
}

/* A pad nobody decodes (audio, a second video stream) still has to flow somewhere. */
static void to_fakesink(lv_webrtc_feed_t *f, GstPad *pad)
{
    GstElement *sink = gst_element_factory_make("fakesink", NULL);
    if (!sink)
        return;
    g_object_set(sink, "async", FALSE, "sync", FALSE, NULL);
    gst_bin_add(GST_BIN(f->pipeline), sink);
    gst_element_sync_state_with_parent(sink);
    GstPad *sp = gst_element_get_static_pad(sink, "sink");
    gst_pad_link(pad, sp);
    gst_object_unref(sp);
}

static void on_decoded_pad(GstElement *dec, GstPad *pad, gpointer ud)
{
    lv_webrtc_feed_t *f = ud;
    GstCaps *caps = gst_pad_get_current_caps(pad);
    if (!caps)
        caps = gst_pad_query_caps(pad, NULL);
    const char *name = caps && gst_caps_get_size(caps) ? gst_structure_get_name(gst_caps_get_structure(caps, 0)) : "";
    bool raw_video = g_str_has_prefix(name, "video/x-raw");
    if (caps)
        gst_caps_unref(caps);
    GstPad *sp = raw_video && f->sink ? gst_element_get_static_pad(f->sink, "sink") : NULL;
    if (sp && !gst_pad_is_linked(sp) && gst_pad_link(pad, sp) == GST_PAD_LINK_OK) {
        gst_object_unref(sp);
        return;
    }
    if (sp)
        gst_object_unref(sp);
    to_fakesink(f, pad);
}

/* A new stream from the peer: the first video one is decoded (decodebin picks the depayloader
 * and decoder for VP8 or H.264); anything else is swallowed. */
static void on_pad_added(GstElement *webrtc, GstPad *pad, gpointer ud)
{
    lv_webrtc_feed_t *f = ud;
    if (GST_PAD_DIRECTION(pad) != GST_PAD_SRC)
        return;
    GstCaps *caps = gst_pad_get_current_caps(pad);
    if (!caps)
        caps = gst_pad_query_caps(pad, NULL);
    const char *media = NULL;
    if (caps && gst_caps_get_size(caps))
        media = gst_structure_get_string(gst_caps_get_structure(caps, 0), "media");
    bool video = media && strcmp(media, "video") == 0;
    if (caps)
        gst_caps_unref(caps);
    if (!video || !g_atomic_int_compare_and_exchange(&f->video_linked, 0, 1)) {
        to_fakesink(f, pad);
        return;
    }
    GstElement *dec = gst_element_factory_make("decodebin", NULL);
    if (!dec) {
        post_event(f, EV_ENDED, "the GStreamer element decodebin is missing");
        return;
    }
    g_signal_connect(dec, "pad-added", G_CALLBACK(on_decoded_pad), f);
    gst_bin_add(GST_BIN(f->pipeline), dec);
    gst_element_sync_state_with_parent(dec);
    GstPad *dp = gst_element_get_static_pad(dec, "sink");
    if (gst_pad_link(pad, dp) != GST_PAD_LINK_OK)
        post_event(f, EV_ENDED, "the video stream could not be linked to a decoder");
    gst_object_unref(dp);
}

static GstBusSyncReply on_bus(GstBus *bus, GstMessage *msg, gpointer ud)
{
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
        GError *err = NULL;
        gst_message_parse_error(msg, &err, NULL);
        char reason[REASON_MAX];
        snprintf(reason, sizeof(reason), "the video pipeline failed: %s", err ? err->message : "unknown error");
        if (err)
            g_error_free(err);
        post_event(ud, EV_ENDED, reason);
    }
    /* nobody pops this bus: nothing may pile up on it. A sync handler that drops a message owns
     * it (GstBusSyncHandler): without this unref every message, with its ref on the element that
     * posted it, leaked, and no feed's pipeline (webrtcbin and its ICE and pc threads) was ever
     * finalised */
    gst_message_unref(msg);
    return GST_BUS_DROP;
}

/* ---------- thread pool ---------- */

/* One promise's waiter. It belongs to the promise (freed by the promise's destroy notify), not to
 * the waiting thread's stack: webrtcbin may reply after we interrupted (GstPromise then runs the
 * change function a second time) or hold its reference past our unref, and every such late call
 * must still find the waiter alive. A fresh waiter per step: no late call lands on the next one. */
typedef struct {
    GMutex mu;
    GCond cond;
    bool done;
} waiter_t;

static void waiter_free(gpointer ud)
{
    waiter_t *wt = ud;
    g_mutex_clear(&wt->mu);
    g_cond_clear(&wt->cond);
    g_free(wt);
}

static void promise_changed(GstPromise *p, gpointer ud)
{
    waiter_t *wt = ud;
    g_mutex_lock(&wt->mu);
    wt->done = true;
    g_cond_signal(&wt->cond);
    g_mutex_unlock(&wt->mu);
}

/* Wait for p at most PROMISE_MS; a promise webrtcbin never answers is interrupted. Returns only
 * once promise_changed has run for this step: GstPromise changes its result under its lock and
 * calls the change function after unlocking, so gst_promise_wait can return first (and an
 * interrupt that loses to a reply does not call it). true when p was replied to; *reply is then
 * the reply (NULL is a plain success). */
static bool promise_wait(GstPromise *p, waiter_t *wt, const GstStructure **reply)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)PROMISE_MS * 1000;
    g_mutex_lock(&wt->mu);
    while (!wt->done)
        if (!g_cond_wait_until(&wt->cond, &wt->mu, deadline))
            break;
    bool done = wt->done;
    g_mutex_unlock(&wt->mu);
    if (!done)
        gst_promise_interrupt(p);
    bool replied = gst_promise_wait(p) == GST_PROMISE_RESULT_REPLIED;
    g_mutex_lock(&wt->mu);
    while (!wt->done) /* whoever changed the result (reply or interrupt) calls it: not long */
        g_cond_wait(&wt->cond, &wt->mu);
    g_mutex_unlock(&wt->mu);
    *reply = replied ? gst_promise_get_reply(p) : NULL;
    return replied;
}

static GstPromise *promise_new(waiter_t **out)
{
    waiter_t *wt = g_new0(waiter_t, 1);
    g_mutex_init(&wt->mu);
    g_cond_init(&wt->cond);
    *out = wt;
    return gst_promise_new_with_change_func(promise_changed, wt, waiter_free);
}

/* Our reference goes; the waiter goes with the promise's last one. */
static void promise_free(GstPromise *p)
{
    gst_promise_unref(p);
}

/* One negotiation step's outcome: false, with why, when it timed out or its reply carries an
 * error (webrtcbin 1.22 puts a GError in "error"). */
static bool step_ok(bool replied, const GstStructure *reply, char *why, size_t why_size, const char *step)
{
    GError *err = NULL;
    if (!replied) {
        snprintf(why, why_size, "%s did not finish within %d ms", step, PROMISE_MS);
        return false;
    }
    if (reply && gst_structure_has_field(reply, "error") &&
        gst_structure_get(reply, "error", G_TYPE_ERROR, &err, NULL)) {
        snprintf(why, why_size, "%s failed: %s", step, err ? err->message : "unknown error");
        if (err)
            g_error_free(err);
        return false;
    }
    return true;
}

static bool has_description(GstElement *webrtc, const char *which)
{
    GstWebRTCSessionDescription *d = NULL;
    g_object_get(webrtc, which, &d, NULL);
    if (d)
        gst_webrtc_session_description_free(d);
    return d != NULL;
}

/* Video is received only; audio is answered inactive (livevlm looks at pictures). */
static void set_directions(GstElement *webrtc)
{
    GArray *ts = NULL;
    g_signal_emit_by_name(webrtc, "get-transceivers", &ts);
    for (guint i = 0; ts && i < ts->len; i++) {
        GstWebRTCRTPTransceiver *t = g_array_index(ts, GstWebRTCRTPTransceiver *, i);
        GstWebRTCKind kind = GST_WEBRTC_KIND_UNKNOWN;
        g_object_get(t, "kind", &kind, NULL);
        g_object_set(t, "direction",
                     kind == GST_WEBRTC_KIND_VIDEO ? GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY
                                                   : GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE,
                     NULL);
    }
    if (ts)
        g_array_unref(ts);
}

/* Start the pipeline and negotiate: remote offer, answer, local answer. Gathering then runs on
 * and on_gathering tells the loop when it is complete. */
static void setup_work(uv_work_t *req)
{
    lv_webrtc_feed_t *f = req->data;
    GstSDPMessage *msg = NULL;
    GstWebRTCSessionDescription *offer = NULL, *answer = NULL;
    waiter_t *wt;
    GstPromise *p;
    const GstStructure *reply = NULL;
    if (gst_element_set_state(f->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
        snprintf(f->setup_error, sizeof(f->setup_error), "the WebRTC pipeline did not start");
        goto out;
    }
    if (gst_sdp_message_new_from_text(f->offer, &msg) != GST_SDP_OK) {
        snprintf(f->setup_error, sizeof(f->setup_error), "GStreamer could not parse the offer");
        goto out;
    }
    offer = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_OFFER, msg);
    msg = NULL; /* the description owns it */
    char *why = f->setup_error;
    size_t why_size = sizeof(f->setup_error);
    p = promise_new(&wt);
    g_signal_emit_by_name(f->webrtc, "set-remote-description", offer, p);
    /* webrtcbin's replies to the set-*-description promises are not read (a reply structure of
     * set-local-description was seen freed under us): success is the description being there */
    bool ok = step_ok(promise_wait(p, wt, &reply), NULL, why, why_size, "set-remote-description");
    promise_free(p);
    if (ok && !has_description(f->webrtc, "remote-description")) {
        snprintf(why, why_size, "webrtcbin refused the offer");
        ok = false;
    }
    if (!ok)
        goto out;
    set_directions(f->webrtc);
    p = promise_new(&wt);
    g_signal_emit_by_name(f->webrtc, "create-answer", NULL, p);
    ok = step_ok(promise_wait(p, wt, &reply), reply, why, why_size, "create-answer");
    if (ok && (!reply || !gst_structure_get(reply, "answer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &answer, NULL) ||
               !answer)) {
        snprintf(why, why_size, "webrtcbin made no answer to the offer");
        ok = false;
    }
    promise_free(p);
    if (!ok)
        goto out;
    p = promise_new(&wt);
    g_signal_emit_by_name(f->webrtc, "set-local-description", answer, p);
    ok = step_ok(promise_wait(p, wt, &reply), NULL, why, why_size, "set-local-description");
    promise_free(p);
    if (ok && !has_description(f->webrtc, "local-description"))
        snprintf(why, why_size, "webrtcbin refused its own answer");
out:
    if (msg)
        gst_sdp_message_free(msg);
    if (offer)
        gst_webrtc_session_description_free(offer);
    if (answer)
        gst_webrtc_session_description_free(answer);
}

/* The answer as sent: webrtcbin's local description, with every gathered candidate in its m=
 * section (added where the description lacks it) and end-of-candidates once gathering is
 * complete. */
static void answer_work(uv_work_t *req)
{
    lv_webrtc_feed_t *f = req->data;
    GstWebRTCSessionDescription *local = NULL;
    GstSDPMessage *msg = NULL;
    g_object_get(f->webrtc, "local-description", &local, NULL);
    if (!local || gst_sdp_message_copy(local->sdp, &msg) != GST_SDP_OK) {
        snprintf(f->setup_error, sizeof(f->setup_error), "webrtcbin has no local description");
        goto out;
    }
    g_mutex_lock(&f->w->mu);
    for (size_t i = 0; i < f->n_candidates; i++) {
        if (f->cand_mline[i] >= gst_sdp_message_medias_len(msg))
            continue;
        GstSDPMedia *m = (GstSDPMedia *)gst_sdp_message_get_media(msg, f->cand_mline[i]);
        const char *value = f->candidates[i] + 10; /* after "candidate:" */
        bool have = false;
        for (guint k = 0; k < gst_sdp_media_attributes_len(m) && !have; k++) {
            const GstSDPAttribute *a = gst_sdp_media_get_attribute(m, k);
            have = a->key && strcmp(a->key, "candidate") == 0 && a->value && strcmp(a->value, value) == 0;
        }
        if (!have)
            gst_sdp_media_add_attribute(m, "candidate", value);
    }
    g_mutex_unlock(&f->w->mu);
    /* audio is not taken: its section says so (webrtcbin answers remote-created transceivers
     * recvonly whatever their direction was set to) */
    for (guint i = 0; i < gst_sdp_message_medias_len(msg); i++) {
        GstSDPMedia *m = (GstSDPMedia *)gst_sdp_message_get_media(msg, i);
        if (!m->media || strcmp(m->media, "audio") != 0)
            continue;
        for (guint k = 0; k < gst_sdp_media_attributes_len(m); k++) {
            const GstSDPAttribute *a = gst_sdp_media_get_attribute(m, k);
            if (a->key && (strcmp(a->key, "recvonly") == 0 || strcmp(a->key, "sendrecv") == 0 ||
                           strcmp(a->key, "sendonly") == 0)) {
                GstSDPAttribute inactive;
                gst_sdp_attribute_set(&inactive, "inactive", NULL);
                gst_sdp_media_replace_attribute(m, k, &inactive);
            }
        }
    }
    if (!f->gather_timed_out) {
        for (guint i = 0; i < gst_sdp_message_medias_len(msg); i++) {
            GstSDPMedia *m = (GstSDPMedia *)gst_sdp_message_get_media(msg, i);
            if (!gst_sdp_media_get_attribute_val(m, "end-of-candidates"))
                gst_sdp_media_add_attribute(m, "end-of-candidates", NULL);
        }
    }
    gchar *text = gst_sdp_message_as_text(msg);
    f->answer = text ? strdup(text) : NULL;
    g_free(text);
out:
    if (msg)
        gst_sdp_message_free(msg);
    if (local)
        gst_webrtc_session_description_free(local);
}

static void teardown_work(uv_work_t *req)
{
    lv_webrtc_feed_t *f = req->data;
    if (f->pipeline) {
        gst_element_set_state(f->pipeline, GST_STATE_NULL);
        gst_object_unref(f->pipeline);
        f->pipeline = NULL;
    }
}

/* ---------- loop thread ---------- */

static void host_maybe_free(lv_webrtc_t *w);

static void job_run(uv_work_t *req)
{
    lv_webrtc_feed_t *f = req->data;
    f->job_work(req);
}

static void job_submit(lv_webrtc_feed_t *f);

static void job_after(uv_work_t *req, int status)
{
    lv_webrtc_feed_t *f = req->data;
    lv_webrtc_t *w = f->w;
    w->jobs_running--;
    while (w->jobs_running < w->jobs_max && !lv_queue_empty(&w->jobs_waiting)) {
        lv_webrtc_feed_t *next = LV_CONTAINER_OF(lv_queue_head(&w->jobs_waiting), lv_webrtc_feed_t, job_link);
        lv_queue_remove(&next->job_link);
        next->job_waiting = false;
        job_submit(next);
    }
    f->job_after(req, status); /* may free f (not w: the host goes in its handles' close callbacks) */
}

static void job_submit(lv_webrtc_feed_t *f)
{
    f->w->jobs_running++;
    if (uv_queue_work(f->w->loop, &f->work, job_run, job_after) != 0) {
        job_run(&f->work); /* uv_queue_work refuses only a NULL callback: not reached */
        job_after(&f->work, 0);
    }
}

/* f's one job: run work on the pool, then after on the loop (exactly once, status UV_ECANCELED
 * when job_cancel took it back from libuv's queue). */
static void job_start(lv_webrtc_feed_t *f, uv_work_cb work, uv_after_work_cb after)
{
    lv_webrtc_t *w = f->w;
    f->job_work = work;
    f->job_after = after;
    f->work_busy = true;
    f->work.data = f;
    if (w->jobs_running >= w->jobs_max) {
        f->job_waiting = true;
        lv_queue_insert_tail(&w->jobs_waiting, &f->job_link);
        return;
    }
    job_submit(f);
}

/* Take back f's job if no thread has started it. true: it will not run; its after-callback runs
 * (with UV_ECANCELED) when libuv had it, or not at all when it was still ours (work_busy is then
 * false). */
static bool job_cancel(lv_webrtc_feed_t *f)
{
    if (!f->work_busy)
        return false;
    if (f->job_waiting) {
        lv_queue_remove(&f->job_link);
        f->job_waiting = false;
        f->work_busy = false;
        return true;
    }
    return uv_cancel((uv_req_t *)&f->work) == 0;
}

static void feed_free(lv_webrtc_feed_t *f)
{
    lv_webrtc_t *w = f->w;
    g_mutex_lock(&w->mu);
    if (f->event_queued)
        lv_queue_remove(&f->event_link);
    f->event_queued = false;
    for (size_t i = 0; i < f->n_candidates; i++)
        g_free(f->candidates[i]);
    g_mutex_unlock(&w->mu);
    lv_grab_close(f->grab); /* its sink's pipeline is in NULL now */
    lv_queue_remove(&f->link); /* from w->closing */
    w->n_alive--;
    LV_INFO("webrtc %.8s: freed; %zu streams alive", f->session_id, w->n_alive);
    free(f->offer);
    free(f->answer);
    free(f);
    host_maybe_free(w);
}

static void teardown_done(uv_work_t *req, int status)
{
    lv_webrtc_feed_t *f = req->data;
    f->work_busy = false;
    feed_free(f);
}

static void queue_teardown(lv_webrtc_feed_t *f)
{
    job_start(f, teardown_work, teardown_done);
}

static void answer_once(lv_webrtc_feed_t *f, int status, const char *sdp, const char *code, const char *message)
{
    lv_webrtc_answer_fn fn = f->fn;
    f->fn = NULL;
    if (fn)
        fn(f->user, status, sdp, code, message);
}

static void answer_done(uv_work_t *req, int status)
{
    lv_webrtc_feed_t *f = req->data;
    f->work_busy = false;
    if (status == UV_ECANCELED || f->state == FEED_CLOSING) {
        queue_teardown(f);
        return;
    }
    if (!f->answer) {
        f->w->stats.failed++;
        answer_once(f, 500, NULL, "webrtc_failed", f->setup_error[0] ? f->setup_error : "no answer was made");
        feed_end(f, "no answer could be made", false);
        return;
    }
    if (f->gather_timed_out)
        LV_WARN("webrtc %.8s: ICE gathering took longer than %d ms; answering with the candidates so far",
                f->session_id, LV_WEBRTC_GATHER_MS);
    f->state = FEED_LIVE;
    f->answered_ms = lv_now_ms();
    f->w->stats.answered++;
    LV_INFO("webrtc %.8s: answered after %llu ms", f->session_id, (unsigned long long)(f->answered_ms - f->started_ms));
    answer_once(f, 200, f->answer, NULL, NULL);
}

static void queue_answer(lv_webrtc_feed_t *f)
{
    if (f->answer_asked || f->work_busy || f->state != FEED_NEGOTIATING)
        return;
    f->answer_asked = true;
    job_start(f, answer_work, answer_done);
}

static void setup_done(uv_work_t *req, int status)
{
    lv_webrtc_feed_t *f = req->data;
    f->work_busy = false;
    free(f->offer);
    f->offer = NULL;
    /* cancelled (feed_end took it back before a thread ran it: the pipeline never started) or
     * ended while it ran: either way only the teardown is left */
    if (status == UV_ECANCELED || f->state == FEED_CLOSING) {
        queue_teardown(f);
        return;
    }
    if (f->setup_error[0]) {
        f->w->stats.failed++;
        LV_WARN("webrtc %.8s: %s", f->session_id, f->setup_error);
        answer_once(f, 500, NULL, "webrtc_failed", f->setup_error);
        feed_end(f, f->setup_error, false);
        return;
    }
    /* gathering may have completed while the work ran: its event is waiting, or came already */
    GstWebRTCICEGatheringState st;
    g_object_get(f->webrtc, "ice-gathering-state", &st, NULL);
    if (st == GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE)
        queue_answer(f);
}

/* End f: the answer (if still owed) says why, its viewers hear video_ended (when it was live),
 * its session stops watching now, and the pipeline goes off the loop. */
static void feed_end(lv_webrtc_feed_t *f, const char *reason, bool tell_viewers)
{
    lv_webrtc_t *w = f->w;
    if (f->state == FEED_CLOSING)
        return;
    bool was_live = f->state == FEED_LIVE;
    f->state = FEED_CLOSING;
    lv_queue_remove(&f->link);
    lv_queue_insert_tail(&w->closing, &f->link); /* still counted against the caps until freed */
    w->n_feeds--;
    answer_once(f, 503, NULL, "webrtc_failed", reason);
    if (f->session) {
        if (tell_viewers && was_live) {
            char msg[REASON_MAX + 64];
            snprintf(msg, sizeof(msg), "the WebRTC video ended: %s", reason);
            lv_pipeline_error(w->pipe, f->session, "video_ended", msg, 0);
        }
        lv_grab_unwatch(f->grab, f->session);
        f->session = NULL;
    }
    if (was_live)
        w->stats.ended++;
    LV_INFO("webrtc %.8s: ended (%s); %zu streams alive", f->session_id, reason, w->n_alive);
    lv_grab_sink_drop(f->grab);
    /* A setup or readout no thread has started is not worth running: a replaced or abandoned
     * offer must not hold a pool thread for its negotiation (up to 3 promise waits). */
    job_cancel(f);
    if (!f->work_busy)
        queue_teardown(f);
    /* else the job in flight (or its UV_ECANCELED completion) queues the teardown */
}

static void on_async(uv_async_t *h)
{
    lv_webrtc_t *w = h->data;
    lv_queue_t batch;
    lv_queue_init(&batch);
    g_mutex_lock(&w->mu);
    while (!lv_queue_empty(&w->events)) {
        lv_queue_t *n = lv_queue_head(&w->events);
        lv_queue_remove(n);
        lv_queue_insert_tail(&batch, n);
    }
    g_mutex_unlock(&w->mu);
    while (!lv_queue_empty(&batch)) {
        lv_webrtc_feed_t *f = LV_CONTAINER_OF(lv_queue_head(&batch), lv_webrtc_feed_t, event_link);
        char reason[REASON_MAX];
        g_mutex_lock(&w->mu);
        lv_queue_remove(&f->event_link);
        f->event_queued = false;
        unsigned ev = f->events;
        f->events = 0;
        snprintf(reason, sizeof(reason), "%s", f->end_reason);
        g_mutex_unlock(&w->mu);
        if (f->state == FEED_CLOSING)
            continue;
        if (ev & EV_ENDED)
            feed_end(f, reason[0] ? reason : "the stream ended", true);
        else if ((ev & EV_GATHERED) && !f->work_busy)
            queue_answer(f); /* during the setup work: setup_done looks at the state itself */
    }
}

/* Deadlines, every SWEEP_MS: gathering that takes too long, and live feeds without pictures. */
static void on_sweep(uv_timer_t *t)
{
    lv_webrtc_t *w = t->data;
    uint64_t now = lv_now_ms();
    lv_queue_t *n, *next;
    for (n = w->feeds.next; n != &w->feeds; n = next) {
        next = n->next;
        lv_webrtc_feed_t *f = LV_CONTAINER_OF(n, lv_webrtc_feed_t, link);
        if (f->state == FEED_NEGOTIATING && !f->work_busy && !f->answer_asked &&
            now - f->started_ms > LV_WEBRTC_GATHER_MS) {
            f->gather_timed_out = true;
            queue_answer(f);
        } else if (f->state == FEED_LIVE) {
            lv_grab_stats_t gs;
            lv_grab_stats(f->grab, &gs);
            uint64_t last = LV_MAX(gs.last_in_ms, f->answered_ms);
            if (now - last > LV_WEBRTC_MEDIA_TIMEOUT_MS) {
                char why[96];
                snprintf(why, sizeof(why), "no video arrived for %d s", LV_WEBRTC_MEDIA_TIMEOUT_MS / 1000);
                feed_end(f, why, true);
            }
        }
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    lv_webrtc_t *w = h->data;
    if (--w->handles_open == 0) {
        g_mutex_clear(&w->mu);
        free(w);
    }
}

static void host_maybe_free(lv_webrtc_t *w)
{
    if (!w->destroying || w->n_alive || w->init_busy || w->handles_open != 2)
        return;
    uv_close((uv_handle_t *)&w->async, on_handle_closed);
    uv_close((uv_handle_t *)&w->sweep, on_handle_closed);
}

/* The elements every feed builds (webrtcbin's ICE is the nice plugin's): loaded here, on the pool,
 * so that building a feed's pipeline on the loop finds them in memory. */
static const char *const needed_elements[] = {"webrtcbin", "decodebin", "videoconvert", "appsink", "fakesink"};

/* GStreamer's start: the registry (a scan of every plugin on a cold machine: seconds) and the
 * plugins feeds use. Not on the loop: it would stall every socket. */
static void init_work(uv_work_t *req)
{
    lv_webrtc_t *w = req->data;
    GError *err = NULL;
    w->init_result = LV_EIO;
    if (!gst_init_check(NULL, NULL, &err)) {
        snprintf(w->init_why, sizeof(w->init_why), "GStreamer did not initialise: %s",
                 err ? err->message : "unknown error");
        if (err)
            g_error_free(err);
        return;
    }
    for (size_t i = 0; i < sizeof(needed_elements) / sizeof(needed_elements[0]); i++) {
        GstElementFactory *fac = gst_element_factory_find(needed_elements[i]);
        GstPluginFeature *loaded = fac ? gst_plugin_feature_load(GST_PLUGIN_FEATURE(fac)) : NULL;
        if (fac)
            gst_object_unref(fac);
        if (!loaded) {
            snprintf(w->init_why, sizeof(w->init_why),
                     "the GStreamer element %s is missing (install gstreamer1.0-plugins-base, "
                     "gstreamer1.0-plugins-good, gstreamer1.0-plugins-bad and gstreamer1.0-nice)",
                     needed_elements[i]);
            return;
        }
        gst_object_unref(loaded);
    }
    GstPlugin *nice = gst_registry_find_plugin(gst_registry_get(), "nice");
    GstPlugin *loaded = nice ? gst_plugin_load(nice) : NULL;
    if (nice)
        gst_object_unref(nice);
    if (!loaded) {
        snprintf(w->init_why, sizeof(w->init_why),
                 "the GStreamer plugin nice (ICE) is missing (install gstreamer1.0-nice)");
        return;
    }
    gst_object_unref(loaded);
    /* one webrtcbin made and dropped here: its class set-up (~8 ms, measured) is then done off the
     * loop, where each feed's build is left at 1-5 ms of element creation */
    GstElement *warm = gst_element_factory_make("webrtcbin", NULL);
    if (warm) {
        gst_object_ref_sink(warm);
        gst_object_unref(warm);
    }
    w->init_result = 0;
}

static void init_done(uv_work_t *req, int status)
{
    lv_webrtc_t *w = req->data;
    w->init_busy = false;
    w->init_rc = w->init_result;
    if (status != 0 && w->init_rc == 0) {
        w->init_rc = LV_EIO;
        snprintf(w->init_why, sizeof(w->init_why), "GStreamer's start did not run");
    }
    if (w->destroying) {
        host_maybe_free(w);
        return;
    }
    /* last: the callback may destroy w */
    w->ready_fn(w->ready_user, w->init_rc, w->init_rc ? w->init_why : NULL);
}

/* How many of the libuv pool's threads GStreamer's jobs may hold at once: half of them, so that
 * JPEG encodes and frame shaping keep the other half however long negotiations take. */
static size_t pool_share(void)
{
    const char *env = getenv("UV_THREADPOOL_SIZE"); /* read by libuv at its first pool use */
    long n = 4;                                     /* libuv's default */
    if (env && *env) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (end && *end == '\0' && v > 0)
            n = LV_MIN(v, 1024); /* libuv's own cap */
    }
    return (size_t)LV_MAX(n / 2, 1);
}

int lv_webrtc_create(uv_loop_t *loop, lv_pipeline_t *pipe, const lv_webrtc_opts_t *opts, lv_webrtc_ready_fn ready,
                     void *user, lv_webrtc_t **out)
{
    *out = NULL;
    lv_webrtc_t *w = calloc(1, sizeof(*w));
    if (!w)
        return LV_ENOMEM;
    w->loop = loop;
    w->pipe = pipe;
    if (opts)
        w->opts = *opts;
    if (!w->opts.max_total)
        w->opts.max_total = LV_WEBRTC_MAX_TOTAL;
    if (!w->opts.max_per_principal)
        w->opts.max_per_principal = LV_WEBRTC_MAX_PER_PRINCIPAL;
    if (opts && opts->stun_server)
        snprintf(w->stun, sizeof(w->stun), "%s", opts->stun_server);
    w->opts.stun_server = w->stun;
    w->next_uid = LV_WEBRTC_UID_BASE;
    w->jobs_max = pool_share();
    w->ready_fn = ready;
    w->ready_user = user;
    w->init_rc = LV_EAGAIN;
    g_mutex_init(&w->mu);
    lv_queue_init(&w->events);
    lv_queue_init(&w->feeds);
    lv_queue_init(&w->closing);
    lv_queue_init(&w->jobs_waiting);
    uv_async_init(loop, &w->async, on_async);
    uv_timer_init(loop, &w->sweep);
    w->async.data = w->sweep.data = w;
    w->handles_open = 2;
    uv_timer_start(&w->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&w->sweep); /* neither keeps a stopping loop alive; pool work does */
    uv_unref((uv_handle_t *)&w->async);
    w->init_work.data = w;
    w->init_busy = true;
    if (uv_queue_work(loop, &w->init_work, init_work, init_done) != 0) {
        init_work(&w->init_work); /* uv_queue_work refuses only a NULL callback: not reached */
        w->init_busy = false;
        w->init_rc = w->init_result;
    }
    *out = w;
    return 0;
}

int lv_webrtc_ready(const lv_webrtc_t *w, const char **why)
{
    if (why)
        *why = w->init_rc == LV_EIO ? w->init_why : NULL;
    return w->init_rc;
}

void lv_webrtc_destroy(lv_webrtc_t *w)
{
    if (!w || w->destroying)
        return;
    w->destroying = true;
    uv_timer_stop(&w->sweep);
    while (!lv_queue_empty(&w->feeds))
        feed_end(LV_CONTAINER_OF(lv_queue_head(&w->feeds), lv_webrtc_feed_t, link), "the server is stopping", true);
    host_maybe_free(w);
}

static lv_webrtc_feed_t *feed_of(const lv_webrtc_t *w, const lv_session_t *s)
{
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &w->feeds)
    {
        lv_webrtc_feed_t *f = LV_CONTAINER_OF(n, lv_webrtc_feed_t, link);
        if (f->session == s)
            return f;
    }
    return NULL;
}

int lv_webrtc_session_has_feed(const lv_webrtc_t *w, const lv_session_t *s)
{
    return w && feed_of(w, s) != NULL;
}

void lv_webrtc_session_close(lv_webrtc_t *w, const lv_session_t *s, const char *reason)
{
    lv_webrtc_feed_t *f = w ? feed_of(w, s) : NULL;
    if (f)
        feed_end(f, reason, false);
}

/* A new element nobody has taken (floating) goes: sunk first, so it is an ordinary last unref. */
static void drop_floating(GstElement **e)
{
    if (*e) {
        gst_object_ref_sink(*e);
        gst_object_unref(*e);
        *e = NULL;
    }
}

/* The pipeline: webrtcbin and the grabber's sink; the decoder is added when the video pad comes.
 * On failure nothing is left (f->pipeline, webrtc, sink NULL). */
static int build_pipeline(lv_webrtc_t *w, lv_webrtc_feed_t *f)
{
    f->pipeline = gst_pipeline_new(NULL);
    f->webrtc = gst_element_factory_make("webrtcbin", NULL);
    f->sink = lv_grab_sink_new(f->grab);
    if (!f->pipeline || !f->webrtc || !f->sink) {
        drop_floating(&f->webrtc);
        drop_floating(&f->sink);
        drop_floating(&f->pipeline);
        return LV_EIO;
    }
    gst_bin_add_many(GST_BIN(f->pipeline), f->webrtc, f->sink, NULL);
    g_object_set(f->webrtc, "bundle-policy", GST_WEBRTC_BUNDLE_POLICY_MAX_BUNDLE, NULL);
    if (w->stun[0])
        g_object_set(f->webrtc, "stun-server", w->stun, NULL);
    g_signal_connect(f->webrtc, "notify::ice-gathering-state", G_CALLBACK(on_gathering), f);
    g_signal_connect(f->webrtc, "notify::ice-connection-state", G_CALLBACK(on_ice_state), f);
    g_signal_connect(f->webrtc, "on-ice-candidate", G_CALLBACK(on_ice_candidate), f);
    g_signal_connect(f->webrtc, "pad-added", G_CALLBACK(on_pad_added), f);
    GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(f->pipeline));
    gst_bus_set_sync_handler(bus, on_bus, f, NULL);
    gst_object_unref(bus);
    return 0;
}

int lv_webrtc_offer(lv_webrtc_t *w, lv_session_t *s, const char *sdp, size_t len, lv_webrtc_answer_fn fn, void *user,
                    lv_webrtc_feed_t **handle, char *why, size_t why_size)
{
    lv_webrtc_feed_t *old = feed_of(w, s), *f = NULL;
    size_t mine = 0, mine_alive = 0;
    int rc = 0;
    lv_queue_t *n;
    *handle = NULL;
    LV_QUEUE_FOREACH(n, &w->feeds)
    {
        lv_webrtc_feed_t *o = LV_CONTAINER_OF(n, lv_webrtc_feed_t, link);
        bool same = strcmp(o->principal, s->rec.principal) == 0;
        mine += o != old && same;
        mine_alive += same;
    }
    LV_QUEUE_FOREACH(n, &w->closing)
    {
        lv_webrtc_feed_t *o = LV_CONTAINER_OF(n, lv_webrtc_feed_t, link);
        mine_alive += strcmp(o->principal, s->rec.principal) == 0;
    }
    if (w->destroying || w->init_rc == LV_EIO) {
        snprintf(why, why_size, "%s", w->destroying ? "the server is stopping" : w->init_why);
        return LV_ECLOSED;
    }
    if (w->init_rc == LV_EAGAIN) {
        snprintf(why, why_size, "GStreamer is still starting");
        return LV_EAGAIN;
    }
    /* One negotiation at a time per session: a new offer would end the one under way, and offers
     * sent in a loop would each build a webrtcbin and queue a setup. */
    if (old && old->state == FEED_NEGOTIATING) {
        snprintf(why, why_size,
                 "an offer for this session is still being answered: wait for its answer (or close "
                 "that request) before sending another");
        return LV_EEXIST;
    }
    if (w->n_feeds - (old != NULL) >= w->opts.max_total) {
        snprintf(why, why_size, "the server takes at most %zu WebRTC streams at once", w->opts.max_total);
        return LV_ELIMIT;
    }
    if (mine >= w->opts.max_per_principal) {
        snprintf(why, why_size, "at most %zu WebRTC streams per user at once", w->opts.max_per_principal);
        return LV_ELIMIT;
    }
    /* Ended streams hold their webrtcbin (and ICE thread) until their teardown has run: they
     * count too, up to twice the caps, so replacing streams in a loop cannot pile them up. */
    if (w->n_alive >= 2 * w->opts.max_total || mine_alive >= 2 * w->opts.max_per_principal) {
        snprintf(why, why_size, "too many WebRTC streams %s are still closing: try again in a few seconds",
                 w->n_alive >= 2 * w->opts.max_total ? "on this server" : "of yours");
        return LV_ELIMIT;
    }
    if (old)
        feed_end(old, "replaced by a new offer for this session", true);
    f = calloc(1, sizeof(*f));
    if (!f || !(f->offer = malloc(len + 1))) {
        rc = LV_ENOMEM;
        snprintf(why, why_size, "out of memory");
        goto out;
    }
    memcpy(f->offer, sdp, len);
    f->offer[len] = '\0';
    f->w = w;
    f->fn = fn;
    f->user = user;
    f->state = FEED_NEGOTIATING;
    f->started_ms = lv_now_ms();
    snprintf(f->principal, sizeof(f->principal), "%s", s->rec.principal);
    snprintf(f->session_id, sizeof(f->session_id), "%s", s->rec.id);
    lv_queue_init(&f->event_link);
    f->grab = lv_grab_new(w->loop, w->pipe, ++w->next_uid, NULL);
    if (!f->grab || build_pipeline(w, f) != 0) {
        rc = LV_EIO;
        snprintf(why, why_size, "the WebRTC pipeline could not be built (GStreamer elements missing?)");
        goto out;
    }
    if ((rc = lv_grab_watch(f->grab, s)) != 0) {
        snprintf(why, why_size, "the session could not watch the stream");
        goto out;
    }
    f->session = s;
    lv_queue_insert_tail(&w->feeds, &f->link);
    w->n_feeds++;
    w->n_alive++;
    w->peak_alive = LV_MAX(w->peak_alive, w->n_alive);
    w->stats.offers++;
    LV_INFO("webrtc %.8s: offer taken; %zu streams alive (%zu of this user)", f->session_id, w->n_alive,
            mine_alive + 1);
    job_start(f, setup_work, setup_done);
    *handle = f;
    return 0;
out:
    if (f) {
        if (f->session)
            lv_grab_unwatch(f->grab, s);
        if (f->pipeline)
            drop_floating(&f->pipeline); /* never started: no thread runs in it */
        lv_grab_close(f->grab);
        free(f->offer);
        free(f);
    }
    return rc;
}

void lv_webrtc_offer_abandon(lv_webrtc_t *w, lv_webrtc_feed_t *f)
{
    f->fn = NULL;
    if (f->state == FEED_NEGOTIATING)
        feed_end(f, "the client went before the answer", false);
}

void lv_webrtc_stats(const lv_webrtc_t *w, lv_webrtc_stats_t *out)
{
    *out = w->stats;
    out->feeds = w->n_feeds;
    out->alive = w->n_alive;
    out->peak_alive = w->peak_alive;
}
