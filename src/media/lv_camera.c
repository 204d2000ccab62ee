/* lv_camera.c - admin-defined RTSP cameras: one pipeline per camera, started on demand, reconnected
 * with backoff, restarted when stalled, decoding keyframes only when nobody needs more (lv_camera.h,
 * docs/internals/cameras.md). */
#include "lv_camera.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <gst/gst.h>

#include "lv_common.h"
#include "lv_grab.h"
#include "lv_log.h"

#define TICK_MS 100              /* bus, watchdog, linger, retries: one timer for every camera */
#define BUS_MSGS_PER_TICK 16     /* bounded work per camera per tick */
#define KEYFRAME_MIN_INTERVAL_MS 1000 /* keyframe-only decode when every watcher asks this rarely */
#define RTSP_LATENCY_MS 200      /* rtspsrc's jitterbuffer: small, the stream is sampled anyway */
#define RTSP_TCP_TIMEOUT_US 5000000 /* connect and read: 5 s, not rtspsrc's 20 s, so a teardown of a
                                     * camera that stopped answering frees its pool thread soon */

enum { CODEC_NONE = 0, CODEC_H264, CODEC_H265, CODEC_MJPEG, CODEC_OTHER };
static const char *const codec_names[] = {"", "h264", "h265", "mjpeg", "other"};

typedef enum { OP_NONE = 0, OP_START, OP_STOP } op_kind_t;

struct lv_camera {
    lv_cameras_t *set;
    lv_camera_def_t def;         /* holds the password: wiped when the set goes */
    lv_grab_t *grab;
    lv_camera_state_t state;
    char reason[LV_CAMERA_REASON_MAX];  /* scrubbed */
    GstElement *pipeline;        /* the running pipeline (loop's reference); NULL: none */
    GstElement *sink;            /* the grabber's sink bin inside it (our reference) */
    GstBus *bus;                 /* the pipeline's bus (our reference) */
    /* one pool operation at a time */
    uv_work_t op;
    op_kind_t op_kind;           /* OP_NONE: nothing in flight */
    GstElement *op_pipeline;     /* what the operation started or tears down */
    GstElement *op_sink;
    GstBus *op_bus;
    char op_err[LV_CAMERA_REASON_MAX]; /* a start's failure (not yet scrubbed) */
    bool op_permanent;           /* the failure needs a fix (missing element) */
    uint64_t started_ms;         /* when the running pipeline was started */
    uint64_t frames_at_start;
    uint64_t retry_at_ms;        /* RECONNECTING/FAILED: the next try */
    int backoff_ms;
    int failures;                /* in a row */
    uint64_t linger_until_ms;    /* 0: not lingering */
    uint64_t reconnects;
    bool done;                   /* closing: the pipeline is gone and the grabber closed */
    int width, height;
    double caps_fps, measured_fps;
    uint64_t fps_frames, fps_at_ms;
    /* shared with GStreamer's streaming threads */
    atomic_int codec;
    atomic_int stream_num;       /* the RTSP stream chosen (select-stream's num); -1: none yet */
    atomic_int want_keyframes;   /* the loop's wish */
    atomic_int keyframes_active; /* what the decoder gets now (switches at a keyframe) */
    atomic_uint_fast64_t last_key_ms;
    atomic_uint_fast64_t key_gap_ms; /* between the last two keyframes seen; 0 unknown */
};

struct lv_cameras {
    uv_loop_t *loop;
    lv_pipeline_t *pipe;
    uv_timer_t tick;
    lv_camera_state_cb on_state;
    void *user;
    bool closing;
    bool tick_closed;
    size_t n;
    lv_camera_t cams[];
};

static void camera_step(lv_camera_t *cam, uint64_t now);
static void camera_fail(lv_camera_t *cam, const char *why, bool permanent);
static void set_maybe_free(lv_cameras_t *set);

const char *lv_camera_state_name(lv_camera_state_t st)
{
    switch (st) {
    case LV_CAMERA_IDLE: return "idle";
    case LV_CAMERA_STARTING: return "starting";
    case LV_CAMERA_LIVE: return "live";
    case LV_CAMERA_RECONNECTING: return "reconnecting";
    case LV_CAMERA_FAILED: return "failed";
    }
    return "idle";
}

