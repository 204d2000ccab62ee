/* lv_chat.h - one chat/completions call to a backend, streamed (SSE) when the backend streams,
 * with connect / first-token / stream-idle / total deadlines. Called on the pool's loop, never
 * blocks; the transfer itself runs on the pool's lane (lv_lane.h: the same loop, or a backend I/O
 * thread, lv_pool_use_thread), and every callback comes back on the pool's loop. */
#ifndef LV_CHAT_H
#define LV_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "lv_backend.h"
#include "lv_traceparent.h"

#define LV_CHAT_TEXT_MAX (64 * 1024)          /* answer text cap */
#define LV_CHAT_SSE_LINE_MAX (256 * 1024)     /* one SSE line / event cap */
#define LV_CHAT_BODY_MAX (1024 * 1024)        /* non-streamed answer body cap */
#define LV_CHAT_ERROR_BODY_MAX (64 * 1024)    /* error bodies: only the start is read */
#define LV_CHAT_DEFAULT_CONNECT_MS 5000
#define LV_CHAT_DEFAULT_FIRST_TOKEN_MS 30000
#define LV_CHAT_DEFAULT_TOTAL_MS 120000
/* After the first token, a stream silent this long (no bytes at all, SSE comments included) has
 * stalled: a healthy server sends a token every 10-100 ms, and even a preempted request (vLLM
 * recomputing its KV cache) resumes within a second or two. 5 s is 50x a slow token, short enough
 * that a camera at one frame a second loses a handful of frames, not minutes. */
#define LV_CHAT_DEFAULT_STREAM_IDLE_MS 5000

typedef struct lv_chat lv_chat_t;
struct lv_frame; /* lv_session.h: a refcounted, immutable camera frame */

/** One request. Everything but frame is copied or encoded by lv_chat_start(): the caller may free
 * it all (jpeg included) as soon as lv_chat_start() returns. */
typedef struct {
    const char *model;           /* the backend's model id, 1..256 bytes */
    const char *prompt;          /* UTF-8 */
    int max_tokens;              /* <= 0: not sent */
    double temperature;          /* 0..100 (the protocol allows 0..2) */
    const void *jpeg;            /* plain bytes, copied at start; NULL / 0 (and no frame):
                                  * text-only request. Not together with frame (LV_EINVAL) */
    size_t jpeg_len;
    struct lv_frame *frame;      /* NULL, or the image as a frame, sent without a copy: the chat
                                  * takes a reference (lv_frame_ref) in lv_chat_start and the
                                  * backend I/O thread reads frame->data[0..len) in place while
                                  * it builds the body. The frame's refcount is not atomic, so the
                                  * reference is taken and dropped on the pool's loop only: at
                                  * on_done (before it runs), at lv_chat_cancel when the I/O side
                                  * is not reading the bytes then, else on the pool's loop's turn
                                  * right after the I/O side has built the body (or when the lane
                                  * is destroyed). The I/O side never touches the refcount, and
                                  * the bytes must stay unchanged (frames are immutable once made).
                                  * The caller may drop its own reference as soon as lv_chat_start
                                  * returns. A retry or a resend (lv_h1c's second connection,
                                  * curl's rewind) sends the built body, not the frame again */
    int connect_timeout_ms;      /* TCP+TLS connect; <= 0: LV_CHAT_DEFAULT_CONNECT_MS */
    int first_token_timeout_ms;  /* start -> first non-empty content; <= 0: default (30 s) */
    int total_timeout_ms;        /* start -> complete answer; <= 0: default (120 s) */
    int stream_idle_timeout_ms;  /* after the first token, the longest silence allowed (no bytes);
                                  * 0: default (LV_CHAT_DEFAULT_STREAM_IDLE_MS), < 0: none */
    int want_debug;              /* fill request_debug_json / response_debug_json */
    const lv_trace_t *trace;     /* NULL or no trace id: no traceparent header. Otherwise the
                                  * request carries "traceparent: 00-<trace id>-<a new span id>-01"
                                  * and its tracestate, when it has one that lv_tracestate_ok takes */
} lv_chat_req_t;

/** The outcome, handed to on_done. Every pointer is owned by the chat and valid only during
 * on_done: copy what you keep. */
