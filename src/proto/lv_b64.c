/* lv_b64.c - standard base64 for every frame on its way to a backend: AVX2 (24 bytes -> 32
 * characters per step) where the CPU has it, else a two-character table (3 bytes -> 4 characters
 * per step, about as fast as OpenSSL's EVP_EncodeBlock, which this replaced), picked once. The AVX2
 * path measured roughly 6-10x EVP_EncodeBlock on a 32 KB frame (~2 us instead of ~15-20 us).
 * And base64url (JWTs, PKCE) by a plain table: short inputs, and OpenSSL has no url alphabet. */
#include "lv_b64.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "lv_common.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LV_B64_X86 1
#endif

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* b64_pairs[2*v], [2*v+1]: the two characters of the 12-bit value v, so a 3-byte group is two
 * lookups instead of four. 8 KiB, filled once by b64_setup (written out as an initializer it
 * would be 4096 lines of noise). */
static char b64_pairs[2 * 4096];
static int b64_use_avx2;
static pthread_once_t b64_once = PTHREAD_ONCE_INIT;

static void b64_setup(void)
{
    for (unsigned v = 0; v < 4096; v++) {
        b64_pairs[2 * v] = b64_alphabet[v >> 6];
        b64_pairs[2 * v + 1] = b64_alphabet[v & 63];
    }
#ifdef LV_B64_X86
    __builtin_cpu_init();
    b64_use_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
#endif
}

size_t lv_b64_encoded_len(size_t n) { return 4 * ((n + 2) / 3); }

/* Whole 3-byte groups by pairs, then the last 1 or 2 bytes with '=' padding. Needs b64_setup. */
static void encode_scalar(char *dst, const unsigned char *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 3; i += 3, dst += 4) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        memcpy(dst, b64_pairs + 2 * (v >> 12), 2);
        memcpy(dst + 2, b64_pairs + 2 * (v & 0xfff), 2);
    }
    if (n - i == 1) {
        dst[0] = b64_alphabet[src[i] >> 2];
        dst[1] = b64_alphabet[(src[i] & 3) << 4];
        dst[2] = '=';
        dst[3] = '=';
    } else if (n - i == 2) {
        dst[0] = b64_alphabet[src[i] >> 2];
        dst[1] = b64_alphabet[(src[i] & 3) << 4 | src[i + 1] >> 4];
        dst[2] = b64_alphabet[(src[i + 1] & 15) << 2];
        dst[3] = '=';
    }
}

#ifdef LV_B64_X86
/* Encodes 24-byte blocks while at least 28 input bytes are left (each step reads 28: two 16-byte
 * loads at +0 and +12, of which it uses 12 each), so it never reads outside src[0..n). Returns the
 * input bytes done, a multiple of 24; the caller encodes the rest (4..27 bytes, or all of a short
 * input) with encode_scalar. Compiled for AVX2 alone, so the rest of the build keeps its flags;
 * call only when b64_use_avx2. */
