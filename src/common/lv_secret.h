/* lv_secret.h - the one-way hash of a resume secret: what is stored and compared instead of the
 * secret itself. Pure (no I/O); SHA-256 from OpenSSL's libcrypto. */
#ifndef LV_SECRET_H
#define LV_SECRET_H

#include <stddef.h>

#define LV_SECRET_HASH_LEN 64 /* hex chars of SHA-256 */

/** Hash a NUL-terminated secret into out: SHA-256, lowercase hex, NUL-terminated. Never fails. */
void lv_secret_hash(const char *secret, char out[LV_SECRET_HASH_LEN + 1]);
/** The same for len bytes at p (API keys, sign-in cookies and invites hash through it too). */
void lv_secret_hash_n(const void *p, size_t len, char out[LV_SECRET_HASH_LEN + 1]);

#endif
