/* lv_b64.h - standard base64 (RFC 4648, with padding) appended straight into a capped buffer, and
 * base64url (RFC 4648 section 5, no padding) into and out of caller-sized arrays. The standard
 * encoder carries every camera frame to a backend, so it is vectorised (AVX2 where the CPU has it,
 * chosen once at run time; a table encoder elsewhere). */
#ifndef LV_B64_H
#define LV_B64_H

#include <stddef.h>

#include "lv_buf.h"

/** Number of base64 characters for n input bytes: 4*ceil(n/3). (No overflow check: callers hold
 * inputs far below SIZE_MAX/2.) */
size_t lv_b64_encoded_len(size_t n);

/** Append the base64 form of p[0..n) to out (no line breaks, '=' padding). All or nothing:
 * LV_ELIMIT when out's cap would be passed (or 4*ceil(n/3) would not fit a size_t), LV_ENOMEM;
 * out is unchanged on failure. n == 0 appends nothing and returns 0 (p may be NULL). Reads no
 * byte outside p[0..n); p and out need no alignment. Thread-safe. */
int lv_b64_encode(lv_buf_t *out, const void *p, size_t n);

/* For tests: the two encoders lv_b64_encode picks between. Each writes exactly
 * lv_b64_encoded_len(n) characters to dst (no NUL) and reads only src[0..n). */
/** The portable path (3 bytes -> 4 characters per step; also the AVX2 path's tail). */
void lv_b64_encode_scalar(char *dst, const void *src, size_t n);
/** The AVX2 path: 0, or LV_EINVAL, writing nothing, when the CPU lacks AVX2 or the build is not
 * x86-64 GCC/clang. */
int lv_b64_encode_avx2(char *dst, const void *src, size_t n);

/** Decode base64url (RFC 4648 section 5, no padding, no blanks) src[0..len) into out (out_size
 * >= len * 3 / 4 + 1 suffices). 0 and *out_len; LV_EPARSE for a byte outside the alphabet, a
 * length of 1 mod 4 or padding; LV_ELIMIT when out is too small. */
int lv_b64url_decode(const char *src, size_t len, unsigned char *out, size_t out_size, size_t *out_len);
/** Encode src[0..len) as base64url without padding into out (out_size >= (len*4+2)/3 + 1),
 * NUL-terminated. 0, or LV_ELIMIT. */
int lv_b64url_encode(const void *src, size_t len, char *out, size_t out_size);

#endif
