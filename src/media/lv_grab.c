/* lv_grab.c - the frame grabber: on-demand JPEG samples of an appsink's video for the sessions
 * watching it (lv_grab.h; design in docs/internals/cameras.md). */
#include "lv_grab.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <gst/app/gstappsink.h>
#include <gst/video/video.h>
#include <turbojpeg.h>

#include "lv_common.h"
#include "lv_log.h"

#define GRAB_WARN_EVERY_MS 60000 /* a failing encode is logged at most once a minute */

/* One session watching: its source in the session's list, its credit while one waits. */
typedef struct {
    lv_source_t src;           /* in session->sources (the pipeline's link) */
    lv_grab_t *g;
    lv_session_t *s;
    lv_queue_t link;           /* in g->watchers */
    uint32_t credit;           /* the credit waiting for a sample; 0: none */
    uint32_t last_seq;         /* the newest sample it was handed */
} grab_watch_t;

/* One encode on the thread pool. The worker touches only this struct and g->tj (one encode at a
 * time per grabber), never a frame reference count. */
typedef struct {
    uv_work_t req;
    lv_grab_t *g;
    GstSample *sample;         /* the job's reference; dropped by the worker */
    uint32_t seq;
    uint64_t arrived_us;       /* when the decoder delivered the sample (on_new_sample) */
    uint64_t pulled_us;        /* when a credit pulled it: the reuse window counts from here */
    lv_frame_t *out;           /* one reference, handed to the loop */
    const char *err;           /* static text when the encode failed */
} grab_job_t;

struct lv_grab {
    uv_loop_t *loop;
    lv_pipeline_t *pipe;
    uint32_t uid;
    lv_grab_opts_t opts;
    uv_async_t wake;           /* new sample while a watcher waits, or a credit to answer */
    GstElement *appsink;       /* our reference to the sink sampled now; NULL: none */
    lv_queue_t watchers;       /* grab_watch_t.link */
    size_t n_watchers;
    lv_frame_t *held[LV_GRAB_KEEP]; /* the last samples, newest at held[(held_next - 1) % KEEP] */
    unsigned held_next;
    uint32_t seq;              /* the newest sample number handed out */
    uint64_t newest_pulled_us; /* when the newest held sample was pulled (the reuse window) */
    uint64_t encode_warn_ms;   /* the last "not encoded" warning (one a minute) */
    bool encode_failing;       /* the last encode failed: watchers were told once */
    tjhandle tj;               /* the encoder's; used by one worker at a time */
    grab_job_t *job;           /* the encode in flight; NULL: none */
    bool closing;
    bool wake_closed;
    /* written by GStreamer's streaming thread, read on the loop */
    atomic_uint_fast64_t frames_in;
    atomic_uint_fast64_t last_in_us;
    atomic_int want;           /* a watcher waits for a sample the appsink does not hold yet */
    uint64_t samples, encode_errors;
    int width, height;
};

static void grab_service(lv_grab_t *g);

/* ---------- streaming thread ---------- */

static GstFlowReturn on_new_sample(GstAppSink *sink, gpointer ud)
{
    lv_grab_t *g = ud;
    (void)sink;
    atomic_fetch_add(&g->frames_in, 1);
    /* with max-buffers=1 drop=true the appsink holds the newest sample, so this time is the held
     * sample's arrival: what a frame's age counts from (not when a credit pulled it) */
    atomic_store(&g->last_in_us, lv_now_us());
    /* the sample stays in the appsink (max-buffers=1, drop=true keeps the newest); it is pulled
     * on the loop thread only when somebody wants it */
    if (atomic_load(&g->want))
        uv_async_send(&g->wake);
    return GST_FLOW_OK;
}

/* ---------- thread pool: encode ---------- */

