/* lv_utf8.h - the one UTF-8 check (RFC 3629): whole buffers, or a stream fed in pieces. */
#ifndef LV_UTF8_H
#define LV_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** 1 when p[0..len) is valid UTF-8, else 0. Rejects overlong forms, surrogates (U+D800..DFFF),
 * code points past U+10FFFF and truncated sequences. len 0 is valid (p may then be NULL). */
int lv_utf8_valid(const void *p, size_t len);

/** Length (1..4) of the valid sequence that starts at p[0..len), or 0 when p does not start one
 * (a stray continuation byte, a bad lead, a cut or invalid tail) or len is 0. For writers that
 * replace bad bytes one at a time instead of rejecting the text. */
size_t lv_utf8_seq_len(const void *p, size_t len);

/** The longest prefix of p[0..len) of at most max_bytes that does not cut a sequence in two:
 * len when it fits, else max_bytes backed up over continuation bytes (10xxxxxx) to the start of
 * the sequence that crosses. Valid text stays valid; it does not validate. */
size_t lv_utf8_cut(const void *p, size_t len, size_t max_bytes);

/* State for checking a stream split anywhere (a text message arriving in WebSocket fragments),
 * so a bad byte is caught when it arrives rather than when the message ends. */
typedef struct {
    uint8_t need;   /* continuation bytes still expected; LV_UTF8_BAD once invalid (sticky) */
    uint8_t lo, hi; /* the range the next continuation byte must fall in */
} lv_utf8_state_t;

#define LV_UTF8_BAD 0xFF

/** Start a stream. */
void lv_utf8_init(lv_utf8_state_t *s);
/** Check the next piece of the stream. 1 while everything so far is valid or a valid prefix, 0
 * once it is not (sticky). */
int lv_utf8_feed(lv_utf8_state_t *s, const void *p, size_t len);
/** True when the stream so far is valid and does not end inside a sequence. */
bool lv_utf8_done(const lv_utf8_state_t *s);

#endif
