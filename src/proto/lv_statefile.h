/* lv_statefile.h - the session state file of the single-node mode: what a restart keeps (session
 * records, the resume secret's HASH, settings, answer history), as versioned JSON lines. Pure:
 * encoding and parsing only, no I/O (lv_persist.c writes and reads the file), so the parser, which
 * reads bytes that anyone with access to the config dir could have edited, is fuzzed
 * (tests/fuzz/fuzz_statefile.c).
 *
 * Version 1, one JSON object per line, each line ending in "\n":
 *   {"format":"livevlm-sessions","version":1,"saved_ms":W,"sessions":N}
 *   N session lines (lv_statefile_encode_session), in no particular order
 *   {"sha256":"<64 lowercase hex: SHA-256 of every byte before this line>"}
 * A file that is truncated, altered, of another version or over a cap is rejected as a whole: a
 * half-read file could bring back a session without the answers it had, or none of its settings. */
#ifndef LV_STATEFILE_H
#define LV_STATEFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_buf.h"
#include "lv_session_rec.h"

#define LV_STATEFILE_VERSION 1
#define LV_STATEFILE_MAX_BYTES (64u << 20) /* whole file; the writer leaves sessions out past it */
#define LV_STATEFILE_LINE_MAX (1u << 20)   /* one session; its caps below keep it under ~0.9 MiB */
#define LV_STATEFILE_ANSWERS_MAX 32        /* history entries per session */
#define LV_STATEFILE_TEXT_MAX 4096         /* bytes of one answer's text */
/* the longest history entry lv_statefile_encode_answer writes: 47 bytes of keys and braces, two
 * int64s (19 digits each), a real (at most 24 characters) and the text, every byte of it escaped
 * as \u00xx at worst (6 bytes), in quotes: 111 + 6 * LV_STATEFILE_TEXT_MAX, rounded up */
#define LV_STATEFILE_ANSWER_JSON_MAX (128 + 6 * LV_STATEFILE_TEXT_MAX)

/* One answer of a session's history. */
typedef struct {
    uint64_t answer_id;
    uint64_t wall_ms;
    double latency_ms;
    char *text;      /* encode: borrowed, NULL = ""; parse: owned, NUL-terminated */
    size_t text_len; /* bytes; text longer than LV_STATEFILE_TEXT_MAX is cut when encoded */
    /* encode only (the parser leaves it NULL): this entry as lv_statefile_encode_answer wrote it
     * for the fields above, borrowed; the encoder copies these json_len bytes instead of formatting
     * the entry, so a caller that keeps them pays for each entry once, not on every encode. NULL:
     * the entry is formatted from its fields. */
    const char *json;
    size_t json_len;
} lv_statefile_answer_t;

/* Everything saved about one session. */
typedef struct {
    lv_session_rec_t rec;  /* id, secret hash, owner, settings, started, created, counters */
    bool attached;         /* a socket was attached when saved: last seen = the file's saved_ms */
    uint64_t last_seen_ms; /* wall clock when its last socket left (when not attached) */
    uint64_t answer_seq;   /* the last answer id handed out */
    size_t n_answers;
    lv_statefile_answer_t answers[LV_STATEFILE_ANSWERS_MAX]; /* oldest first */
    size_t size_hint; /* encode: bytes the line will likely take (its previous encoding's length),
                       * reserved up front so the buffer does not grow in steps; 0 = an estimate
                       * only. The parser sets 0. */
    /* set by the parser */
    uint64_t age_ms;     /* how long before `now` it was last seen */
    bool settings_reset; /* its settings no longer validate: they are the defaults now */
} lv_statefile_session_t;

/** Free the answer texts a parsed session owns (not the struct). */
void lv_statefile_session_clear(lv_statefile_session_t *s);

/* One encoded session line, immutable and refcounted: a session keeps its current line and a write
 * on the thread pool reads the ones it was handed. Only the loop thread touches `refs`. */
typedef struct lv_statefile_line {
    int refs;
    size_t len; /* bytes, the final "\n" included */
    char data[];
} lv_statefile_line_t;

/** Encode a session into a new line with one reference. Texts that end in a cut UTF-8 sequence
 * lose the cut bytes. LV_ELIMIT past LV_STATEFILE_LINE_MAX or a cap above, LV_EINVAL for a field
 * JSON cannot carry, LV_ENOMEM. */
