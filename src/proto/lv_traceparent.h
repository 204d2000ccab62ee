/* lv_traceparent.h - W3C Trace Context (https://www.w3.org/TR/trace-context/): the traceparent
 * header parsed and formatted, tracestate checked. The parser and formatter are pure (no I/O, no
 * allocation); a traceparent is remote input (an HTTP client, a WebSocket upgrade, a job body in
 * Redis), hence its fuzz driver (tests/fuzz/fuzz_traceparent.c). Only lv_trace_new_id touches
 * the system (the CSPRNG).
 *
 *   traceparent = version "-" trace-id "-" parent-id "-" trace-flags
 *   version 2 hex ("ff" invalid), trace-id 32 hex not all zero, parent-id 16 hex not all zero,
 *   flags 2 hex; hex is lowercase only (section 3.2.2). Version 00 is exactly 55 bytes; a later
 *   version is read as 00 when its first 55 bytes are, and anything after them starts with "-"
 *   (section 4.3, "versioning of traceparent"). */
#ifndef LV_TRACEPARENT_H
#define LV_TRACEPARENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LV_TRACE_ID_HEX 32      /* hex digits of a trace id */
#define LV_SPAN_ID_HEX 16       /* hex digits of a parent (span) id */
#define LV_TRACEPARENT_LEN 55   /* "00-" 32 "-" 16 "-" 2 */
#define LV_TRACESTATE_MAX 512   /* tracestate bytes passed on; a longer one is dropped, not cut
                                 * (a cut list-member would be wrong) */

/* A parsed traceparent. Strings are lowercase hex, NUL-terminated. */
typedef struct {
    uint8_t version;
    char trace_id[LV_TRACE_ID_HEX + 1];
    char parent_id[LV_SPAN_ID_HEX + 1];
    uint8_t flags;              /* bit 0: sampled */
} lv_traceparent_t;

/* The trace a session (or a one-shot request, or a cluster job) belongs to: a value type, copied
 * into each job. trace_id "" = none known. */
typedef struct {
    char trace_id[LV_TRACE_ID_HEX + 1];
    char state[LV_TRACESTATE_MAX + 1]; /* the caller's tracestate, passed through; "" = none */
} lv_trace_t;

/** Parse a traceparent value s[0..n) (no surrounding blanks: HTTP parsers strip them). 0 with
 * *out set; LV_EINVAL for anything malformed (wrong length, upper-case or non-hex digits, version
 * ff, an all-zero trace or parent id, NULL), *out then zeroed. */
int lv_traceparent_parse(const char *s, size_t n, lv_traceparent_t *out);

/** Write "00-<trace_id>-<span_id>-<flags as 2 hex>" and a NUL into out (out_size >= 56).
 * LV_EINVAL when trace_id or span_id is not a valid id (lv_trace_id_valid) or out is too small. */
int lv_traceparent_format(const char *trace_id, const char *span_id, uint8_t flags, char *out, size_t out_size);

/** Is s[0..n) exactly hex_len lowercase hex digits, not all zero (a valid trace id with 32, a
 * valid parent id with 16)? */
bool lv_trace_id_valid(const char *s, size_t n, size_t hex_len);

/** Is s[0..n) a tracestate we pass on: 1..LV_TRACESTATE_MAX bytes of visible ASCII, spaces and
 * tabs (no control characters, so it cannot end a header line)? Its list syntax is the next
 * hop's to judge; only what could harm a header or a log line is refused. */
bool lv_tracestate_ok(const char *s, size_t n);

/** Write hex_len random lowercase hex digits, not all zero, and a NUL into out (out_size >
 * hex_len; hex_len 16 for a span id, 32 for a trace id). From lv_rand_fast_hex: unique and random
 * looking, not secret (a trace id is sent to every backend). LV_EIO when seeding from getrandom
 * fails, LV_EINVAL for an odd hex_len or a small out. Not pure: uses a per-thread generator. */
int lv_trace_new_id(char *out, size_t out_size, size_t hex_len);

#endif
