/* lv_buf.h - an owning, growable byte buffer with a hard cap fixed at creation. */
#ifndef LV_BUF_H
#define LV_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* data is always NUL-terminated (one spare byte beyond len) once anything was appended,
 * so text can be passed to C string APIs. The owner frees it with lv_buf_free(). */
typedef struct {
    char *data;
    size_t len;
    size_t cap;     /* allocated bytes, excluding the spare NUL byte */
    size_t max;     /* hard cap on len; appends beyond it fail with LV_ELIMIT */
} lv_buf_t;

/** Start empty with a cap of max_bytes; allocates nothing yet. */
void lv_buf_init(lv_buf_t *b, size_t max_bytes);
/** Make room for at least extra more bytes. LV_ELIMIT past the cap, LV_ENOMEM. */
int lv_buf_reserve(lv_buf_t *b, size_t extra);
/** Append bytes; all or nothing. */
int lv_buf_append(lv_buf_t *b, const void *p, size_t n);
int lv_buf_append_str(lv_buf_t *b, const char *s);
/** v in decimal, without printf (hot message and state-file writers); all or nothing. */
int lv_buf_append_u64(lv_buf_t *b, uint64_t v);
/** printf-style append; all or nothing. */
int lv_buf_printf(lv_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int lv_buf_vprintf(lv_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/** Cut the contents back to their first len bytes (len <= b->len): an append sequence that failed
 * half way takes back what it wrote. */
void lv_buf_truncate(lv_buf_t *b, size_t len);
/** Forget the contents, keep the memory. */
void lv_buf_reset(lv_buf_t *b);
/** Drop the first n bytes (n <= len), moving the rest to the front. */
void lv_buf_consume(lv_buf_t *b, size_t n);
/** Free the memory; the buffer may be reused after lv_buf_init(). */
void lv_buf_free(lv_buf_t *b);

#endif
