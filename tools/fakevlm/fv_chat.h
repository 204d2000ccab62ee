/* fv_chat.h - fakevlm's OpenAI chat-request validation, fault names and answer text. Pure: no I/O. */
#ifndef FV_CHAT_H
#define FV_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_buf.h"

#define FV_MODEL_MAX 256   /* bytes in a model id */
#define FV_MODELS_MAX 64   /* models one server offers */
#define FV_HEADER_WORDS 7  /* words in the identifying head of every answer */

/** Fault kinds; FV_FAULT_NONE is "no fault". Order is the order of fv_fault_name(). */
typedef enum {
    FV_FAULT_NONE = 0,
    FV_FAULT_ERROR500,          /* HTTP 500 with an OpenAI error body */
    FV_FAULT_ERROR429,          /* HTTP 429 with an OpenAI error body and Retry-After */
    FV_FAULT_STALL,             /* hold a slot, never answer, until the client leaves */
    FV_FAULT_STALL_AFTER_FIRST, /* send the first token (or, unstreamed, the headers), then stall */
    FV_FAULT_SLOW,              /* token time x10 */
    FV_FAULT_MALFORMED,         /* a data: line that is not JSON (unstreamed: a body that is not JSON) */
    FV_FAULT_NOSTREAM,          /* answer unstreamed even when stream:true was asked */
    FV_FAULT_DROP,              /* close the connection half way through the answer */
    FV_FAULT_COUNT
} fv_fault_t;

/** "none", "error500", ... (static string). */
const char *fv_fault_name(fv_fault_t f);
/** Parse a fault name of n bytes ("none" included); LV_EINVAL when unknown. */
int fv_fault_parse(const char *s, size_t n, fv_fault_t *out);
/** Space-separated list of every fault kind except "none" (static string, for messages). */
const char *fv_fault_list(void);

/** An OpenAI-style error: {"error":{"message","type","param","code"}} sent with status. */
typedef struct {
    int status;
    const char *type;  /* "invalid_request_error", "server_error", ... (static) */
    const char *code;  /* "model_not_found", "invalid_image", ... (static) */
    const char *param; /* the offending request field, or NULL (static) */
    char message[320];
} fv_error_t;

/** Everything fakevlm keeps from a chat request once its body is parsed; the body itself and the
 * image are not kept (they are only read to fill this). */
typedef struct {
    size_t model_index;    /* into the models array given to fv_chat_parse() */
    bool stream;
    bool include_usage;    /* stream_options.include_usage */
    long max_tokens;       /* max_completion_tokens or max_tokens; 0 when absent */
    char prompt_sha8[9];   /* first 8 hex digits of SHA-256 of the prompt text */
    size_t prompt_words;   /* whitespace-separated words in the prompt text */
    bool has_image;
    size_t image_bytes;    /* decoded image size */
    unsigned width, height;/* from the JPEG frame header; 0x0 when it has none */
    bool has_prompt_fault; /* the prompt carried a "[[fault:KIND]]" marker */
    fv_fault_t prompt_fault;
} fv_chat_request_t;

/** Validate an OpenAI chat completion request body like a real server would and describe it.
 * The prompt is the last user message's text parts, joined by "\n"; the image is that message's
 * first image_url part, which must be a data: URL in base64 of a JPEG (starts FF D8).
 * Returns 0, or LV_EINVAL / LV_ENOTFOUND (unknown model) / LV_ENOMEM with *err filled. */
int fv_chat_parse(const char *body, size_t len, const char *const *models, size_t n_models,
                  fv_chat_request_t *out, fv_error_t *err);

/** Decode standard base64 (padding optional, no whitespace) into out (out_cap bytes).
 * LV_EINVAL on a bad character or length, LV_ELIMIT when out is too small. */
int fv_base64_decode(const char *in, size_t len, unsigned char *out, size_t out_cap, size_t *out_len);

/** Find the frame size in a JPEG by walking its markers to the first SOFn segment (no decoding).
 * 0 with *w,*h set; LV_EINVAL when the bytes do not start with FF D8 (not a JPEG); LV_ENOTFOUND
 * when no frame header comes before the scan data, the end, or a segment cut short. */
int fv_jpeg_size(const unsigned char *p, size_t n, unsigned *w, unsigned *h);

/** Append the answer text to out: the head naming what was received,
 * "fakevlm model=M prompt=H image=N bytes jpeg=WxH seq=S. ", then filler words until the text
 * has max(min_words, FV_HEADER_WORDS) words. Every word is followed by exactly one space. */
int fv_answer_text(lv_buf_t *out, const char *model, const fv_chat_request_t *req, uint64_t seq,
                   size_t min_words);

/** Length of the word starting at text (up to and including its trailing space). */
size_t fv_word_len(const char *text, size_t avail);

#endif
