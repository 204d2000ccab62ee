/* lv_webrtc.h - WebRTC ingest: a browser or robot streams its camera to livevlm (POST /offer), and
 * the video becomes a source of one session, sampled like an RTSP camera (lv_grab.h). One
 * webrtcbin per offer, receive-only video; audio sections are answered inactive. Non-trickle: the
 * answer goes back once ICE gathering is complete (or LV_WEBRTC_GATHER_MS passed), with every
 * candidate in it, because POST /offer is one request and one response (docs/internals/webrtc.md).
 *
 * Threads: lv_webrtc_* calls are loop-thread only. GStreamer's signals (ICE gathering and
 * connection state, new pads, bus errors) arrive on its threads and are handed to the loop through
 * one uv_async_t and a locked list; GStreamer's start (gst_init, plugin loading), negotiating
 * (set-remote-description, create-answer, set-local-description: promises that are waited on) and
 * tearing down (state NULL) run on the libuv thread pool, holding at most half of its threads at
 * once. The loop never changes a GStreamer state.
 *
 * Lifetimes:
 *   - A feed starts with lv_webrtc_offer and is watched by its session from then on (a source is
 *     attached: the session stays attached and cannot expire or be evicted while its feed lives).
 *   - The answer callback runs exactly once per accepted offer, on the loop thread, unless
 *     lv_webrtc_offer_abandon is called first (the HTTP client went; the feed is then torn down).
 *   - A feed ends when its peer goes: ICE failed or closed, no video for LV_WEBRTC_MEDIA_TIMEOUT_MS,
 *     a pipeline error, or a new offer for the same session. The session's viewers then hear the
 *     error `video_ended` with the reason (docs/protocol.md); its source is detached at once and the
 *     pipeline is brought to NULL and freed off the loop.
 *   - An ended feed keeps its pipeline until its teardown ran; until then it counts against twice
 *     the caps (closing feeds are not free). A setup that no thread has started is cancelled.
 *   - lv_webrtc_destroy (shutdown, after the loop stopped serving) stops every feed; the loop must
 *     run on for the thread-pool work and the async handle to finish. */
#ifndef LV_WEBRTC_H
#define LV_WEBRTC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_pipeline.h"
#include "lv_session.h"

#define LV_WEBRTC_GATHER_MS 5000         /* the answer waits this long at most for ICE gathering */
#define LV_WEBRTC_MEDIA_TIMEOUT_MS 10000 /* a feed with no picture this long has ended */
#define LV_WEBRTC_MAX_PER_PRINCIPAL 4
#define LV_WEBRTC_MAX_TOTAL 64
/* Grabber uids of WebRTC feeds start here, far above the RTSP cameras' (numbered from 1), so a
 * feed's share_key never equals a camera sample's: no two feeds are the same picture. */
#define LV_WEBRTC_UID_BASE 0x40000000u

typedef struct lv_webrtc lv_webrtc_t;
typedef struct lv_webrtc_feed lv_webrtc_feed_t;

typedef struct {
    size_t max_total;         /* 0: LV_WEBRTC_MAX_TOTAL */
    size_t max_per_principal; /* 0: LV_WEBRTC_MAX_PER_PRINCIPAL */
    const char *stun_server;  /* "stun://host:port" or NULL/"" for none (loopback and LAN need none) */
} lv_webrtc_opts_t;

/** The answer to one offer, on the loop thread. status 200: sdp is the full answer (valid during the
 * call). Otherwise status (503, 500), code and message say why. */
typedef void (*lv_webrtc_answer_fn)(void *user, int status, const char *sdp, const char *code, const char *message);

/** GStreamer's start is over, on the loop thread: rc 0 (offers are taken now) or LV_EIO with why
 * (valid during the call; e.g. webrtcbin missing: gstreamer1.0-nice and plugins-bad must be
 * installed). The host may be destroyed in this call. */
typedef void (*lv_webrtc_ready_fn)(void *user, int rc, const char *why);

/** The host of every feed. Returns at once (0, or LV_ENOMEM); GStreamer is started on the thread
 * pool (gst_init_check with its registry scan and the plugins feeds use: seconds on a cold
 * machine), then ready(user, ...) runs exactly once, unless lv_webrtc_destroy came first. */
int lv_webrtc_create(uv_loop_t *loop, lv_pipeline_t *pipe, const lv_webrtc_opts_t *opts, lv_webrtc_ready_fn ready,
                     void *user, lv_webrtc_t **out);
/** 0: offers are taken; LV_EAGAIN: GStreamer is still starting; LV_EIO: it could not (*why says
 * why, valid while w lives). */
int lv_webrtc_ready(const lv_webrtc_t *w, const char **why);
/** Stop every feed (no answer callback runs any more) and free the host once the pool work is done.
 * NULL is ignored. */
void lv_webrtc_destroy(lv_webrtc_t *w);

/** Start a feed for session s from a checked offer (lv_sdp_check passed): a previous, answered feed
 * of s is replaced. 0: fn(user, ...) runs later, exactly once (or never after
 * lv_webrtc_offer_abandon); *handle is the feed, for abandon. LV_EEXIST: s has an offer still being
 * answered; LV_ELIMIT: the caps (per principal, total; closing feeds counted up to twice them) are
 * reached; LV_EAGAIN: not ready (lv_webrtc_ready); LV_ECLOSED, LV_ENOMEM, LV_EIO: could not start.
 * The message is in why. */
int lv_webrtc_offer(lv_webrtc_t *w, lv_session_t *s, const char *sdp, size_t len, lv_webrtc_answer_fn fn, void *user,
                    lv_webrtc_feed_t **handle, char *why, size_t why_size);
/** The one waiting for the answer went: fn will not be called and the feed is torn down. */
void lv_webrtc_offer_abandon(lv_webrtc_t *w, lv_webrtc_feed_t *f);

/** Counters for metrics and tests. */
typedef struct {
    size_t feeds;      /* live (negotiating or streaming) */
    size_t alive;      /* not yet freed: live and closing */
    size_t peak_alive; /* the most alive at once */
    uint64_t offers, answered, failed, ended;
} lv_webrtc_stats_t;
void lv_webrtc_stats(const lv_webrtc_t *w, lv_webrtc_stats_t *out);
/** Does s have a feed now? */
int lv_webrtc_session_has_feed(const lv_webrtc_t *w, const lv_session_t *s);
/** End s's feed, if it has one, because the session no longer takes its frames from it (its
 * `source` changed): an answer still owed is a 503 saying reason; the viewers hear no video_ended
 * (they chose this). NULL w is ignored. */
void lv_webrtc_session_close(lv_webrtc_t *w, const lv_session_t *s, const char *reason);

#endif
