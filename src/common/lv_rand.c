/* lv_rand.c - CSPRNG ids, fast per-thread ids that guard nothing, and constant-time compare. */
#include "lv_rand.h"

#include <errno.h>
#include <stdint.h>
#include <sys/random.h>

#include "lv_common.h"

int lv_rand_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return LV_EIO;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static void to_hex(char *out, const unsigned char *raw, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
}

int lv_rand_hex(char *out, size_t out_size, size_t nbytes)
{
    unsigned char raw[64];
    if (nbytes > sizeof(raw) || out_size < 2 * nbytes + 1)
        return LV_EINVAL;
    int rc = lv_rand_bytes(raw, nbytes);
    if (rc)
        return rc;
    to_hex(out, raw, nbytes);
    return 0;
}

/* splitmix64 (Steele, Lea, Flood 2014): a Weyl sequence through a bijective mixer, so one thread's
 * outputs do not repeat for 2^64 draws; the seed makes threads and runs differ. */
static _Thread_local uint64_t fast_state;
static _Thread_local int fast_seeded;

int lv_rand_fast_hex(char *out, size_t out_size, size_t nbytes)
{
    unsigned char raw[64];
    if (nbytes > sizeof(raw) || out_size < 2 * nbytes + 1)
        return LV_EINVAL;
    if (!fast_seeded) {
        int rc = lv_rand_bytes(&fast_state, sizeof(fast_state));
        if (rc)
            return rc;
        fast_seeded = 1;
    }
    for (size_t i = 0; i < nbytes; i += 8) {
        uint64_t z = (fast_state += 0x9e3779b97f4a7c15u);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        z ^= z >> 31;
        for (size_t k = 0; k < 8 && i + k < nbytes; k++)
            raw[i + k] = (unsigned char)(z >> (8 * k));
    }
    to_hex(out, raw, nbytes);
    return 0;
}

int lv_secure_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const unsigned char *x = a, *y = b;
    unsigned char diff = (unsigned char)(alen != blen);
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(x[i] ^ y[i]);
    return diff == 0;
}