__attribute__((target("avx2"))) static size_t encode_avx2_blocks(char *dst, const unsigned char *src, size_t n)
{
    /* In each 128-bit half, 12 input bytes a,b,c (x4) go to 4-byte groups b,a,c,b: as 16-bit
     * words the low one is a:b and the high one b:c, so each of the four 6-bit fields sits whole
     * inside one word. */
    const __m256i spread = _mm256_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10,
                                            1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
    /* Low word: field 0 = bits 15..10 (mulhi by 2^6 = >> 10), field 1 = bits 9..4 (mullo by 2^4
     * lifts it to bits 13..8, the word's second byte). High word: field 2 = bits 11..6 (mulhi by
     * 2^10 = >> 6), field 3 = bits 5..0 (mullo by 2^8 = second byte). Each byte of the OR then
     * holds one field, 0..63, in output order. */
    const __m256i keep_hi = _mm256_set1_epi32(0x0fc0fc00);
    const __m256i mul_hi = _mm256_set1_epi32(0x04000040);
    const __m256i keep_lo = _mm256_set1_epi32(0x003f03f0);
    const __m256i mul_lo = _mm256_set1_epi32(0x01000010);
    /* Value to ASCII: add an offset chosen by range. idx = saturating (v - 51), which is 0 for
     * 0..51 and 1..12 for 52..63, plus 1 when v > 25: 0 for A-Z, 1 for a-z, 2..11 for 0-9, 12 for
     * '+', 13 for '/'. idx < 16, so pshufb looks it up in one 16-byte row. */
    const __m256i offsets = _mm256_setr_epi8('A', 'a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                                             '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '+' - 62, '/' - 63,
                                             0, 0, 'A', 'a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                                             '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                                             '+' - 62, '/' - 63, 0, 0);
    const __m256i c51 = _mm256_set1_epi8(51);
    const __m256i c25 = _mm256_set1_epi8(25);
    size_t i = 0;
    for (; n - i >= 28; i += 24, dst += 32) {
        __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 12));
        __m256i x = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        x = _mm256_shuffle_epi8(x, spread);
        __m256i f = _mm256_or_si256(_mm256_mulhi_epu16(_mm256_and_si256(x, keep_hi), mul_hi),
                                    _mm256_mullo_epi16(_mm256_and_si256(x, keep_lo), mul_lo));
        /* f's bytes are 0..63, so the signed compare is an unsigned one; it gives -1 where v > 25 */
        __m256i idx = _mm256_sub_epi8(_mm256_subs_epu8(f, c51), _mm256_cmpgt_epi8(f, c25));
        __m256i chars = _mm256_add_epi8(f, _mm256_shuffle_epi8(offsets, idx));
        _mm256_storeu_si256((__m256i *)(void *)dst, chars);
    }
    return i;
}
#endif

void lv_b64_encode_scalar(char *dst, const void *src, size_t n)
{
    pthread_once(&b64_once, b64_setup);
    encode_scalar(dst, src, n);
}

int lv_b64_encode_avx2(char *dst, const void *src, size_t n)
{
    pthread_once(&b64_once, b64_setup);
#ifdef LV_B64_X86
    if (b64_use_avx2) {
        size_t done = encode_avx2_blocks(dst, src, n);
        encode_scalar(dst + done / 3 * 4, (const unsigned char *)src + done, n - done);
        return 0;
    }
#endif
    (void)dst, (void)src, (void)n;
    return LV_EINVAL;
}

int lv_b64_encode(lv_buf_t *out, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    /* keeps 4 * ceil(n / 3) from wrapping; lv_buf's cap refuses far less anyway */
    if (n > SIZE_MAX / 4 * 3 - 3)
        return LV_ELIMIT;
    size_t enc = lv_b64_encoded_len(n);
    /* lv_buf keeps one spare byte past its capacity for the NUL, so reserving enc (not enc + 1)
     * is enough, and an image whose base64 exactly fills the cap is not refused. */
    int rc = lv_buf_reserve(out, enc);
    if (rc)
        return rc;
    char *dst = out->data + out->len;
    if (lv_b64_encode_avx2(dst, p, n) != 0)
        encode_scalar(dst, p, n); /* lv_b64_encode_avx2 ran b64_setup */
    out->len += enc;
    out->data[out->len] = '\0';
    return 0;
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int lv_b64url_decode(const char *src, size_t len, unsigned char *out, size_t out_size, size_t *out_len)
{
    if (len % 4 == 1)
        return LV_EPARSE;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > out_size)
        return LV_ELIMIT;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)src[i]);
        if (v < 0)
            return LV_EPARSE;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out_len = o;
    return 0;
}

int lv_b64url_encode(const void *src, size_t len, char *out, size_t out_size)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = src;
    if ((len * 4 + 2) / 3 + 1 > out_size)
        return LV_ELIMIT;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = alpha[(acc >> bits) & 63];
        }
        acc &= (1u << bits) - 1;
    }
    if (bits > 0)
        out[o++] = alpha[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return 0;
}