/* Halve a plane with a 2x2 box filter (edges clamped). dst holds dw x dh bytes, stride dw. */
static void halve_plane(const uint8_t *src, int sw, int sh, int sstride, uint8_t *dst, int dw, int dh)
{
    for (int y = 0; y < dh; y++) {
        const uint8_t *r0 = src + (size_t)(2 * y < sh ? 2 * y : sh - 1) * sstride;
        const uint8_t *r1 = src + (size_t)(2 * y + 1 < sh ? 2 * y + 1 : sh - 1) * sstride;
        for (int x = 0; x < dw; x++) {
            int x0 = 2 * x < sw ? 2 * x : sw - 1, x1 = 2 * x + 1 < sw ? 2 * x + 1 : sw - 1;
            dst[(size_t)y * dw + x] = (uint8_t)((r0[x0] + r0[x1] + r1[x0] + r1[x1] + 2) / 4);
        }
    }
}

static void encode_work(uv_work_t *req)
{
    grab_job_t *job = req->data;
    lv_grab_t *g = job->g;
    GstVideoInfo info;
    GstVideoFrame vf;
    bool mapped = false;
    uint8_t *scaled[2] = {NULL, NULL}; /* ping-pong buffers for halving (three planes each) */
    unsigned char *jpeg = NULL;
    unsigned long jpeg_len = 0;

    GstCaps *caps = gst_sample_get_caps(job->sample);
    GstBuffer *buf = gst_sample_get_buffer(job->sample);
    if (!caps || !buf || !gst_video_info_from_caps(&info, caps) || GST_VIDEO_INFO_FORMAT(&info) != GST_VIDEO_FORMAT_I420) {
        job->err = "the sample is not I420 video";
        goto out;
    }
    if (!gst_video_frame_map(&vf, &info, buf, GST_MAP_READ)) {
        job->err = "the sample's buffer does not map";
        goto out;
    }
    mapped = true;
    int w = GST_VIDEO_INFO_WIDTH(&info), h = GST_VIDEO_INFO_HEIGHT(&info);
    if (w < 16 || h < 16 || w > 16384 || h > 16384) {
        job->err = "the picture's size is out of range";
        goto out;
    }
    const uint8_t *planes[3];
    int strides[3];
    for (int i = 0; i < 3; i++) {
        planes[i] = GST_VIDEO_FRAME_PLANE_DATA(&vf, i);
        strides[i] = GST_VIDEO_FRAME_PLANE_STRIDE(&vf, i);
    }
    /* A picture larger than the cap is halved until it fits: cheap, and the backend's shaping
     * resizes to each model's size anyway (lv_shape.h). */
    int cur = 0;
    while ((w > h ? w : h) > g->opts.max_side) {
        int nw = w / 2, nh = h / 2;
        int cw = (w + 1) / 2, ch = (h + 1) / 2, ncw = (nw + 1) / 2, nch = (nh + 1) / 2;
        size_t need = (size_t)nw * nh + 2 * (size_t)ncw * nch;
        uint8_t *dst = realloc(scaled[cur], need);
        if (!dst) {
            job->err = "out of memory";
            goto out;
        }
        scaled[cur] = dst;
        halve_plane(planes[0], w, h, strides[0], dst, nw, nh);
        halve_plane(planes[1], cw, ch, strides[1], dst + (size_t)nw * nh, ncw, nch);
        halve_plane(planes[2], cw, ch, strides[2], dst + (size_t)nw * nh + (size_t)ncw * nch, ncw, nch);
        planes[0] = dst;
        planes[1] = dst + (size_t)nw * nh;
        planes[2] = planes[1] + (size_t)ncw * nch;
        strides[0] = nw;
        strides[1] = strides[2] = ncw;
        w = nw;
        h = nh;
        cur ^= 1;
    }
    if (tjCompressFromYUVPlanes(g->tj, planes, w, strides, h, TJSAMP_420, &jpeg, &jpeg_len, g->opts.quality, 0) != 0) {
        job->err = "the JPEG encoder failed";
        goto out;
    }
    job->out = lv_frame_new(jpeg, jpeg_len);
    if (!job->out) {
        job->err = "out of memory";
        goto out;
    }
    job->out->width = w;
    job->out->height = h;
out:
    if (mapped)
        gst_video_frame_unmap(&vf);
    tjFree(jpeg);
    free(scaled[0]);
    free(scaled[1]);
    gst_sample_unref(job->sample);
    job->sample = NULL;
}

