/* lv_log.c - one line per event: wall time, level, message; as text, or as one JSON object with
 * the event's context fields (lv_log.h). */
#include "lv_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_json_str.h"

/* configuration read once at start */
static lv_log_level_t g_min_level = LV_LOG_INFO;
static bool g_json;

#define MSG_MAX 2048  /* the formatted message, before escaping */
#define CTX_MAX 2048  /* the context fields once escaped: 8 x (6 x LV_LOG_FIELD_MAX) fits in most cases;
                       * a field that would not is left out */

void lv_log_set_level(lv_log_level_t level) { g_min_level = level; }
void lv_log_set_json(bool on) { g_json = on; }

int lv_log_parse_level(const char *s, lv_log_level_t *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < LV_ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (lv_log_level_t)i;
            return 0;
        }
    }
    return LV_EINVAL;
}

/* "2026-12-05T13:40:00.123Z" into out (>= 25 bytes) */
static void format_ts(char *out, size_t size)
{
    uint64_t now = lv_wall_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(now % 1000));
}

static void write_text(lv_log_level_t level, const char *msg)
{
    static const char *tags[] = {"debug", "info", "warn", "ERROR"};
    char ts[64];
    format_ts(ts, sizeof(ts));
    fprintf(stderr, "%s %s %s\n", ts, tags[level], msg);
}

/* ,"name":"value" (cut at LV_LOG_FIELD_MAX bytes); all or nothing on out's cap */
static void ctx_field(lv_buf_t *out, const char *name, const char *value)
{
    if (!value || !value[0])
        return;
    size_t start = out->len;
    if (lv_buf_printf(out, ",\"%s\":", name) != 0 ||
        lv_json_str_append_lossy(out, value, strnlen(value, LV_LOG_FIELD_MAX)) != 0)
        lv_buf_truncate(out, start);
}

static void ctx_fields(lv_buf_t *out, const lv_log_ctx_t *ctx)
{
    if (!ctx)
        return;
    ctx_field(out, "tenant", ctx->tenant);
    ctx_field(out, "user", ctx->user);
    ctx_field(out, "session", ctx->session);
    if (ctx->answer) {
        size_t start = out->len;
        if (lv_buf_printf(out, ",\"answer\":%llu", (unsigned long long)ctx->answer) != 0)
            lv_buf_truncate(out, start);
    }
    ctx_field(out, "trace_id", ctx->trace_id);
    ctx_field(out, "backend", ctx->backend);
    ctx_field(out, "model", ctx->model);
    ctx_field(out, "ip", ctx->ip);
}

static void write_json(lv_log_level_t level, const lv_log_ctx_t *ctx, const char *msg)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char ts[64];
    format_ts(ts, sizeof(ts));
    lv_buf_t fields, line;
    lv_buf_init(&fields, CTX_MAX);
    lv_buf_init(&line, LV_LOG_LINE_MAX);
    ctx_fields(&fields, ctx);
    int rc = lv_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, names[level]);
    /* the message takes what the context leaves: cut in halves until it fits (bounded: 12 halvings
     * take MSG_MAX to 0) */
    size_t head = line.len, msg_len = strlen(msg);
    bool cut = false;
    const size_t tail = sizeof(",\"truncated\":true}\n") - 1;
    for (int tries = 0; rc == 0 && tries < 16; tries++) {
        lv_buf_truncate(&line, head);
        if (lv_json_str_append_lossy(&line, msg, msg_len) == 0 && line.len + fields.len + tail <= LV_LOG_LINE_MAX)
            break;
        cut = true;
        msg_len /= 2;
    }
    if (rc == 0)
        rc = lv_buf_append(&line, fields.data, fields.len);
    if (rc == 0 && cut)
        rc = lv_buf_append_str(&line, ",\"truncated\":true");
    if (rc == 0)
        rc = lv_buf_append(&line, "}\n", 2);
    if (rc == 0)
        fwrite(line.data, 1, line.len, stderr); /* stderr is unbuffered: one write */
    else
        write_text(level, msg); /* out of memory: the event still shows */
    lv_buf_free(&fields);
    lv_buf_free(&line);
}

static void log_v(lv_log_level_t level, const lv_log_ctx_t *ctx, const char *fmt, va_list ap)
{
    char msg[MSG_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (g_json)
        write_json(level, ctx, msg);
    else
        write_text(level, msg);
}

void lv_log(lv_log_level_t level, const char *fmt, ...)
{
    if (level < g_min_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_v(level, NULL, fmt, ap);
    va_end(ap);
}

void lv_log_ctx(lv_log_level_t level, const lv_log_ctx_t *ctx, const char *fmt, ...)
{
    if (level < g_min_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_v(level, ctx, fmt, ap);
    va_end(ap);
}
