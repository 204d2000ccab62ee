/* lv_httpdate.c - HTTP-date and Retry-After parsing (RFC 9110 sections 5.6.7 and 10.2.3). */
#include "lv_httpdate.h"

#include <string.h>
#include <strings.h>

#include "lv_common.h"

/* A read position in [p, end). Every reader checks the end before it looks. */
typedef struct {
    const char *p, *end;
} cursor_t;

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}
static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}
static int is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int take_char(cursor_t *c, char ch)
{
    if (c->p >= c->end || *c->p != ch)
        return 0;
    c->p++;
    return 1;
}

/* Exactly n digits (n <= 4): their value, or -1. */
static int take_digits(cursor_t *c, int n)
{
    int v = 0;
    if (c->end - c->p < n)
        return -1;
    for (int i = 0; i < n; i++, c->p++) {
        if (!is_digit(*c->p))
            return -1;
        v = v * 10 + (*c->p - '0');
    }
    return v;
}

/* A run of letters that is one of names[0..n) (case-insensitively): its index, or -1. */
static int take_name(cursor_t *c, const char *const *names, int n)
{
    const char *start = c->p;
    while (c->p < c->end && is_alpha(*c->p))
        c->p++;
    size_t len = (size_t)(c->p - start);
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && strncasecmp(start, names[i], len) == 0)
            return i;
    return -1;
}

static const char *const day_names[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const day_names_long[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                             "Friday", "Saturday", "Sunday"};
static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* time-of-day = hour ":" minute ":" second, 2DIGIT each: seconds into the day, or -1. */
static int64_t take_time(cursor_t *c)
{
    int h = take_digits(c, 2);
    if (h < 0 || !take_char(c, ':'))
        return -1;
    int m = take_digits(c, 2);
    if (m < 0 || !take_char(c, ':'))
        return -1;
    int s = take_digits(c, 2);
    if (s < 0 || h > 23 || m > 59 || s > 60)
        return -1;
    return (int64_t)h * 3600 + m * 60 + s;
}

static int take_gmt(cursor_t *c)
{
    if (c->end - c->p < 3 || strncasecmp(c->p, "GMT", 3) != 0)
        return 0;
    c->p += 3;
    return 1;
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil, for years >= 0). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = y / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + doe - 719468;
}

static int to_epoch(int year, int month, int day, int64_t secs, int64_t *epoch_s)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (year < 1900 || year > 9999 || month < 0 || month > 11 || day < 1)
        return LV_EINVAL;
    if (day > mdays[month] + (month == 1 && is_leap(year)))
        return LV_EINVAL;
    *epoch_s = days_from_civil(year, month + 1, day) * 86400 + secs;
    return 0;
}

int lv_http_date_parse(const char *s, size_t len, int64_t *epoch_s)
{
    if (!s || !epoch_s)
        return LV_EINVAL;
    cursor_t c = {s, s + len};
    while (c.p < c.end && is_blank(*c.p))
        c.p++;
    while (c.end > c.p && is_blank(c.end[-1]))
        c.end--;
    const char *name = c.p;
    int year, month, day;
    int64_t secs;
    if (take_name(&c, day_names, 7) >= 0) {
        if (take_char(&c, ',')) {
            /* IMF-fixdate: ", " 2DIGIT SP month SP 4DIGIT SP time SP "GMT" */
            if (!take_char(&c, ' ') || (day = take_digits(&c, 2)) < 0 || !take_char(&c, ' ') ||
                (month = take_name(&c, month_names, 12)) < 0 || !take_char(&c, ' ') ||
                (year = take_digits(&c, 4)) < 0 || !take_char(&c, ' ') || (secs = take_time(&c)) < 0 ||
                !take_char(&c, ' ') || !take_gmt(&c))
                return LV_EINVAL;
        } else {
            /* asctime: SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time SP 4DIGIT */
            if (!take_char(&c, ' ') || (month = take_name(&c, month_names, 12)) < 0 || !take_char(&c, ' '))
                return LV_EINVAL;
            day = take_char(&c, ' ') ? take_digits(&c, 1) : take_digits(&c, 2);
            if (day < 0 || !take_char(&c, ' ') || (secs = take_time(&c)) < 0 || !take_char(&c, ' ') ||
                (year = take_digits(&c, 4)) < 0)
                return LV_EINVAL;
        }
    } else {
        /* rfc850-date: day-name-l ", " 2DIGIT "-" month "-" 2DIGIT SP time SP "GMT" */
        c.p = name;
        if (take_name(&c, day_names_long, 7) < 0 || !take_char(&c, ',') || !take_char(&c, ' ') ||
            (day = take_digits(&c, 2)) < 0 || !take_char(&c, '-') || (month = take_name(&c, month_names, 12)) < 0 ||
            !take_char(&c, '-') || (year = take_digits(&c, 2)) < 0 || !take_char(&c, ' ') ||
            (secs = take_time(&c)) < 0 || !take_char(&c, ' ') || !take_gmt(&c))
            return LV_EINVAL;
        /* RFC 9110 reads a two-digit year as the latest one not more than 50 years ahead; with no
         * clock here, 70..99 are 19xx and 00..69 are 20xx (the same answer until 2020 + 50) */
        year += year < 70 ? 2000 : 1900;
    }
    if (c.p != c.end)
        return LV_EINVAL; /* trailing bytes */
    return to_epoch(year, month, day, secs, epoch_s);
}

int lv_retry_after_parse(const char *v, size_t len, int64_t now_s, uint64_t max_ms, uint64_t *wait_ms)
{
    if (!v || !wait_ms)
        return LV_EINVAL;
    const char *p = v, *end = v + len;
    while (p < end && is_blank(*p))
        p++;
    while (end > p && is_blank(end[-1]))
        end--;
    if (p == end)
        return LV_EINVAL;
    uint64_t secs = 0;
    int saturated = 0;
    if (is_digit(*p)) {
        /* delta-seconds = 1*DIGIT */
        for (; p < end; p++) {
            if (!is_digit(*p))
                return LV_EINVAL;
            if (secs > (UINT64_MAX - 9) / 10)
                saturated = 1;
            else
                secs = secs * 10 + (uint64_t)(*p - '0');
        }
    } else {
        int64_t at_s;
        if (lv_http_date_parse(p, (size_t)(end - p), &at_s) != 0)
            return LV_EINVAL;
        /* unsigned: the difference of two int64 values in this order always fits */
        secs = at_s > now_s ? (uint64_t)at_s - (uint64_t)now_s : 0;
    }
    /* secs <= max_ms / 1000, so secs * 1000 <= max_ms: no overflow */
    *wait_ms = saturated || secs > max_ms / 1000 ? max_ms : secs * 1000;
    return 0;
}
