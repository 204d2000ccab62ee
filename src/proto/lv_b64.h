/* lv_b64.h - standard base64 (RFC 4648, with padding) appended straight into a capped buffer. */
#ifndef LV_B64_H
#define LV_B64_H

#include <stddef.h>

#include "lv_buf.h"

/** Number of base64 characters for n input bytes: 4*ceil(n/3). (No overflow check: callers hold
 * inputs far below SIZE_MAX/2.) */
size_t lv_b64_encoded_len(size_t n);

/** Append the base64 form of p[0..n) to out (no line breaks, '=' padding). All or nothing:
 * LV_ELIMIT when out's cap would be passed (or n exceeds what OpenSSL's int-sized API takes),
 * LV_ENOMEM; out is unchanged on failure. n == 0 appends nothing and returns 0 (p may be NULL). */
int lv_b64_encode(lv_buf_t *out, const void *p, size_t n);

#endif
