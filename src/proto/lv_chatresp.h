/* lv_chatresp.h - parses OpenAI chat answers: one streamed chat.completion.chunk (an SSE data
 * payload) or one whole chat.completion. Pure: no I/O. Strict about the types of the fields it
 * reads, tolerant of fields it does not know. */
#ifndef LV_CHATRESP_H
#define LV_CHATRESP_H

#include <stddef.h>

/* Room inside the struct for what the fast path decodes (content, id, model of a token chunk,
 * typically under 100 bytes), so that the common chunk costs no allocation. */
#define LV_CHATRESP_INLINE_MAX 256

/** What one payload said. Every pointer points into memory held by the struct (the parsed
 * document, or priv_inline inside the struct itself) and stays valid until lv_chatresp_clear() or
 * the next parse into the same struct; so do not copy or move a struct that holds a parse. */
typedef struct {
    int is_done;                 /* the payload was the "[DONE]" sentinel; nothing else is set */
    const char *content;         /* delta text (chunk) or message text (completion); never NULL,
                                  * "" when absent or null. NUL-terminated; may hold no NUL inside */
    size_t content_len;
    const char *finish_reason;   /* "stop", "length", ...; NULL when absent or null */
    int has_usage;               /* a "usage" object was present */
    int prompt_tokens;           /* from usage; 0 when absent */
    int completion_tokens;
    const char *error_message;   /* set (never NULL) when the call returns LV_EBACKEND */
    const char *id;              /* top-level "id" / "model" when they are strings, else NULL */
    const char *model;
    void *priv_doc;              /* private: the parsed document (a json_t *) */
    char *priv_fast;             /* private: content, id, model decoded by the fast path; points
                                  * to priv_inline, or to a heap block when they did not fit */
    char priv_inline[LV_CHATRESP_INLINE_MAX]; /* private; last, so init need not zero it */
} lv_chatresp_t;

/** Start empty (no allocation). */
void lv_chatresp_init(lv_chatresp_t *r);

/** Drop what the last parse held and start empty again. */
void lv_chatresp_clear(lv_chatresp_t *r);

/** Parse one SSE data payload of a streamed answer: "[DONE]" (surrounding blanks allowed) or a
 * chat.completion.chunk, reading choices[0].delta.content, choices[0].finish_reason, usage, id,
 * model. An empty "choices" (the usage-only last chunk) is fine. Clears r first.
 * Returns 0; LV_ELIMIT when n > max_bytes; LV_EPARSE on bad JSON, a non-object, or a known field
 * of the wrong type (e.g. "choices" not an array, content not a string or null, negative token
 * counts); LV_EBACKEND when the payload carries "error" (an object with a string "message", or a
 * bare string) or is itself an error object ("object":"error", older vLLM), with r->error_message
 * set. On any other failure r is left cleared. */
int lv_chatresp_parse_chunk(lv_chatresp_t *r, const char *p, size_t n, size_t max_bytes);

/** The same as lv_chatresp_parse_chunk() without its fast scanner for the common chunks (token,
 * finish reason, usage): every payload through the JSON parser. The reference the unit test and the fuzzer hold the
 * fast scanner to (same return, same fields); nothing else needs it. */
int lv_chatresp_parse_chunk_full(lv_chatresp_t *r, const char *p, size_t n, size_t max_bytes);

/** Parse a payload that is known to report an error (llama.cpp's SSE "error" field, e.g.
 * {"code":400,"message":"...","type":"invalid_request_error"}): an object with "error", an
 * object with "message", or a bare JSON string. Always ends in LV_EBACKEND with r->error_message
 * set ("backend reported an error" when no message can be read), or LV_ELIMIT past max_bytes. */
int lv_chatresp_parse_error(lv_chatresp_t *r, const char *p, size_t n, size_t max_bytes);

/** Parse a whole (non-streamed) chat.completion: choices[0].message.content, its finish_reason,
 * usage, id, model. Same returns as lv_chatresp_parse_chunk(); also LV_EPARSE when "choices" is
 * missing or empty. Also used on error bodies: {"error":{...}} gives LV_EBACKEND with the message. */
int lv_chatresp_parse_completion(lv_chatresp_t *r, const char *p, size_t n, size_t max_bytes);

#endif