typedef struct {
    int rc;                      /* 0, LV_EBACKEND, LV_ETIMEDOUT, LV_ENOMEM; LV_EIO when the
                                  * request could not be started ("could not start the request":
                                  * curl refused the handle, or the body could not be built) */
    const char *error_code;      /* "backend_error" / "backend_timeout"; NULL when rc == 0 */
    const char *error_message;   /* human text, NULL when rc == 0: "backend returned HTTP 500:
                                  * <first 200 chars of its error message>", "malformed stream",
                                  * "no first token within 30000 ms", "cannot reach backend:
                                  * connection refused", ... (never holds the API key) */
    int http_status;             /* 0 when no HTTP answer arrived */
    const char *text;            /* the whole answer (partial on errors), never NULL */
    size_t text_len;
    int prompt_tokens;           /* from the backend's usage; 0 when it sent none */
    int completion_tokens;
    int n_deltas;                /* non-empty content deltas received (1 for a non-streamed answer) */
    uint64_t ttft_us;            /* start -> first content; 0 when none arrived */
    uint64_t total_us;           /* start -> on_done */
    int streamed;                /* 1 = SSE stream, 0 = the backend answered in one JSON body */
    const char *finish_reason;   /* "stop", "length", ... or NULL */
    const char *request_debug_json;  /* want_debug: the body sent, base64 cut; else NULL */
    const char *response_debug_json; /* want_debug: streamed answers as a rebuilt chat.completion
                                      * (id, model, choices[0].message.content, finish_reason,
                                      * usage); non-streamed and error answers as received (or
                                      * wrapped in {"http_status","body"} when not JSON); else NULL */
    uint64_t retry_after_ms;     /* a 429 or 503 with one Retry-After that parses (delta-seconds or
                                  * an HTTP-date, read against the answer's Date): the wait it asks
                                  * for, capped at LV_BACKEND_RETRY_AFTER_MAX_MS; the backend takes
                                  * no new request until then (lv_backend_retry_after_ms). 0 when
                                  * none, or it says 0 or a date that has passed */
} lv_chat_result_t;

/** Callbacks. They run on the pool's loop, outside every libcurl callback.
 * on_delta (optional): text[0..len) is the next piece of the answer (valid UTF-8, not
 *   NUL-terminated, valid only during the call); pieces that arrived since the last call are
 *   joined (one read at least, more when the main loop was busy).
 *   All on_delta calls come before on_done. None come after an error is known.
 * on_done (required): fires exactly once per started chat, unless the chat is cancelled first.
 *   b->inflight has already been decremented (the slot is free), so on_done may start the next
 *   chat. The lv_chat_t is freed by this module right after on_done returns: forget the handle.
 * From inside these callbacks it is fine to start other chats, cancel other chats, and use the
 * pool; it is not allowed to call lv_chat_cancel() on this same chat, lv_pool_destroy() or
 * lv_http_destroy(). */
typedef struct {
    void (*on_delta)(void *ud, const char *text, size_t len);
    void (*on_done)(void *ud, const lv_chat_result_t *res);
} lv_chat_cb_t;

/** Start a chat on backend b of pool (normally chosen by lv_pool_resolve()): builds the body now
 * (stream:true, stream_options.include_usage), POSTs {base}/chat/completions with
 * "Accept: text/event-stream" and the backend's Bearer key, and increments b->inflight (given
 * back before on_done or at cancel). cb is copied. No callback fires from inside this call.
 * Streams: SSE "data:" chunks become on_delta calls; "[DONE]" or a finish_reason ends the answer.
 * A 2xx answer that is not text/event-stream is parsed as one chat.completion and delivered as one
 * on_delta + on_done with streamed = 0. A non-2xx answer gives LV_EBACKEND with the status and
 * the backend's error message (and, for 429/503, its Retry-After: retry_after_ms, which pauses b
 * before on_done runs); a chunk that is not a valid chat.completion.chunk gives
 * LV_EBACKEND "malformed stream"; caps (LV_CHAT_*_MAX) passed give LV_EBACKEND. Deadlines give
 * LV_ETIMEDOUT: connect, first token, total, and a stream that goes silent after its first token
 * for stream_idle_timeout_ms (the transfer is dropped, so the backend frees its slot).
 * b->awaiting_first counts the request until its first token (lv_backend_first_token feeds the
 * window's growth on demand with that token's TTFT as it arrives; TTFT and total_us run from
 * when the transfer was added on the lane, not from this call). When the backend cannot be
 * reached (refused, unresolvable, connect timeout, TLS handshake) it is also marked down
 * (lv_backend_mark_down). No retries here.
 * *out (may be NULL) receives the handle for lv_chat_cancel(); it is valid until on_done returns
 * or lv_chat_cancel() is called.
 * Returns 0; LV_EINVAL (bad arguments: no on_done, empty or > 256-byte model, invalid UTF-8, jpeg
 * and frame both given);
 * LV_ENOMEM. On failure nothing was started and nothing fires. A transfer curl refuses to add
 * (on the lane's side) ends in on_done with LV_EIO "could not start the request". */
int lv_chat_start(lv_pool_t *pool, lv_backend_t *b, const lv_chat_req_t *req, const lv_chat_cb_t *cb,
                  void *ud, lv_chat_t **out);

/** Abort a chat: b->inflight is given back at once and no callback of this chat fires afterwards;
 * the transfer is dropped (its connection closed) on the lane's next turn. The handle is invalid
 * after the call. Must not be called from inside this chat's own callbacks (on_done: the chat is
 * already finishing). NULL is ignored. */
void lv_chat_cancel(lv_chat_t *chat);

#endif
