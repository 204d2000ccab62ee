/* lv_jobmsg.h - what crosses Redis in cluster mode (docs/internals/cluster.md): a job (one frame
 * and the request settings it is asked with, from a frontend to a worker) and a job's events (from
 * the worker back to the frontend that holds the session's sockets). Pure encode/parse, no I/O;
 * the parsers read bytes from Redis, which any process with its password can write, so they are
 * capped, strict and fuzzed (tests/fuzz/fuzz_jobmsg.c).
 *
 * A job body (binary, one Redis string):
 *   "LVJ1" | u32 big-endian header length H | H bytes of JSON header | the JPEG (the rest)
 *   header: {"id":"<job id>","fe":"<frontend id>","sid":"<session id>","user":"<principal>",
 *            "w":<weight 1..1000>,"aid":<answer id>,"enq":<wall ms>,"dl":<deadline wall ms>,
 *            "age":<capture age ms>,"st":{<settings, as lv_settings_to_json writes them>}}
 *   optional in the header: "tr":"<trace id, 32 hex>","ts":"<tracestate>" (W3C Trace Context;
 *   a body without them, from an older frontend, still decodes, with no trace)
 *   optional: "ab":"<comma list>" (settings.allow_backends, the backend ids the session's tenant may
 *   use; written only when not ""; at most LV_ALLOWLIST_MAX - 1 bytes without control characters,
 *   else LV_EINVAL; a body without it, from an older frontend, decodes as "" = all)
 * An event (text, one pub/sub message on the frontend's channel):
 *   {"t":"s","j":"<job id>","w":"<worker id>","b":"<backend id>","m":"<model>","f":<ttft floor us>}
 *   {"t":"d","j":"<job id>","x":"<text>"}
 *   {"t":"e","j":"<job id>","w":"<worker id>","rc":<LV_E* or 0>,"code":"..","msg":"..","x":"<text>",
 *    "tok":<n>,"ptok":<n>,"ttft":<us>,"sse":true|false,"shape":<ms>,"rq":true|false,"stale":true|false,
 *    "b":"<backend id>","m":"<model>"}
 *   tok: completion tokens; ptok: prompt tokens (optional when parsed: an older worker's event
 *   without it reads as 0)
 * Unknown fields are ignored (a newer worker may add some); a missing required one is an error.
 * Ids are [A-Za-z0-9_.:-] only (job id 1..64 bytes, frontend and worker ids 1..32; the user, a
 * principal's key, is 1..63 bytes of visible ASCII without '"' or '\\';
 * backend id 0..64); the session id is exactly 32 lowercase hex digits. Every field shown is
 * written and required (a done event's code, msg, x, b and m may be ""); no other is written.
 * Numbers are non-negative integers up to INT64_MAX (what jansson reads back), except rc (0 or
 * negative) and shape (a finite number >= 0; NaN, infinite or negative is written as 0).
 * Text (x) is UTF-8 without NUL; msg is written lossy (U+FFFD for bytes that are not UTF-8: it
 * may quote a backend) and cut at a character boundary to fit error_message when parsed.
 * Codes: LV_EPARSE = not this format (bad magic, a length past the end, not one JSON object,
 * trailing bytes, duplicate keys, a field missing or of the wrong type); LV_EINVAL = a value out
 * of its range or alphabet, settings the settings checks refuse, an unknown event type; LV_ELIMIT
 * = a byte cap (header, frame, event, text, code, model). */
#ifndef LV_JOBMSG_H
#define LV_JOBMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_buf.h"
#include "lv_principal.h"
#include "lv_session_rec.h"
#include "lv_settings.h"
#include "lv_traceparent.h"

#define LV_JOBMSG_MAGIC "LVJ1"
#define LV_JOBMSG_HDR_MAX (32u << 10)     /* the JSON header of a job */
#define LV_JOBMSG_JPEG_MAX (8u << 20)     /* the frame: as the frontend's own cap */
#define LV_JOBEV_MAX (256u << 10)         /* one event message */
#define LV_JOBEV_TEXT_MAX (128u << 10)    /* its text (a done event carries the whole answer) */
#define LV_NODE_ID_MAX 32                 /* a frontend's or worker's id */
#define LV_JOB_ID_MAX 64