static void grab_free(lv_grab_t *g)
{
    for (unsigned i = 0; i < LV_GRAB_KEEP; i++)
        lv_frame_unref(g->held[i]);
    if (g->tj)
        tjDestroy(g->tj);
    free(g);
}

static void hold(lv_grab_t *g, lv_frame_t *f)
{
    unsigned slot = g->held_next % LV_GRAB_KEEP;
    lv_frame_unref(g->held[slot]);
    g->held[slot] = f;
    g->held_next++;
}

static lv_frame_t *newest(const lv_grab_t *g)
{
    return g->held_next ? g->held[(g->held_next - 1) % LV_GRAB_KEEP] : NULL;
}

static void encode_done(uv_work_t *req, int status)
{
    grab_job_t *job = req->data;
    lv_grab_t *g = job->g;
    lv_frame_t *f = job->out;
    (void)status; /* a cancelled job never ran: out is NULL and the sample still ours */
    g->job = NULL;
    if (job->sample)
        gst_sample_unref(job->sample);
    uint64_t now_ms = lv_now_ms();
    bool failed_first = false;
    if (!f) {
        g->encode_errors++;
        /* a stream that never encodes (a picture under 16 px, say) fails for every picture: one
         * warning a minute, and the owner tells the watchers once (on_encode) */
        if (job->err && !g->closing && (!g->encode_warn_ms || now_ms - g->encode_warn_ms >= GRAB_WARN_EVERY_MS)) {
            LV_WARN("grab %u: sample %u not encoded: %s (%llu so far)", g->uid, job->seq, job->err,
                    (unsigned long long)g->encode_errors);
            g->encode_warn_ms = now_ms;
        }
        failed_first = !g->encode_failing;
        g->encode_failing = true;
    } else {
        f->share_key = ((uint64_t)g->uid << 32) | job->seq;
        /* the picture's age counts from the decoder's delivery: a camera that stalled leaves its
         * last picture in the appsink, and a credit pulling it seconds later must not make it
         * look new (frame_age_ms, max_frame_age) */
        f->recv_us = job->arrived_us;
        f->capture_age_ms = 0;
    }
    uint64_t pulled_us = job->pulled_us;
    const char *err = job->err;
    free(job);
    if (g->closing) {
        lv_frame_unref(f);
        if (g->wake_closed)
            grab_free(g);
        return;
    }
    if (f) {
        bool recovered = g->encode_failing;
        g->encode_failing = false;
        g->samples++;
        g->width = f->width;
        g->height = f->height;
        g->newest_pulled_us = pulled_us;
        hold(g, f);
        if (recovered && g->opts.on_encode)
            g->opts.on_encode(g, NULL, g->opts.user);
    } else if (failed_first && g->opts.on_encode && err) {
        g->opts.on_encode(g, err, g->opts.user);
    }
    grab_service(g);
}

/* ---------- loop thread ---------- */

static int min_interval(const lv_grab_t *g)
{
    int best = 0;
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &g->watchers) {
        const grab_watch_t *w = LV_CONTAINER_OF(n, grab_watch_t, link);
        int iv = w->s->rec.settings.interval_ms;
        if (iv > 0 && (best == 0 || iv < best))
            best = iv;
    }
    return best;
}

int lv_grab_min_interval_ms(const lv_grab_t *g) { return min_interval(g); }