static void set_state(lv_camera_t *cam, lv_camera_state_t st, const char *reason)
{
    char clean[LV_CAMERA_REASON_MAX];
    lv_rtspurl_scrub(reason ? reason : "", &cam->def, clean, sizeof(clean));
    if (cam->state == st && strcmp(cam->reason, clean) == 0)
        return;
    bool log = cam->state != st;
    cam->state = st;
    memcpy(cam->reason, clean, sizeof(clean));
    if (log) /* the reason of a failure was logged as a warning by camera_fail */
        LV_INFO("camera %s: %s", cam->def.id, lv_camera_state_name(st));
    if (cam->set->on_state && !cam->set->closing)
        cam->set->on_state(cam, cam->set->user);
}

/* ---------- GStreamer's threads: only this camera's atomics and its own elements ---------- */

static gboolean on_select_stream(GstElement *src, guint num, GstCaps *caps, gpointer ud)
{
    lv_camera_t *cam = ud;
    (void)src;
    const GstStructure *st = gst_caps_get_size(caps) ? gst_caps_get_structure(caps, 0) : NULL;
    const char *media = st ? gst_structure_get_string(st, "media") : NULL;
    if (!media || strcmp(media, "video") != 0)
        return FALSE; /* audio and metadata streams are not set up at all */
    const char *enc = gst_structure_get_string(st, "encoding-name");
    int codec = CODEC_OTHER;
    if (enc && g_ascii_strcasecmp(enc, "H264") == 0)
        codec = CODEC_H264;
    else if (enc && g_ascii_strcasecmp(enc, "H265") == 0)
        codec = CODEC_H265;
    else if (enc && g_ascii_strcasecmp(enc, "JPEG") == 0)
        codec = CODEC_MJPEG;
    /* the first video stream wins and only that one is set up: a camera offering two of the same
     * codec (main and sub stream) would otherwise have both fetched and depayloaded, with the
     * decoded one chosen by pad order. rtspsrc numbers the streams in SDP order and asks again
     * when it sets them up anew (its own reconnect), so the same number is accepted again. */
    int none = -1;
    if (atomic_compare_exchange_strong(&cam->stream_num, &none, (int)num)) {
        atomic_store(&cam->codec, codec);
        return TRUE;
    }
    return atomic_load(&cam->stream_num) == (int)num;
}

/* Link pad to to's sink pad unless something got there first (a second stream of the camera). */
static void link_to_sink(GstPad *pad, GstElement *to)
{
    GstPad *sinkpad = gst_element_get_static_pad(to, "sink");
    if (sinkpad && !gst_pad_is_linked(sinkpad))
        gst_pad_link(pad, sinkpad);
    if (sinkpad)
        gst_object_unref(sinkpad);
}

static void on_src_pad(GstElement *src, GstPad *pad, gpointer ud)
{
    (void)src;
    link_to_sink(pad, ud);
}

static void on_dec_pad(GstElement *dec, GstPad *pad, gpointer ud)
{
    (void)dec;
    GstCaps *caps = gst_pad_get_current_caps(pad);
    if (!caps)
        caps = gst_pad_query_caps(pad, NULL);
    const GstStructure *st = caps && gst_caps_get_size(caps) ? gst_caps_get_structure(caps, 0) : NULL;
    bool video = st && g_str_has_prefix(gst_structure_get_name(st), "video/");
    if (caps)
        gst_caps_unref(caps);
    if (video)
        link_to_sink(pad, ud);
}

/* In front of the decoder: learns how often keyframes come, and in keyframe-only mode drops every
 * other picture before it costs a decode. A switch takes effect at a keyframe, so the decoder never
 * gets a picture whose reference it did not see. */
static GstPadProbeReturn on_decoder_input(GstPad *pad, GstPadProbeInfo *info, gpointer ud)
{
    lv_camera_t *cam = ud;
    (void)pad;
    GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
    if (!buf)
        return GST_PAD_PROBE_OK;
    if (!GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT)) {
        uint64_t now = lv_now_ms();
        uint64_t prev = atomic_exchange(&cam->last_key_ms, now);
        if (prev && now > prev) {
            /* smoothed (3/4 old + 1/4 new): network jitter must not flip the decode mode */
            uint64_t old = atomic_load(&cam->key_gap_ms);
            atomic_store(&cam->key_gap_ms, old ? (3 * old + (now - prev)) / 4 : now - prev);
        }
        atomic_store(&cam->keyframes_active, atomic_load(&cam->want_keyframes));
        return GST_PAD_PROBE_OK;
    }
    return atomic_load(&cam->keyframes_active) ? GST_PAD_PROBE_DROP : GST_PAD_PROBE_OK;
}

