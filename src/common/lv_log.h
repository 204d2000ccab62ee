/* lv_log.h - leveled logging to stderr. Secrets (tokens, keys, resume secrets) must never be passed here. */
#ifndef LV_LOG_H
#define LV_LOG_H

typedef enum { LV_LOG_DEBUG = 0, LV_LOG_INFO, LV_LOG_WARN, LV_LOG_ERROR } lv_log_level_t;

/** Set the minimum level printed (read once at start; default INFO). */
void lv_log_set_level(lv_log_level_t level);
/** Parse "debug|info|warn|error"; LV_EINVAL for anything else. */
int lv_log_parse_level(const char *s, lv_log_level_t *out);
void lv_log(lv_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LV_DEBUG(...) lv_log(LV_LOG_DEBUG, __VA_ARGS__)
#define LV_INFO(...) lv_log(LV_LOG_INFO, __VA_ARGS__)
#define LV_WARN(...) lv_log(LV_LOG_WARN, __VA_ARGS__)
#define LV_ERROR(...) lv_log(LV_LOG_ERROR, __VA_ARGS__)

#endif
