/* lv_camera.h - the admin's RTSP cameras: one GStreamer pipeline per camera however many sessions
 * watch it (rtspsrc over TCP ! decodebin ! the grabber, lv_grab.h), started when the first session
 * watches and stopped LV_CAMERA_LINGER_MS after the last one left; reconnected with exponential
 * backoff on error or end of stream; restarted by a watchdog when it stalls. Design and threads in
 * docs/internals/cameras.md, operations in docs/operations.md ("Cameras").
 *
 * Credentials (lv_rtspurl.h): the URL shown anywhere is url_clean (credentials in the query read
 * ***); rtspsrc's location gets url_rtsp (the query as written), user and password go to its
 * user-id / user-pw properties only, and every text that leaves this
 * module (reason, log line) went through lv_rtspurl_scrub.
 *
 * Threads and lifetimes:
 *   - Everything here runs on the loop thread. GStreamer's threads touch only atomics in the
 *     camera and elements of the camera's own pipeline; state changes to PLAYING and NULL and the
 *     pipeline's last unref run on the libuv thread pool, one operation per camera at a time.
 *   - lv_cameras_new copies the definitions; lv_cameras_close unwatches every session, stops the
 *     timers and tears the pipelines down on the pool; the set frees itself when the last of them
 *     is done (the loop keeps running until then: its handles and requests are open).
 *   - on_state fires on the loop thread after a camera's state or reason changed; it must not call
 *     lv_cameras_close. Camera pointers stay valid until lv_cameras_close. */
#ifndef LV_CAMERA_H
#define LV_CAMERA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_pipeline.h"
#include "lv_rtspurl.h"
#include "lv_session.h"

#define LV_MAX_CAMERAS 64
#define LV_CAMERA_LINGER_MS 30000      /* the pipeline stays this long after the last watcher left */
#define LV_CAMERA_BACKOFF_MIN_MS 1000  /* reconnect delays: 1 s, 2 s, 4 s ... */
#define LV_CAMERA_BACKOFF_MAX_MS 30000 /* ... at most 30 s */
#define LV_CAMERA_STALL_MS 10000       /* a started pipeline with no picture this long is restarted */
#define LV_CAMERA_FAIL_AFTER 5         /* consecutive failures before the state reads "failed" */
#define LV_CAMERA_REASON_MAX 256

typedef enum {
    LV_CAMERA_IDLE = 0,     /* nobody watches: no pipeline */
    LV_CAMERA_STARTING,     /* connecting, no picture yet */
    LV_CAMERA_LIVE,         /* pictures arrive */
    LV_CAMERA_RECONNECTING, /* lost (reason says why); the next try is due after a backoff */
    LV_CAMERA_FAILED,       /* LV_CAMERA_FAIL_AFTER tries failed in a row, or nothing can work
                             * without a fix (a missing plugin, refused credentials); still retried
                             * every LV_CAMERA_BACKOFF_MAX_MS */
} lv_camera_state_t;

/** "idle", "starting", "live", "reconnecting", "failed". */
const char *lv_camera_state_name(lv_camera_state_t st);

typedef struct lv_cameras lv_cameras_t;
typedef struct lv_camera lv_camera_t;

/** What GET /api/v1/cameras shows of one camera (no credentials in it). */
typedef struct {
    const char *id;             /* the camera's, valid while it lives */
    const char *url;            /* url_clean */
    lv_camera_state_t state;
    const char *reason;         /* scrubbed; "" when live or idle */
    const char *codec;          /* "h264", "h265", another RTP encoding name lowercased, or "" */
    int width, height;          /* of the decoded stream; 0 before the first picture */
    double fps;                 /* the stream's frame rate (its caps, else measured); 0 unknown */
    size_t watchers;
    int64_t last_frame_age_ms;  /* since the decoder's last picture; -1 when none yet */
    bool keyframes_only;        /* decode: "keyframes" vs "all" */
    uint64_t frames;            /* pictures decoded since start */
    uint64_t samples;           /* JPEG samples made for watchers */
    uint64_t reconnects;        /* restarts after an error, end of stream or stall */
} lv_camera_info_t;

typedef void (*lv_camera_state_cb)(lv_camera_t *cam, void *user);

/** A camera set for defs[0..n) (copied; n <= LV_MAX_CAMERAS). GStreamer is initialised here when
 * n > 0 (not before: a server without cameras never loads it). NULL on allocation failure or when
 * GStreamer does not initialise (*err then says why). */
lv_cameras_t *lv_cameras_new(uv_loop_t *loop, lv_pipeline_t *pipe, const lv_camera_def_t *defs, size_t n,
                             lv_camera_state_cb on_state, void *user, char *err, size_t err_size);
/** See the header comment. NULL is ignored. */
void lv_cameras_close(lv_cameras_t *set);

size_t lv_cameras_count(const lv_cameras_t *set);
lv_camera_t *lv_cameras_at(lv_cameras_t *set, size_t i);
/** The camera with this id (len bytes), NULL when none. */
lv_camera_t *lv_cameras_find(lv_cameras_t *set, const char *id, size_t len);
/** Unwatch every camera s watches (before the session is freed, stopped, or switched source). */
void lv_cameras_unwatch_all(lv_cameras_t *set, lv_session_t *s);

const char *lv_camera_id(const lv_camera_t *cam);
/** Session s takes its frames from cam (the pipeline starts if it was idle). 0, LV_EEXIST, LV_ENOMEM,
 * LV_ECLOSED while the set closes. */
int lv_camera_watch(lv_camera_t *cam, lv_session_t *s);
void lv_camera_unwatch(lv_camera_t *cam, lv_session_t *s);
bool lv_camera_watching(const lv_camera_t *cam, const lv_session_t *s);
/** Call fn for every session watching cam; fn must not watch or unwatch. */
void lv_camera_foreach_watcher(const lv_camera_t *cam, void (*fn)(lv_session_t *s, void *ud), void *ud);
void lv_camera_info(const lv_camera_t *cam, lv_camera_info_t *out);
/** The sample numbered seq while held (the last 8), else the newest; a new reference; NULL when
 * the camera has none. */
lv_frame_t *lv_camera_snapshot(lv_camera_t *cam, uint32_t seq);

#endif