static void on_element_added(GstBin *bin, GstBin *sub, GstElement *el, gpointer ud)
{
    lv_camera_t *cam = ud;
    (void)bin;
    (void)sub;
    GstElementFactory *f = gst_element_get_factory(el);
    const char *klass = f ? gst_element_factory_get_metadata(f, GST_ELEMENT_METADATA_KLASS) : NULL;
    if (!klass || !strstr(klass, "Decoder") || !strstr(klass, "Video"))
        return;
    /* libav's frame threading holds pictures back (a frame per thread): with one picture a second
     * that would be seconds of delay; slice threading adds none */
    if (g_str_has_prefix(GST_OBJECT_NAME(f), "avdec_"))
        gst_util_set_object_arg(G_OBJECT(el), "thread-type", "slice");
    GstPad *pad = gst_element_get_static_pad(el, "sink");
    if (pad) {
        gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, on_decoder_input, cam, NULL);
        gst_object_unref(pad);
    }
}

/* Only what the loop reads reaches the bus's queue; the rest is dropped where it is posted. A sync
 * handler that answers DROP owns the message and must unref it: a message holds its source element,
 * so a dropped one left alive would keep the whole pipeline from ever being freed. */
static GstBusSyncReply bus_filter(GstBus *bus, GstMessage *m, gpointer ud)
{
    (void)bus;
    (void)ud;
    switch (GST_MESSAGE_TYPE(m)) {
    case GST_MESSAGE_ERROR:
    case GST_MESSAGE_EOS:
    case GST_MESSAGE_WARNING:
        return GST_BUS_PASS;
    default:
        gst_message_unref(m);
        return GST_BUS_DROP;
    }
}

/* ---------- thread pool ---------- */

static void teardown(GstElement *pipeline)
{
    gst_element_set_state(pipeline, GST_STATE_NULL); /* joins the streaming threads */
    gst_object_unref(pipeline);
}

static void op_work(uv_work_t *req)
{
    lv_camera_t *cam = req->data;
    if (cam->op_kind == OP_STOP) {
        teardown(cam->op_pipeline);
        cam->op_pipeline = NULL;
        return;
    }
    /* OP_START: build and set PLAYING here, as the first element of a kind loads its plugin and
     * rtspsrc's state change may wait on its task */
    GstElement *pipeline = gst_pipeline_new(NULL);
    GstElement *src = gst_element_factory_make("rtspsrc", NULL);
    GstElement *dec = gst_element_factory_make("decodebin", NULL);
    GstElement *sink = cam->op_sink;
    if (!pipeline || !src || !dec) {
        snprintf(cam->op_err, sizeof(cam->op_err), "the GStreamer elements rtspsrc and decodebin are needed "
                 "(gstreamer1.0-plugins-good, -base)");
        cam->op_permanent = true;
        if (src)
            gst_object_unref(src);
        if (dec)
            gst_object_unref(dec);
        if (pipeline)
            gst_object_unref(pipeline);
        return;
    }
    g_object_set(src, "location", cam->def.url_rtsp, "latency", (guint)RTSP_LATENCY_MS, "tcp-timeout",
                 (guint64)RTSP_TCP_TIMEOUT_US, NULL);
    gst_util_set_object_arg(G_OBJECT(src), "protocols", "tcp");
    if (cam->def.user[0] || cam->def.password[0])
        g_object_set(src, "user-id", cam->def.user, "user-pw", cam->def.password, NULL);
    g_signal_connect(src, "select-stream", G_CALLBACK(on_select_stream), cam);
    g_signal_connect(src, "pad-added", G_CALLBACK(on_src_pad), dec);
    g_signal_connect(dec, "pad-added", G_CALLBACK(on_dec_pad), sink);
    g_signal_connect(dec, "deep-element-added", G_CALLBACK(on_element_added), cam);
    gst_bin_add_many(GST_BIN(pipeline), src, dec, sink, NULL);
    GstBus *bus = gst_element_get_bus(pipeline);
    gst_bus_set_sync_handler(bus, bus_filter, NULL, NULL);
    cam->op_bus = bus;
    cam->op_pipeline = pipeline;
    if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE)
        snprintf(cam->op_err, sizeof(cam->op_err), "the pipeline did not start");
}

