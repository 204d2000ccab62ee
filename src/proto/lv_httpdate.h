/* lv_httpdate.h - HTTP-date (RFC 9110 section 5.6.7) and Retry-After (section 10.2.3) values,
 * parsed into numbers. Pure: no I/O, no clock (the caller passes "now"), no allocation, no
 * locale or time zone. A backend's Retry-After is remote input, hence its own fuzz driver
 * (tests/fuzz/fuzz_httpdate.c). */
#ifndef LV_HTTPDATE_H
#define LV_HTTPDATE_H

#include <stddef.h>
#include <stdint.h>

/** Parse an HTTP-date in s[0..len) into seconds since 1970-01-01 00:00:00 UTC. All three forms
 * a recipient must accept:
 *   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"   (the one senders use)
 *   rfc850-date  "Sunday, 06-Nov-94 08:49:37 GMT"  (obsolete; 00..69 read as 20xx, 70..99 as 19xx)
 *   asctime-date "Sun Nov  6 08:49:37 1994"        (obsolete)
 * Day and month names match case-insensitively; blanks (SP, HTAB) around the value are ignored;
 * the day of the week is not checked against the date. Years 1900..9999; the day must exist in
 * its month; second 60 (a leap second) reads as the next minute's 00.
 * Returns 0 with *epoch_s set; LV_EINVAL for anything else (NULL arguments included). */
int lv_http_date_parse(const char *s, size_t len, int64_t *epoch_s);

/** Parse a Retry-After value in v[0..len): delta-seconds (1*DIGIT) or an HTTP-date, blanks
 * around it ignored. *wait_ms is the wait it asks for from now_s (seconds since the epoch, the
 * clock the date is read against): seconds x 1000, or the date minus now_s (0 for a date that
 * has passed), never more than max_ms (huge numbers saturate instead of overflowing).
 * Returns 0 with *wait_ms set; LV_EINVAL for an empty or malformed value ("1.5", "-1", "3 s",
 * "soon") or NULL arguments, with *wait_ms untouched. */
int lv_retry_after_parse(const char *v, size_t len, int64_t now_s, uint64_t max_ms, uint64_t *wait_ms);

#endif
