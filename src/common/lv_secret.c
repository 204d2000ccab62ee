/* lv_secret.c - SHA-256 of a resume secret, as lowercase hex (lv_secret.h). */
#include "lv_secret.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

void lv_secret_hash_n(const void *p, size_t len, char out[LV_SECRET_HASH_LEN + 1])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(p, len, md);
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

void lv_secret_hash(const char *secret, char out[LV_SECRET_HASH_LEN + 1])
{
    lv_secret_hash_n(secret, strlen(secret), out);
}