static void op_done(uv_work_t *req, int status)
{
    lv_camera_t *cam = req->data;
    lv_cameras_t *set = cam->set;
    op_kind_t kind = cam->op_kind;
    cam->op_kind = OP_NONE;
    (void)status; /* never cancelled: the set waits for every operation */
    if (kind == OP_START) {
        cam->pipeline = cam->op_pipeline;
        cam->bus = cam->op_bus;
        cam->sink = cam->op_sink; /* our reference (the bin holds its own once added) */
        cam->op_pipeline = NULL;
        cam->op_bus = NULL;
        cam->op_sink = NULL;
        cam->started_ms = lv_now_ms();
        lv_grab_stats_t gs;
        lv_grab_stats(cam->grab, &gs);
        cam->frames_at_start = gs.frames_in;
        if (!cam->pipeline) { /* nothing was built: the sink was never added anywhere */
            lv_grab_sink_drop(cam->grab);
            if (cam->sink)
                gst_object_unref(cam->sink);
            cam->sink = NULL;
            if (cam->bus)
                gst_object_unref(cam->bus);
            cam->bus = NULL;
        }
        if (cam->op_err[0] && !set->closing) {
            char why[LV_CAMERA_REASON_MAX];
            memcpy(why, cam->op_err, sizeof(why));
            cam->op_err[0] = '\0';
            bool permanent = cam->op_permanent;
            cam->op_permanent = false;
            camera_fail(cam, why, permanent);
            return;
        }
    }
    camera_step(cam, lv_now_ms());
}

/* ---------- loop thread ---------- */

static bool op_queue(lv_camera_t *cam, op_kind_t kind)
{
    cam->op_kind = kind;
    cam->op.data = cam;
    if (uv_queue_work(cam->set->loop, &cam->op, op_work, op_done) != 0) {
        cam->op_kind = OP_NONE;
        return false;
    }
    return true;
}

/* The running pipeline goes to the pool to be torn down; the grabber stops sampling it now. */
static void stop_pipeline(lv_camera_t *cam)
{
    if (!cam->pipeline || cam->op_kind != OP_NONE)
        return;
    lv_grab_sink_drop(cam->grab);
    if (cam->bus) {
        gst_bus_set_flushing(cam->bus, TRUE); /* drops what is queued and whatever comes */
        gst_object_unref(cam->bus);
        cam->bus = NULL;
    }
    if (cam->sink) {
        gst_object_unref(cam->sink);
        cam->sink = NULL;
    }
    cam->op_pipeline = cam->pipeline;
    cam->pipeline = NULL;
    if (!op_queue(cam, OP_STOP)) {
        /* the pool refused (it never does in practice): tearing down here blocks, but leaks nothing */
        teardown(cam->op_pipeline);
        cam->op_pipeline = NULL;
    }
}

static void start_pipeline(lv_camera_t *cam)
{
    if (cam->pipeline || cam->op_kind != OP_NONE || cam->set->closing)
        return;
    GstElement *sink = lv_grab_sink_new(cam->grab);
    if (!sink) {
        camera_fail(cam, "the GStreamer elements videoconvert and appsink are needed (gstreamer1.0-plugins-base)",
                    true);
        return;
    }
    cam->op_sink = gst_object_ref_sink(sink); /* ours; the pipeline takes its own when added */
    atomic_store(&cam->codec, CODEC_NONE);
    atomic_store(&cam->stream_num, -1);
    atomic_store(&cam->last_key_ms, 0);
    atomic_store(&cam->key_gap_ms, 0);
    atomic_store(&cam->keyframes_active, 0);
    atomic_store(&cam->want_keyframes, 0);
    cam->width = cam->height = 0;
    cam->caps_fps = cam->measured_fps = 0;
    cam->fps_at_ms = 0;
    cam->op_err[0] = '\0';
    cam->op_permanent = false;
    if (cam->state == LV_CAMERA_IDLE)
        set_state(cam, LV_CAMERA_STARTING, "");
    if (!op_queue(cam, OP_START)) {
        gst_object_unref(cam->op_sink);
        cam->op_sink = NULL;
        camera_fail(cam, "could not queue the pipeline's start", false);
    }
}