static void start_encode(lv_grab_t *g, GstSample *sample, uint64_t arrived_us)
{
    grab_job_t *job = calloc(1, sizeof(*job));
    if (!job) {
        gst_sample_unref(sample);
        return;
    }
    job->g = g;
    job->sample = sample;
    job->seq = ++g->seq;
    if (g->seq == 0) /* 2^32 samples later: 0 means "none" to a watcher */
        job->seq = g->seq = 1;
    job->pulled_us = lv_now_us();
    job->arrived_us = arrived_us && arrived_us <= job->pulled_us ? arrived_us : job->pulled_us;
    job->req.data = job;
    if (uv_queue_work(g->loop, &job->req, encode_work, encode_done) != 0) {
        gst_sample_unref(sample);
        free(job);
        return;
    }
    g->job = job;
}

/* Answer the credits that can be answered with the newest sample; pull and encode a new one when
 * a credit is left waiting. Bounded: one pass over the watchers, at most one pull. */
static void grab_service(lv_grab_t *g)
{
    if (g->closing)
        return;
    lv_frame_t *f = newest(g);
    uint64_t now_us = lv_now_us();
    int reuse_ms = min_interval(g);
    if (reuse_ms > LV_GRAB_REUSE_MAX_MS)
        reuse_ms = LV_GRAB_REUSE_MAX_MS;
    /* reuse counts from the pull, not the picture's age: a sample pulled for a credit goes to every
     * watcher waiting then, however old the camera made it (its recv_us says how old) */
    bool fresh = f && now_us - g->newest_pulled_us < (uint64_t)reuse_ms * 1000;
    uint32_t seq = f ? lv_grab_frame_seq(f) : 0;
    bool waiting = false;
    lv_queue_t *n, *next;
    for (n = g->watchers.next; n != &g->watchers; n = next) {
        next = n->next;
        grab_watch_t *w = LV_CONTAINER_OF(n, grab_watch_t, link);
        if (!w->credit)
            continue;
        if (w->s->credit_outstanding != w->credit) {
            /* the pipeline dropped the credit without calling stop (a page frame answered it, the
             * source switched): no encode for it, and no sample counted as handed */
            w->credit = 0;
            continue;
        }
        if (fresh && seq != w->last_seq) {
            uint32_t credit = w->credit;
            w->credit = 0;
            /* only a sample the session took counts as had: its next credit may still get this
             * one within the reuse window, in step with the other watchers */
            if (lv_pipeline_source_frame(g->pipe, w->s, credit, f) == 0)
                w->last_seq = seq;
        } else {
            waiting = true;
        }
    }
    if (!waiting) {
        atomic_store(&g->want, 0);
        return;
    }
    if (g->job)
        return; /* the encode's end serves them */
    /* want before the pull: a sample arriving between an empty pull and want=1 would be missed;
     * without a sink, the next sink's first sample wakes us */
    atomic_store(&g->want, 1);
    if (!g->appsink)
        return;
    /* read before the pull: a sample that replaced the held one in between gets the earlier
     * arrival, so a picture may look older by a frame interval, never newer than it is */
    uint64_t arrived_us = atomic_load(&g->last_in_us);
    GstSample *sample = gst_app_sink_try_pull_sample(GST_APP_SINK(g->appsink), 0);
    if (!sample)
        return; /* on_new_sample wakes us */
    atomic_store(&g->want, 0);
    start_encode(g, sample, arrived_us);
}

static void on_wake(uv_async_t *a) { grab_service(a->data); }

static void watch_request(lv_source_t *src, lv_session_t *s, uint32_t credit_id)
{
    grab_watch_t *w = LV_CONTAINER_OF(src, grab_watch_t, src);
    (void)s;
    w->credit = credit_id;
    /* answered on a later turn: the pipeline must not be re-entered from request_frame */
    uv_async_send(&w->g->wake);
}

static void watch_stop(lv_source_t *src, lv_session_t *s)
{
    grab_watch_t *w = LV_CONTAINER_OF(src, grab_watch_t, src);
    (void)s;
    w->credit = 0;
}

static const lv_source_ops_t watch_ops = {.request_frame = watch_request, .stop = watch_stop};

