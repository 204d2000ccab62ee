/* lv_log.c - one line per event: wall time, level, message. */
#include "lv_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lv_common.h"

static lv_log_level_t g_min_level = LV_LOG_INFO; /* configuration read once at start */

void lv_log_set_level(lv_log_level_t level) { g_min_level = level; }

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

void lv_log(lv_log_level_t level, const char *fmt, ...)
{
    static const char *tags[] = {"debug", "info", "warn", "ERROR"};
    if (level < g_min_level)
        return;
    char line[2048];
    uint64_t now = lv_wall_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ %s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(now % 1000),
                     tags[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