static void camera_fail(lv_camera_t *cam, const char *why, bool permanent)
{
    uint64_t now = lv_now_ms();
    stop_pipeline(cam);
    cam->failures++;
    cam->reconnects++;
    if (cam->backoff_ms < LV_CAMERA_BACKOFF_MIN_MS)
        cam->backoff_ms = LV_CAMERA_BACKOFF_MIN_MS;
    if (permanent)
        cam->backoff_ms = LV_CAMERA_BACKOFF_MAX_MS;
    cam->retry_at_ms = now + (uint64_t)cam->backoff_ms;
    cam->backoff_ms = cam->backoff_ms * 2 > LV_CAMERA_BACKOFF_MAX_MS ? LV_CAMERA_BACKOFF_MAX_MS : cam->backoff_ms * 2;
    char clean[LV_CAMERA_REASON_MAX];
    lv_rtspurl_scrub(why, &cam->def, clean, sizeof(clean));
    LV_WARN("camera %s: %s; next try in %d s", cam->def.id, clean, (int)((cam->retry_at_ms - now + 999) / 1000));
    set_state(cam, permanent || cam->failures >= LV_CAMERA_FAIL_AFTER ? LV_CAMERA_FAILED : LV_CAMERA_RECONNECTING, why);
}

/* An error or end of stream from the pipeline's bus: the text is the camera's or GStreamer's, so it
 * is scrubbed (set_state) before anyone sees it. */
static bool pop_bus(lv_camera_t *cam)
{
    for (int i = 0; i < BUS_MSGS_PER_TICK && cam->bus; i++) {
        GstMessage *m = gst_bus_pop(cam->bus);
        if (!m)
            return false;
        char why[LV_CAMERA_REASON_MAX] = "";
        bool permanent = false, failed = false;
        if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR || GST_MESSAGE_TYPE(m) == GST_MESSAGE_WARNING) {
            GError *e = NULL;
            gchar *dbg = NULL;
            bool error = GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR;
            if (error)
                gst_message_parse_error(m, &e, &dbg);
            else
                gst_message_parse_warning(m, &e, &dbg);
            char clean[LV_CAMERA_REASON_MAX];
            lv_rtspurl_scrub(e ? e->message : "unknown", &cam->def, clean, sizeof(clean));
            if (error) {
                snprintf(why, sizeof(why), "%s", clean);
                failed = true;
                /* refused credentials or a wrong path: retrying fast will not help */
                permanent = e && e->domain == GST_RESOURCE_ERROR &&
                            (e->code == GST_RESOURCE_ERROR_NOT_AUTHORIZED || e->code == GST_RESOURCE_ERROR_NOT_FOUND);
                if (dbg) {
                    char d[512];
                    lv_rtspurl_scrub(dbg, &cam->def, d, sizeof(d));
                    LV_DEBUG("camera %s: %s", cam->def.id, d);
                }
            } else {
                LV_DEBUG("camera %s: warning: %s", cam->def.id, clean);
            }
            if (e)
                g_error_free(e);
            g_free(dbg);
        } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS) {
            snprintf(why, sizeof(why), "the camera ended the stream");
            failed = true;
        }
        gst_message_unref(m);
        if (failed) {
            camera_fail(cam, why, permanent);
            return true;
        }
    }
    return false;
}

/* The stream's size and frame rate, from the caps the decoder negotiated with the grabber. */
static void read_caps(lv_camera_t *cam)
{
    GstPad *pad = cam->sink ? gst_element_get_static_pad(cam->sink, "sink") : NULL;
    GstCaps *caps = pad ? gst_pad_get_current_caps(pad) : NULL;
    const GstStructure *st = caps && gst_caps_get_size(caps) ? gst_caps_get_structure(caps, 0) : NULL;
    int w = 0, h = 0, num = 0, den = 1;
    if (st && gst_structure_get_int(st, "width", &w) && gst_structure_get_int(st, "height", &h)) {
        cam->width = w;
        cam->height = h;
        if (gst_structure_get_fraction(st, "framerate", &num, &den) && num > 0 && den > 0)
            cam->caps_fps = (double)num / den;
    }
    if (caps)
        gst_caps_unref(caps);
    if (pad)
        gst_object_unref(pad);
}