/* The one process-wide number (loop thread only): share keys of different grabbers never meet. */
static uint32_t last_uid;

uint32_t lv_grab_uid(const lv_grab_t *g) { return g->uid; }

lv_grab_t *lv_grab_new(uv_loop_t *loop, lv_pipeline_t *pipe, uint32_t uid, const lv_grab_opts_t *opts)
{
    lv_grab_t *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    if (uid == 0) {
        uid = ++last_uid;
        if (uid == 0)
            uid = last_uid = 1;
    }
    g->loop = loop;
    g->pipe = pipe;
    g->uid = uid;
    if (opts)
        g->opts = *opts;
    if (g->opts.max_side < 64 || g->opts.max_side > 4096)
        g->opts.max_side = LV_GRAB_MAX_SIDE;
    if (g->opts.quality < 10 || g->opts.quality > 100)
        g->opts.quality = LV_GRAB_QUALITY;
    lv_queue_init(&g->watchers);
    atomic_init(&g->frames_in, 0);
    atomic_init(&g->last_in_us, 0);
    atomic_init(&g->want, 0);
    if (!(g->tj = tjInitCompress()) || uv_async_init(loop, &g->wake, on_wake) != 0) {
        if (g->tj)
            tjDestroy(g->tj);
        free(g);
        return NULL;
    }
    g->wake.data = g;
    return g;
}

static void on_wake_closed(uv_handle_t *h)
{
    lv_grab_t *g = h->data;
    g->wake_closed = true;
    if (!g->job)
        grab_free(g);
}

void lv_grab_close(lv_grab_t *g)
{
    if (!g || g->closing)
        return;
    g->closing = true; /* no on_watchers calls from here */
    lv_grab_unwatch_all(g);
    lv_grab_sink_drop(g);
    if (g->job)
        uv_cancel((uv_req_t *)&g->job->req); /* fails harmlessly when it already runs */
    uv_close((uv_handle_t *)&g->wake, on_wake_closed);
}

GstElement *lv_grab_sink_new(lv_grab_t *g)
{
    GstElement *bin = gst_bin_new(NULL);
    GstElement *conv = gst_element_factory_make("videoconvert", NULL);
    GstElement *sink = gst_element_factory_make("appsink", NULL);
    if (!bin || !conv || !sink) {
        LV_ERROR("grab %u: the GStreamer elements videoconvert/appsink are missing", g->uid);
        if (bin)
            gst_object_unref(bin);
        if (conv)
            gst_object_unref(conv);
        if (sink)
            gst_object_unref(sink);
        return NULL;
    }
    /* I420 is what the H.264/H.265/VP8 decoders give (videoconvert passes it through) and what
     * turbojpeg encodes from without a colour conversion */
    GstCaps *caps = gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, "I420", NULL);
    g_object_set(sink, "caps", caps, "drop", TRUE, "max-buffers", 1, "sync", FALSE, "enable-last-sample", FALSE,
                 NULL);
    gst_caps_unref(caps);
    GstAppSinkCallbacks cbs = {.new_sample = on_new_sample};
    gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cbs, g, NULL);
    gst_object_ref_sink(bin); /* ours until the end of this function */
    gst_object_ref(sink);     /* the grabber's, beside the bin's */
    gst_bin_add_many(GST_BIN(bin), conv, sink, NULL);
    GstPad *target = gst_element_get_static_pad(conv, "sink");
    GstPad *ghost = target ? gst_ghost_pad_new("sink", target) : NULL;
    if (target)
        gst_object_unref(target);
    if (!gst_element_link(conv, sink) || !ghost || !gst_element_add_pad(bin, ghost)) {
        LV_ERROR("grab %u: the sink bin does not link", g->uid);
        if (ghost)
            gst_object_unref(ghost);
        gst_object_unref(sink);
        gst_object_unref(bin);
        return NULL;
    }
    lv_grab_sink_drop(g);
    g->appsink = sink;
    g->encode_failing = false; /* a new stream: a failure is told again */
    /* hand a floating reference back, as gst_bin_add expects */
    g_object_force_floating(G_OBJECT(bin));
    return bin;
}

