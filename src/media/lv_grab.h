/* lv_grab.h - a frame grabber: turns the decoded video reaching a GStreamer appsink into JPEG
 * frames (lv_frame_t) for the sessions watching it, on demand. Shared by the RTSP cameras
 * (lv_camera.h, many watchers) and WebRTC ingest (one watcher per stream).
 *
 * Pull-based sampling (docs/internals/cameras.md): each watcher is a source (lv_port_source.h)
 * attached to its session. The pipeline asks it for a frame (a credit); the grabber answers on a
 * later loop turn with lv_pipeline_source_frame and the newest sample the watcher has not had yet,
 * when that sample was pulled within the reuse window (the fastest interval among the watchers,
 * at most LV_GRAB_REUSE_MAX_MS); otherwise it takes a new one. A sample is pulled from the appsink
 * (drop=true, max-buffers=1: always the newest decoded picture) and encoded (libturbojpeg, on the
 * libuv thread pool) only when a watcher waits for one, so a camera nobody asks costs a decoder
 * and nothing else. Every watcher waiting when a sample is ready gets the same lv_frame_t, with
 * share_key = ((uint64_t)uid << 32) | seq, so sessions asking the same question about it share
 * one inference (lv_pipeline.h). The last LV_GRAB_KEEP samples stay for snapshots.
 *
 * Threads: everything here runs on the loop thread except the appsink's new-sample callback
 * (GStreamer's streaming thread: two atomics and uv_async_send) and the encoder (thread pool: the
 * GstSample it was handed, its own turbojpeg handle). Frame references are taken and dropped on
 * the loop thread only.
 *
 * Lifetimes:
 *   - lv_grab_new returns the owner's grabber; lv_grab_close ends it (every watcher detached; the
 *     memory goes on a later loop turn, after an encode in flight has finished).
 *   - lv_grab_sink_new makes a new sink element (a bin: videoconvert ! appsink, pad "sink", any raw
 *     video) and makes it the one samples are pulled from; the grabber keeps its own reference to
 *     it until the next lv_grab_sink_new or lv_grab_sink_drop. The caller adds it to its pipeline
 *     (gst_bin_add takes the floating reference) and links its decoder to it.
 *   - A sink from a grabber calls into that grabber from GStreamer's threads until its pipeline is
 *     in the NULL state: the owner brings every such pipeline to NULL (off the loop thread) before
 *     lv_grab_close.
 *   - A watcher lives from lv_grab_watch to lv_grab_unwatch (or lv_grab_close); the session must
 *     outlive it: unwatch before the registry frees the session. */
#ifndef LV_GRAB_H
#define LV_GRAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <gst/gst.h>
#include <uv.h>

#include "lv_pipeline.h"
#include "lv_session.h"

#define LV_GRAB_KEEP 8              /* samples kept for snapshot?seq= */
#define LV_GRAB_MAX_SIDE 1920       /* default cap of a JPEG's longest side (halved until it fits) */
#define LV_GRAB_QUALITY 85          /* default JPEG quality */
#define LV_GRAB_REUSE_MAX_MS 2000   /* a sample older than this is never handed to a new credit */

typedef struct lv_grab lv_grab_t;

typedef struct {
    int max_side;                   /* 0: LV_GRAB_MAX_SIDE; else 64..4096 */
    int quality;                    /* 0: LV_GRAB_QUALITY; else 10..100 */
    /** Called on the loop thread when the number of watchers or their fastest interval changed
     * (the camera's linger and keyframe-only decode decisions); may be NULL. Must not call
     * lv_grab_close. */
    void (*on_watchers)(lv_grab_t *g, void *user);
    void *user;
    /** Called on the loop thread when encoding samples starts failing (err: a static sentence;
     * once, not per picture, until a sample encodes again) and when one encodes again (err NULL),
     * so the owner can tell the watchers; may be NULL. Must not call lv_grab_close. */
    void (*on_encode)(lv_grab_t *g, const char *err, void *user);
} lv_grab_opts_t;

/** A grabber whose frames carry share keys (uid << 32) | seq. uid 0: the next number of a
 * process-wide counter (loop thread only; never 0, never given twice), which is what cameras and
 * WebRTC streams use so that their keys never meet; lv_grab_uid tells it. pipe: the pipeline the
 * watchers' sessions live in (outlives the grabber). NULL on allocation failure. */
lv_grab_t *lv_grab_new(uv_loop_t *loop, lv_pipeline_t *pipe, uint32_t uid, const lv_grab_opts_t *opts);
uint32_t lv_grab_uid(const lv_grab_t *g);
/** Detach every watcher and free the grabber once an encode in flight is done. Every pipeline
 * holding a sink from it must already be in the NULL state. NULL is ignored. */
void lv_grab_close(lv_grab_t *g);

/** A new sink element (floating reference, for gst_bin_add), now the one sampled; NULL on failure
 * (a GStreamer element missing). */
GstElement *lv_grab_sink_new(lv_grab_t *g);
/** Stop sampling the current sink (before its pipeline is torn down); held samples stay. */
void lv_grab_sink_drop(lv_grab_t *g);

/** Session s takes its frames from g: a source is attached to s (lv_pipeline_attach_source).
 * 0, LV_EEXIST when s already watches g, LV_ENOMEM. */
int lv_grab_watch(lv_grab_t *g, lv_session_t *s);
/** s stops watching g (its source detached); nothing when it did not watch. */
void lv_grab_unwatch(lv_grab_t *g, lv_session_t *s);
/** Every watcher stops watching (the owner is about to go). */
void lv_grab_unwatch_all(lv_grab_t *g);
/** Does s watch g? */
bool lv_grab_watching(const lv_grab_t *g, const lv_session_t *s);
/** Call fn for every session watching g, oldest watcher first; fn must not watch or unwatch. */
void lv_grab_foreach(const lv_grab_t *g, void (*fn)(lv_session_t *s, void *ud), void *ud);
/** How many sessions watch g. */
size_t lv_grab_watchers(const lv_grab_t *g);
/** The fastest interval (ms) among the watchers' settings; 0 when nobody watches. */
int lv_grab_min_interval_ms(const lv_grab_t *g);

/** A held sample for a snapshot: the one numbered seq while it is still held, else (or with seq 0)
 * the newest. A new reference (lv_frame_unref it), NULL when none is held. The sample's number is
 * the low 32 bits of its share_key (lv_grab_frame_seq). */
lv_frame_t *lv_grab_latest(lv_grab_t *g, uint32_t seq);
/** The sample number of a frame made by a grabber (0 for another frame). */
static inline uint32_t lv_grab_frame_seq(const lv_frame_t *f)
{
    return (uint32_t)(f->share_key & 0xffffffffu);
}

/** Counters (loop thread). frames_in: pictures the decoder delivered to the sink (any thread wrote
 * them; read atomically); last_in_ms: monotonic ms (lv_now_ms) of the newest one, 0 before the
 * first; a sample's frame carries that arrival as its recv_us, so its age is the picture's;
 * samples: JPEGs encoded; width/height: of the newest sample (0 before the first). */
typedef struct {
    uint64_t frames_in;
    uint64_t last_in_ms;
    uint64_t samples;
    uint64_t encode_errors;
    int width, height;
} lv_grab_stats_t;
void lv_grab_stats(const lv_grab_t *g, lv_grab_stats_t *out);

#endif