/* Keyframe-only decode when every watcher samples at most once a second and keyframes come at
 * least as often as the fastest of them asks (nobody gets an older picture than they would
 * have), and while the camera lingers with nobody watching. */
static void choose_decode(lv_camera_t *cam)
{
    int min_iv = lv_grab_min_interval_ms(cam->grab);
    uint64_t gap = atomic_load(&cam->key_gap_ms);
    bool want;
    if (lv_grab_watchers(cam->grab) == 0)
        want = gap > 0 && gap <= LV_CAMERA_STALL_MS / 2;
    else
        /* an eighth over the interval still counts: a 1 s GOP serves a 1 s interval */
        want = min_iv >= KEYFRAME_MIN_INTERVAL_MS && gap > 0 && gap <= (uint64_t)min_iv + (uint64_t)min_iv / 8;
    atomic_store(&cam->want_keyframes, want ? 1 : 0);
}

static void camera_step(lv_camera_t *cam, uint64_t now)
{
    lv_cameras_t *set = cam->set;
    if (set->closing) {
        if (cam->op_kind != OP_NONE)
            return;
        if (cam->pipeline) {
            stop_pipeline(cam);
            return;
        }
        if (!cam->done) {
            cam->done = true;
            lv_grab_close(cam->grab);
            cam->grab = NULL;
            set_maybe_free(set);
        }
        return;
    }
    if (cam->op_kind != OP_NONE)
        return;
    size_t watchers = lv_grab_watchers(cam->grab);
    if (watchers > 0)
        cam->linger_until_ms = 0;
    /* a live camera lingers for a watcher coming back; a broken one is not retried for nobody */
    bool wanted = watchers > 0 || (cam->linger_until_ms && now < cam->linger_until_ms && cam->state == LV_CAMERA_LIVE);
    if (!wanted) {
        cam->linger_until_ms = 0;
        stop_pipeline(cam);
        cam->failures = 0;
        cam->backoff_ms = LV_CAMERA_BACKOFF_MIN_MS;
        set_state(cam, LV_CAMERA_IDLE, "");
        return;
    }
    if (!cam->pipeline) {
        if (cam->state == LV_CAMERA_IDLE || now >= cam->retry_at_ms)
            start_pipeline(cam);
        return;
    }
    if (pop_bus(cam))
        return;
    lv_grab_stats_t gs;
    lv_grab_stats(cam->grab, &gs);
    if (gs.frames_in > cam->frames_at_start) {
        if (cam->state != LV_CAMERA_LIVE) {
            cam->failures = 0;
            cam->backoff_ms = LV_CAMERA_BACKOFF_MIN_MS;
            set_state(cam, LV_CAMERA_LIVE, "");
        }
        if (!cam->width)
            read_caps(cam);
        if (!cam->fps_at_ms || now - cam->fps_at_ms >= 2000) {
            if (cam->fps_at_ms && !atomic_load(&cam->keyframes_active))
                cam->measured_fps = (double)(gs.frames_in - cam->fps_frames) * 1000.0 / (double)(now - cam->fps_at_ms);
            cam->fps_frames = gs.frames_in;
            cam->fps_at_ms = now;
        }
    }
    /* the watchdog: a pipeline that gives no picture for LV_CAMERA_STALL_MS (longer when only
     * keyframes are decoded and they come rarely) is restarted */
    uint64_t last = gs.last_in_ms > cam->started_ms && gs.frames_in > cam->frames_at_start ? gs.last_in_ms
                                                                                            : cam->started_ms;
    uint64_t limit = LV_CAMERA_STALL_MS;
    uint64_t gap = atomic_load(&cam->key_gap_ms);
    if (atomic_load(&cam->keyframes_active) && 2 * gap > limit)
        limit = 2 * gap;
    if (now > last && now - last > limit) {
        camera_fail(cam, cam->state == LV_CAMERA_LIVE ? "no picture for 10 s: restarting the stream"
                                                      : "no picture within 10 s of connecting",
                    false);
        return;
    }
    choose_decode(cam);
}

static void on_tick(uv_timer_t *t)
{
    lv_cameras_t *set = t->data;
    uint64_t now = lv_now_ms();
    for (size_t i = 0; i < set->n; i++)
        camera_step(&set->cams[i], now);
}