void lv_grab_sink_drop(lv_grab_t *g)
{
    if (!g->appsink)
        return;
    gst_object_unref(g->appsink);
    g->appsink = NULL;
}

int lv_grab_watch(lv_grab_t *g, lv_session_t *s)
{
    if (g->closing)
        return LV_ECLOSED;
    if (lv_grab_watching(g, s))
        return LV_EEXIST;
    grab_watch_t *w = calloc(1, sizeof(*w));
    if (!w)
        return LV_ENOMEM;
    w->src.ops = &watch_ops;
    lv_queue_init(&w->src.link);
    w->g = g;
    w->s = s;
    lv_queue_insert_tail(&g->watchers, &w->link);
    g->n_watchers++;
    lv_pipeline_attach_source(g->pipe, s, &w->src, lv_now_ms());
    if (g->opts.on_watchers)
        g->opts.on_watchers(g, g->opts.user);
    return 0;
}

/* A watcher is linked in its session's sources for as long as it is in g->watchers (lv_grab_watch,
 * lv_grab_unwatch): look among the session's one or two sources, not the grabber's hundreds of
 * watchers (the engine asks this of every camera at each start, stop, settings change and close). */
static grab_watch_t *find_watch(const lv_grab_t *g, const lv_session_t *s)
{
    const lv_queue_t *n;
    for (n = s->sources.next; n != &s->sources; n = n->next) {
        const lv_source_t *src = LV_CONTAINER_OF(n, lv_source_t, link);
        if (src->ops != &watch_ops)
            continue;
        grab_watch_t *w = LV_CONTAINER_OF(src, grab_watch_t, src);
        if (w->g == g)
            return w;
    }
    return NULL;
}

bool lv_grab_watching(const lv_grab_t *g, const lv_session_t *s) { return find_watch(g, s) != NULL; }

void lv_grab_unwatch(lv_grab_t *g, lv_session_t *s)
{
    grab_watch_t *w = find_watch(g, s);
    if (!w)
        return;
    lv_queue_remove(&w->link);
    g->n_watchers--;
    lv_pipeline_detach_source(g->pipe, s, &w->src, lv_now_ms());
    free(w);
    if (g->opts.on_watchers && !g->closing)
        g->opts.on_watchers(g, g->opts.user);
}

void lv_grab_unwatch_all(lv_grab_t *g)
{
    while (!lv_queue_empty(&g->watchers)) {
        grab_watch_t *w = LV_CONTAINER_OF(lv_queue_head(&g->watchers), grab_watch_t, link);
        lv_grab_unwatch(g, w->s);
    }
}

void lv_grab_foreach(const lv_grab_t *g, void (*fn)(lv_session_t *s, void *ud), void *ud)
{
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &g->watchers) {
        fn(LV_CONTAINER_OF(n, grab_watch_t, link)->s, ud);
    }
}

size_t lv_grab_watchers(const lv_grab_t *g) { return g->n_watchers; }

lv_frame_t *lv_grab_latest(lv_grab_t *g, uint32_t seq)
{
    if (seq) {
        for (unsigned i = 0; i < LV_GRAB_KEEP; i++)
            if (g->held[i] && lv_grab_frame_seq(g->held[i]) == seq)
                return lv_frame_ref(g->held[i]);
    }
    lv_frame_t *f = newest(g);
    return f ? lv_frame_ref(f) : NULL;
}

void lv_grab_stats(const lv_grab_t *g, lv_grab_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->frames_in = atomic_load(&((lv_grab_t *)g)->frames_in);
    out->last_in_ms = atomic_load(&((lv_grab_t *)g)->last_in_us) / 1000u; /* lv_now_ms's clock */
    out->samples = g->samples;
    out->encode_errors = g->encode_errors;
    out->width = g->width;
    out->height = g->height;
}
