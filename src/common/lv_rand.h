/* lv_rand.h - unguessable identifiers and secrets from the kernel's CSPRNG. */
#ifndef LV_RAND_H
#define LV_RAND_H

#include <stddef.h>

/** Fill buf with n random bytes (getrandom). LV_EIO on failure. */
int lv_rand_bytes(void *buf, size_t n);
/** Write 2*nbytes lowercase hex chars plus NUL into out (out_size >= 2*nbytes+1). */
int lv_rand_hex(char *out, size_t out_size, size_t nbytes);
/** Like lv_rand_hex, from a per-thread generator (splitmix64 seeded once from getrandom): for
 * ids that must be unique and look random but guard nothing (trace and span ids), made once per
 * frame, where a getrandom system call each (10-15 µs on this VM) showed in the profile. Never
 * for secrets, tokens or anything an attacker gains by predicting. */
int lv_rand_fast_hex(char *out, size_t out_size, size_t nbytes);
/** Constant-time comparison of two byte strings; 1 when equal. */
int lv_secure_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
