/* lv_chatreq.h - builds the OpenAI chat/completions request body for one frame. Pure: no I/O.
 * The base64 image is written straight into the body (never through a JSON serialiser: jansson
 * takes 213-444 us on a 40 KB string; the template + lv_b64_encode, AVX2 where the CPU has it, a
 * few us). */
#ifndef LV_CHATREQ_H
#define LV_CHATREQ_H

#include <stddef.h>

#include "lv_buf.h"

/** Characters of base64 kept in the debug form of a body. */
#define LV_CHATREQ_DEBUG_B64_CHARS 120

/** What goes into one request. Views only: nothing is kept after a build call returns. */
typedef struct {
    const char *model;     /* NUL-terminated UTF-8, non-empty */
    const char *prompt;    /* NUL-terminated UTF-8 (may be empty) */
    int max_tokens;        /* > 0: sent as "max_tokens"; <= 0: omitted (backend default) */
    double temperature;    /* finite, 0..100; sent with up to 6 decimals */
    const void *jpeg;      /* the image; NULL or jpeg_len 0: a text-only message */
    size_t jpeg_len;
    int stream;            /* "stream":true|false */
    int include_usage;     /* with stream: add "stream_options":{"include_usage":true} */
} lv_chatreq_t;

/** Append the request body to out:
 * {"model":M,"messages":[{"role":"user","content":[{"type":"text","text":P},
 *  {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,..."}}]}],
 *  "max_tokens":N,"temperature":T,"stream":true[,"stream_options":{"include_usage":true}]}
 * All or nothing: on failure out is restored to its previous length. LV_EINVAL (NULL/empty
 * model, NULL prompt, invalid UTF-8, temperature out of range), LV_ELIMIT (out's cap), LV_ENOMEM. */
int lv_chatreq_build(lv_buf_t *out, const lv_chatreq_t *req);

/** Same body for people to read (the UI's debug view): the base64 is cut to its first
 * LV_CHATREQ_DEBUG_B64_CHARS characters followed by "...<N chars total>". Still valid JSON.
 * Same returns as lv_chatreq_build(). */
int lv_chatreq_build_debug(lv_buf_t *out, const lv_chatreq_t *req);


#endif