static void on_watchers(lv_grab_t *g, void *user)
{
    lv_camera_t *cam = user;
    (void)g;
    if (cam->set->closing)
        return; /* lv_cameras_close steps every camera itself */
    if (lv_grab_watchers(cam->grab) == 0 && !cam->linger_until_ms)
        cam->linger_until_ms = lv_now_ms() + LV_CAMERA_LINGER_MS;
    camera_step(cam, lv_now_ms());
}

/* The grabber's encodes started failing (err) or work again (NULL): the watchers hear it as the
 * camera's reason (camera_state), once, not per picture; the state itself stays. */
static void on_encode(lv_grab_t *g, const char *err, void *user)
{
    lv_camera_t *cam = user;
    (void)g;
    if (cam->set->closing || (!err && cam->state != LV_CAMERA_LIVE))
        return; /* a recovery clears only its own reason, not a reconnect's */
    char why[LV_CAMERA_REASON_MAX];
    snprintf(why, sizeof(why), "pictures arrive but cannot be sampled: %s", err ? err : "");
    set_state(cam, cam->state, err ? why : "");
}

/* ---------- the set ---------- */

lv_cameras_t *lv_cameras_new(uv_loop_t *loop, lv_pipeline_t *pipe, const lv_camera_def_t *defs, size_t n,
                             lv_camera_state_cb on_state, void *user, char *err, size_t err_size)
{
    GError *gerr = NULL;
    if (n > LV_MAX_CAMERAS) {
        snprintf(err, err_size, "at most %d cameras", LV_MAX_CAMERAS);
        return NULL;
    }
    /* GStreamer is loaded only by a server with cameras; gst_init_check is idempotent, so WebRTC
     * ingest may call it as well. At start, before the loop runs: its registry scan may take a
     * while the first time. */
    if (n > 0 && !gst_init_check(NULL, NULL, &gerr)) {
        snprintf(err, err_size, "GStreamer does not start: %s", gerr ? gerr->message : "unknown error");
        if (gerr)
            g_error_free(gerr);
        return NULL;
    }
    lv_cameras_t *set = calloc(1, sizeof(*set) + n * sizeof(lv_camera_t));
    if (!set) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    set->loop = loop;
    set->pipe = pipe;
    set->on_state = on_state;
    set->user = user;
    set->n = n;
    for (size_t i = 0; i < n; i++) {
        lv_camera_t *cam = &set->cams[i];
        cam->set = set;
        cam->def = defs[i];
        cam->backoff_ms = LV_CAMERA_BACKOFF_MIN_MS;
        atomic_init(&cam->codec, CODEC_NONE);
        atomic_init(&cam->stream_num, -1);
        atomic_init(&cam->want_keyframes, 0);
        atomic_init(&cam->keyframes_active, 0);
        atomic_init(&cam->last_key_ms, 0);
        atomic_init(&cam->key_gap_ms, 0);
        lv_grab_opts_t go = {.on_watchers = on_watchers, .user = cam, .on_encode = on_encode};
        if (!(cam->grab = lv_grab_new(loop, pipe, 0, &go))) {
            for (size_t j = 0; j < i; j++)
                lv_grab_close(set->cams[j].grab);
            for (size_t j = 0; j < n; j++)
                lv_camera_def_wipe(&set->cams[j].def);
            free(set); /* the grabbers' memory goes on a later loop turn, without the set */
            snprintf(err, err_size, "out of memory");
            return NULL;
        }
    }
    /* load the plugins now, while blocking is harmless, rather than on the loop later */
    static const char *const needed[] = {"rtspsrc", "decodebin", "videoconvert", "appsink", "rtph264depay",
                                         "h264parse", "avdec_h264"};
    for (size_t i = 0; n > 0 && i < sizeof(needed) / sizeof(needed[0]); i++) {
        GstElementFactory *f = gst_element_factory_find(needed[i]);
        GstPluginFeature *loaded = f ? gst_plugin_feature_load(GST_PLUGIN_FEATURE(f)) : NULL;
        if (!loaded)
            LV_WARN("cameras: the GStreamer element %s is missing", needed[i]);
        if (loaded)
            gst_object_unref(loaded);
        if (f)
            gst_object_unref(f);
    }
    uv_timer_init(loop, &set->tick);
    set->tick.data = set;
    if (n > 0)
        uv_timer_start(&set->tick, on_tick, TICK_MS, TICK_MS);
    return set;
}

