/* lv_log.h - leveled logging to stderr, as text (the default) or one JSON object per line
 * (--log-format json). Secrets (tokens, keys, resume secrets) must never be passed here. */
#ifndef LV_LOG_H
#define LV_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { LV_LOG_DEBUG = 0, LV_LOG_INFO, LV_LOG_WARN, LV_LOG_ERROR } lv_log_level_t;

#define LV_LOG_LINE_MAX 4096     /* a JSON line, its newline included: one write() of it is atomic
                                  * on a pipe (PIPE_BUF), so lines from threads never interleave */
#define LV_LOG_FIELD_MAX 128     /* bytes of one context value kept (before escaping) */

/* What a line is about, passed explicitly with each call: there is no ambient context, so one
 * session's ids can never end up on another's line. Every member may be NULL or "" (left out);
 * answer 0 is left out. Strings are borrowed for the call. Text lines print none of them (the
 * text format is what it always was); JSON lines carry each present one as a field of its name
 * ("tenant", "user", "session", "answer", "trace_id", "backend", "model", "ip"). */
typedef struct {
    const char *tenant;
    const char *user;
    const char *session;
    uint64_t answer;
    const char *trace_id;
    const char *backend;
    const char *model;
    const char *ip;
} lv_log_ctx_t;

/** Set the minimum level printed (read once at start; default INFO). */
void lv_log_set_level(lv_log_level_t level);
/** JSON lines instead of text (read once at start; default text). */
void lv_log_set_json(bool on);
/** Parse "debug|info|warn|error"; LV_EINVAL for anything else. */
int lv_log_parse_level(const char *s, lv_log_level_t *out);
void lv_log(lv_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** The same with a context (NULL = none). In JSON each string is escaped (bytes that are not
 * UTF-8 become U+FFFD), context values are cut at LV_LOG_FIELD_MAX bytes and the message is cut
 * so the line fits LV_LOG_LINE_MAX (then "truncated":true is added). */
void lv_log_ctx(lv_log_level_t level, const lv_log_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LV_DEBUG(...) lv_log(LV_LOG_DEBUG, __VA_ARGS__)
#define LV_INFO(...) lv_log(LV_LOG_INFO, __VA_ARGS__)
#define LV_WARN(...) lv_log(LV_LOG_WARN, __VA_ARGS__)
#define LV_ERROR(...) lv_log(LV_LOG_ERROR, __VA_ARGS__)

#define LV_DEBUG_CTX(ctx, ...) lv_log_ctx(LV_LOG_DEBUG, (ctx), __VA_ARGS__)
#define LV_INFO_CTX(ctx, ...) lv_log_ctx(LV_LOG_INFO, (ctx), __VA_ARGS__)
#define LV_WARN_CTX(ctx, ...) lv_log_ctx(LV_LOG_WARN, (ctx), __VA_ARGS__)
#define LV_ERROR_CTX(ctx, ...) lv_log_ctx(LV_LOG_ERROR, (ctx), __VA_ARGS__)

#endif
