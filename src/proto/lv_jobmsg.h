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
 * An event (text, one pub/sub message on the frontend's channel):
 *   {"t":"s","j":"<job id>","w":"<worker id>","b":"<backend id>","m":"<model>","f":<ttft floor us>}
 *   {"t":"d","j":"<job id>","x":"<text>"}
 *   {"t":"e","j":"<job id>","w":"<worker id>","rc":<LV_E* or 0>,"code":"..","msg":"..","x":"<text>",
 *    "tok":<n>,"ttft":<us>,"sse":true|false,"shape":<ms>,"rq":true|false,"stale":true|false,
 *    "b":"<backend id>","m":"<model>"}
 * Unknown fields are ignored (a newer worker may add some); a missing required one is an error.
 * Ids are [A-Za-z0-9_.:-] only. */
#ifndef LV_JOBMSG_H
#define LV_JOBMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_buf.h"
#include "lv_principal.h"
#include "lv_session_rec.h"
#include "lv_settings.h"

#define LV_JOBMSG_MAGIC "LVJ1"
#define LV_JOBMSG_HDR_MAX (16u << 10)     /* the JSON header of a job */
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
    const unsigned char *jpeg;        /* encode: borrowed; parse: points into the parsed bytes */
    size_t jpeg_len;
} lv_jobmsg_t;

/** Append the job body to out (its cap applies). LV_EINVAL (an id with other bytes, a cap),
 * LV_ELIMIT (out's cap), LV_ENOMEM. */
int lv_jobmsg_encode(const lv_jobmsg_t *j, lv_buf_t *out);
/** Parse a job body. jpeg points into p (keep p alive). 0, or LV_EPARSE / LV_ELIMIT / LV_EINVAL
 * with *why (static) saying what. The settings go through lv_settings_apply_json's checks. */
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
    int tokens;
    uint64_t ttft_us;
    bool streamed;
    double shape_ms;
    bool requeue;
    bool stale;                       /* dropped unstarted: past its deadline when a worker took it */
} lv_jobev_t;

/** Append one event to out. LV_EINVAL, LV_ELIMIT, LV_ENOMEM. */
int lv_jobev_encode(const lv_jobev_t *e, lv_buf_t *out);
/** Parse one event; its text is unescaped into textbuf (reset first; cap LV_JOBEV_TEXT_MAX) and
 * out->text points there. 0, or LV_EPARSE / LV_ELIMIT / LV_EINVAL with *why. */
int lv_jobev_parse(const char *p, size_t len, lv_jobev_t *out, lv_buf_t *textbuf, const char **why);

#endif