static void free_set(lv_cameras_t *set)
{
    for (size_t i = 0; i < set->n; i++)
        lv_camera_def_wipe(&set->cams[i].def);
    free(set);
}

static void on_tick_closed(uv_handle_t *h)
{
    lv_cameras_t *set = h->data;
    set->tick_closed = true;
    set_maybe_free(set);
}

static void set_maybe_free(lv_cameras_t *set)
{
    if (!set->closing || !set->tick_closed)
        return;
    for (size_t i = 0; i < set->n; i++)
        if (!set->cams[i].done)
            return;
    free_set(set);
}

void lv_cameras_close(lv_cameras_t *set)
{
    if (!set || set->closing)
        return;
    set->closing = true;
    uv_timer_stop(&set->tick);
    for (size_t i = 0; i < set->n; i++)
        lv_grab_unwatch_all(set->cams[i].grab);
    uv_close((uv_handle_t *)&set->tick, on_tick_closed);
    uint64_t now = lv_now_ms();
    for (size_t i = 0; i < set->n; i++)
        camera_step(&set->cams[i], now);
}

size_t lv_cameras_count(const lv_cameras_t *set) { return set ? set->n : 0; }

lv_camera_t *lv_cameras_at(lv_cameras_t *set, size_t i) { return set && i < set->n ? &set->cams[i] : NULL; }

lv_camera_t *lv_cameras_find(lv_cameras_t *set, const char *id, size_t len)
{
    for (size_t i = 0; set && i < set->n; i++)
        if (strlen(set->cams[i].def.id) == len && memcmp(set->cams[i].def.id, id, len) == 0)
            return &set->cams[i];
    return NULL;
}

void lv_cameras_unwatch_all(lv_cameras_t *set, lv_session_t *s)
{
    for (size_t i = 0; set && !set->closing && i < set->n; i++)
        lv_grab_unwatch(set->cams[i].grab, s);
}

const char *lv_camera_id(const lv_camera_t *cam) { return cam->def.id; }

int lv_camera_watch(lv_camera_t *cam, lv_session_t *s)
{
    if (cam->set->closing)
        return LV_ECLOSED;
    return lv_grab_watch(cam->grab, s);
}

void lv_camera_unwatch(lv_camera_t *cam, lv_session_t *s)
{
    if (!cam->set->closing)
        lv_grab_unwatch(cam->grab, s);
}

bool lv_camera_watching(const lv_camera_t *cam, const lv_session_t *s)
{
    return !cam->set->closing && lv_grab_watching(cam->grab, s);
}

void lv_camera_foreach_watcher(const lv_camera_t *cam, void (*fn)(lv_session_t *s, void *ud), void *ud)
{
    if (cam->grab && !cam->set->closing)
        lv_grab_foreach(cam->grab, fn, ud);
}

void lv_camera_info(const lv_camera_t *cam, lv_camera_info_t *out)
{
    memset(out, 0, sizeof(*out));
    out->id = cam->def.id;
    out->url = cam->def.url_clean;
    out->state = cam->state;
    out->reason = cam->reason;
    int codec = atomic_load(&((lv_camera_t *)cam)->codec);
    out->codec = codec >= 0 && codec <= CODEC_OTHER ? codec_names[codec] : "";
    out->width = cam->width;
    out->height = cam->height;
    out->fps = cam->caps_fps > 0 ? cam->caps_fps : cam->measured_fps;
    out->last_frame_age_ms = -1;
    out->reconnects = cam->reconnects;
    if (!cam->grab)
        return;
    lv_grab_stats_t gs;
    lv_grab_stats(cam->grab, &gs);
    out->watchers = lv_grab_watchers(cam->grab);
    if (gs.last_in_ms) {
        uint64_t now = lv_now_ms();
        out->last_frame_age_ms = now > gs.last_in_ms ? (int64_t)(now - gs.last_in_ms) : 0;
    }
    out->keyframes_only = atomic_load(&((lv_camera_t *)cam)->keyframes_active) != 0;
    out->frames = gs.frames_in;
    out->samples = gs.samples;
}

lv_frame_t *lv_camera_snapshot(lv_camera_t *cam, uint32_t seq)
{
    return cam->grab ? lv_grab_latest(cam->grab, seq) : NULL;
}