typedef struct {
    char id[LV_JOB_ID_MAX + 1];
    char frontend[LV_NODE_ID_MAX + 1];
    char session[LV_SESSION_ID_LEN + 1];
    char user[LV_PRINCIPAL_KEY_MAX];
    unsigned weight;                  /* the user's fair-share weight, 1..1000 */
    uint64_t answer_id;
    uint64_t enq_wall_ms;             /* when the frontend queued it */
    uint64_t deadline_wall_ms;        /* a worker that takes it later drops it (stale) */
    uint32_t capture_age_ms;          /* how old the picture was when the frontend got it */
    lv_settings_t settings;
    lv_trace_t trace;                 /* optional ("tr":"<32 hex>","ts":"<tracestate>"): the session's
                                       * trace, for the worker's backend request; an invalid trace id
                                       * is LV_EINVAL, a tracestate lv_tracestate_ok refuses too */
    const unsigned char *jpeg;        /* encode: borrowed; parse: points into the parsed bytes */
    size_t jpeg_len;
} lv_jobmsg_t;

/** Is [s, s+n) an id as these messages carry them (1..max of [A-Za-z0-9_.:-])? Frontend and
 * worker ids (LV_NODE_ID_MAX) are checked with it wherever they are read. */
bool lv_jobmsg_id_ok(const char *s, size_t n, size_t max);

/** Append the job body to out (its cap applies). LV_EINVAL (an id with other bytes, a number out
 * of range, no frame, settings lv_settings_apply_json would refuse, the header over
 * LV_JOBMSG_HDR_MAX or the frame over LV_JOBMSG_JPEG_MAX), LV_ELIMIT (out's cap), LV_ENOMEM. All
 * or nothing: on failure out is as it was. */
int lv_jobmsg_encode(const lv_jobmsg_t *j, lv_buf_t *out);
/** Parse a job body. jpeg points into p (keep p alive); jpeg_len >= 1. 0, or LV_EPARSE /
 * LV_ELIMIT / LV_EINVAL with *why (static; why may be NULL) saying what, and *out zeroed. The
 * settings are applied onto lv_settings_defaults() (a field left out keeps its default) through
 * lv_settings_apply_json's checks. */
int lv_jobmsg_parse(const void *p, size_t len, lv_jobmsg_t *out, const char **why);

typedef enum { LV_JOBEV_STARTED = 1, LV_JOBEV_DELTA, LV_JOBEV_DONE } lv_jobev_kind_t;

typedef struct {
    lv_jobev_kind_t kind;
    char job[LV_JOB_ID_MAX + 1];
    char worker[LV_NODE_ID_MAX + 1];  /* started, done */
    char backend_id[LV_BACKEND_ID_MAX + 1]; /* started, done ("" when none was picked) */
    char model[LV_MODEL_MAX + 1];
    uint64_t ttft_floor_us;           /* started */
    const char *text;                 /* delta, done: encode borrowed; parse: in the caller's buffer */
    size_t text_len;
    /* done */
    int rc;
    char error_code[64];
    char error_message[512];
    int tokens;                       /* completion tokens */
    int prompt_tokens;                /* the backend's usage count, 0 when none */
    uint64_t ttft_us;
    bool streamed;
    double shape_ms;
    bool requeue;
    bool stale;                       /* dropped unstarted: past its deadline when a worker took it */
} lv_jobev_t;

/** Append one event to out: compact JSON on one line, no jansson tree (the delta path is hot).
 * LV_EINVAL (an id, the text not UTF-8 or holding a NUL or over LV_JOBEV_TEXT_MAX, a string field
 * without its NUL, rc > 0, tokens or prompt_tokens < 0, the event over LV_JOBEV_MAX once escaped), LV_ELIMIT
 * (out's cap), LV_ENOMEM. All or nothing. A delta should carry whole UTF-8 sequences: cut text
 * with lv_utf8_cut. */
int lv_jobev_encode(const lv_jobev_t *e, lv_buf_t *out);
/** Parse one event; its text is unescaped into textbuf (reset first; cap LV_JOBEV_TEXT_MAX) and
 * out->text points there (delta, done: never NULL, "" when empty; started: NULL). Only the fields
 * of its kind are set, the others are zero. 0, or LV_EPARSE / LV_ELIMIT / LV_EINVAL with *why
 * (why may be NULL), *out zeroed and textbuf empty. */
int lv_jobev_parse(const char *p, size_t len, lv_jobev_t *out, lv_buf_t *textbuf, const char **why);

#endif