int lv_statefile_encode_session(const lv_statefile_session_t *s, lv_statefile_line_t **out);
/** Append one history entry, {"answer_id":..,"wall_ms":..,"latency_ms":..,"text":".."}, to out:
 * exactly the bytes lv_statefile_encode_session writes for it (a->json is not read), at most
 * LV_STATEFILE_ANSWER_JSON_MAX. All or nothing: on failure out keeps its previous length.
 * LV_EINVAL for a field JSON cannot carry, LV_ELIMIT (out's cap), LV_ENOMEM. */
int lv_statefile_encode_answer(const lv_statefile_answer_t *a, lv_buf_t *out);
lv_statefile_line_t *lv_statefile_line_ref(lv_statefile_line_t *line);
/** Drop one reference; frees on the last. NULL is ignored. */
void lv_statefile_line_unref(lv_statefile_line_t *line);

/* What one write puts in the file: a reference to each session's line. */
typedef struct {
    lv_statefile_line_t **lines;
    size_t n, cap;
    size_t bytes;      /* sum of the lines' lengths */
    size_t skipped;    /* sessions left out: the file would have gone past its cap */
    uint64_t saved_ms; /* wall clock of the snapshot, written in the header */
} lv_statefile_snap_t;

/** Append a new reference to line. LV_ENOMEM. */
int lv_statefile_snap_add(lv_statefile_snap_t *snap, lv_statefile_line_t *line);
/** Drop every reference and the array; the snapshot is empty (and reusable) afterwards. */
void lv_statefile_snap_clear(lv_statefile_snap_t *snap);

/** Receives the file's bytes in order; non-zero stops the emit and is returned by it. */
typedef int (*lv_statefile_sink_fn)(void *ud, const void *p, size_t n);
/** Produce the whole file (header, lines, checksum line) through sink. Reads the lines only, so it
 * may run on another thread while the loop holds the references. */
int lv_statefile_emit(const lv_statefile_snap_t *snap, lv_statefile_sink_fn sink, void *ud);

typedef struct {
    size_t max_bytes;    /* a longer file is refused (LV_ELIMIT) */
    size_t max_sessions; /* sessions past this many are skipped (counted in over_cap) */
    uint64_t idle_ms;    /* sessions last seen this long ago are skipped (expired); 0 = never */
} lv_statefile_limits_t;

typedef struct {
    uint64_t saved_ms; /* from the header */
    size_t sessions;   /* session lines in the file */
    size_t delivered;  /* handed to the callback */
    size_t refused;    /* ... and refused by it */
    size_t expired;
    size_t over_cap;
    size_t settings_reset;
} lv_statefile_stats_t;

/** Called once per live session, in file order. The session is the parser's: copy what you keep
 * (texts included) before returning. Non-zero counts the session as refused; parsing goes on. */
typedef int (*lv_statefile_cb_t)(void *ud, const lv_statefile_session_t *s);

/** Parse ONE session line, as lv_statefile_encode_session wrote it (the final "\n" may be there or
 * not), with the same validation as a session line of a whole file: the cluster keeps each
 * session's line on its own in Redis (src/server/lv_cluster_sessions.h), where no checksum covers
 * it. *out (the caller's) gets the session with its texts owned (lv_statefile_session_clear frees
 * them); its age_ms is 0 when it was saved attached (it is being resumed now), else now_wall_ms -
 * last_seen_ms. Returns 0, or LV_EPARSE (malformed, a newline inside), LV_ELIMIT (over
 * LV_STATEFILE_LINE_MAX bytes or a cap above), LV_ENOMEM; *out then holds nothing to free and *why
 * (may be NULL) points at a static reason for the log. */
int lv_statefile_parse_line(const char *data, size_t len, uint64_t now_wall_ms, lv_statefile_session_t *out,
                            const char **why);

/** Parse a whole file. Validates everything before the first callback, so on any error no session
 * was delivered. Returns 0, or LV_EPARSE (truncated, altered, malformed), LV_EINVAL (another
 * format or version), LV_ELIMIT (a cap), LV_ENOMEM; *why (may be NULL) then points at a static
 * reason for the log. now_wall_ms decides expiry. stats (may be NULL) is always filled. */
int lv_statefile_parse(const char *data, size_t len, const lv_statefile_limits_t *lim, uint64_t now_wall_ms,
                       lv_statefile_cb_t cb, void *ud, lv_statefile_stats_t *stats, const char **why);

#endif
