/* lv_rand.c - CSPRNG ids and constant-time compare. */
#include "lv_rand.h"

#include <errno.h>
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

int lv_rand_hex(char *out, size_t out_size, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];
    if (nbytes > sizeof(raw) || out_size < 2 * nbytes + 1)
        return LV_EINVAL;
    int rc = lv_rand_bytes(raw, nbytes);
    if (rc)
        return rc;
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
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
