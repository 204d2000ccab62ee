/* lv_buf.c - capped growable buffer. */
#include "lv_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"

void lv_buf_init(lv_buf_t *b, size_t max_bytes)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max_bytes;
}

int lv_buf_reserve(lv_buf_t *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return LV_ELIMIT;
    size_t need = b->len + extra;
    if (need <= b->cap && b->data)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (ncap > b->max)
        ncap = b->max;
    char *p = realloc(b->data, ncap + 1);
    if (!p)
        return LV_ENOMEM;
    b->data = p;
    b->cap = ncap;
    b->data[b->len] = '\0';
    return 0;
}

int lv_buf_append(lv_buf_t *b, const void *p, size_t n)
{
    int rc = lv_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int lv_buf_append_str(lv_buf_t *b, const char *s) { return lv_buf_append(b, s, strlen(s)); }

int lv_buf_vprintf(lv_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return LV_EINVAL;
    int rc = lv_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int lv_buf_printf(lv_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = lv_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void lv_buf_reset(lv_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void lv_buf_consume(lv_buf_t *b, size_t n)
{
    if (n >= b->len) {
        lv_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void lv_buf_free(lv_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void lv_buf_truncate(lv_buf_t *b, size_t len)
{
    if (len >= b->len)
        return;
    b->len = len;
    if (b->data)
        b->data[len] = '\0';
}

int lv_buf_append_u64(lv_buf_t *b, uint64_t v)
{
    char d[20]; /* UINT64_MAX has 20 digits */
    size_t n = sizeof(d);
    do
        d[--n] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    return lv_buf_append(b, d + n, sizeof(d) - n);
}
