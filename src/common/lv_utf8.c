/* lv_utf8.c - UTF-8 validation by lead-byte ranges (the table in RFC 3629 section 4). */
#include "lv_utf8.h"

#include <string.h>

void lv_utf8_init(lv_utf8_state_t *s)
{
    s->need = 0;
    s->lo = 0x80;
    s->hi = 0xBF;
}

int lv_utf8_feed(lv_utf8_state_t *s, const void *p, size_t len)
{
    const unsigned char *u = p;
    unsigned need = s->need, lo = s->lo, hi = s->hi;
    size_t i = 0;
    if (need == LV_UTF8_BAD)
        return 0;
    while (i < len) {
        unsigned c = u[i];
        if (need) {
            if (c < lo || c > hi)
                goto bad;
            need--;
            lo = 0x80;
            hi = 0xBF;
            i++;
            continue;
        }
        if (c < 0x80) {
            /* Text is mostly ASCII: skip it eight bytes at a time. */
            while (len - i >= 8) {
                uint64_t w;
                memcpy(&w, u + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8;
            }
            while (i < len && u[i] < 0x80)
                i++;
            continue;
        }
        /* RFC 3629 section 4:
         *   UTF8-2 = %xC2-DF UTF8-tail
         *   UTF8-3 = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) /
         *            %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
         *   UTF8-4 = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) /
         *            %xF4 %x80-8F 2( UTF8-tail )
         * The narrowed second-byte ranges are what exclude overlongs (E0, F0), surrogates (ED)
         * and code points past U+10FFFF (F4); C0, C1 and F5..FF never start a sequence. */
        if (c < 0xC2)
            goto bad;
        if (c < 0xE0) {
            need = 1;
        } else if (c < 0xF0) {
            need = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c < 0xF5) {
            need = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else {
            goto bad;
        }
        i++;
    }
    s->need = (uint8_t)need;
    s->lo = (uint8_t)lo;
    s->hi = (uint8_t)hi;
    return 1;
bad:
    s->need = LV_UTF8_BAD;
    return 0;
}

bool lv_utf8_done(const lv_utf8_state_t *s)
{
    return s->need == 0;
}

int lv_utf8_valid(const void *p, size_t len)
{
    lv_utf8_state_t s;
    lv_utf8_init(&s);
    return lv_utf8_feed(&s, p, len) && lv_utf8_done(&s);
}

size_t lv_utf8_seq_len(const void *p, size_t len)
{
    const unsigned char *u = p;
    lv_utf8_state_t s;
    lv_utf8_init(&s);
    for (size_t i = 0; i < len && i < 4; i++) {
        if (!lv_utf8_feed(&s, u + i, 1))
            return 0;
        if (s.need == 0)
            return i + 1;
    }
    return 0;
}

size_t lv_utf8_cut(const void *p, size_t len, size_t max_bytes)
{
    const unsigned char *u = p;
    if (len <= max_bytes)
        return len;
    size_t n = max_bytes;
    while (n > 0 && (u[n] & 0xC0) == 0x80)
        n--;
    return n;
}
