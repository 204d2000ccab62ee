/* lv_wsmsg.h - parsing one client WebSocket text message and building error replies
 * (docs/protocol.md "Client -> server", "error codes"). Pure: no I/O. */
#ifndef LV_WSMSG_H
#define LV_WSMSG_H

#include <jansson.h>
#include <stddef.h>

/* Longest session_id / resume_secret accepted (ours are 32 / 64 hex characters). */
#define LV_WSMSG_ID_MAX 128

typedef enum {
    LV_MSG_HELLO,
    LV_MSG_UPDATE_SETTINGS,
    LV_MSG_START,
    LV_MSG_STOP,
    LV_MSG_PING,
    LV_MSG_UNKNOWN, /* well-formed, but a type we do not know: the caller replies unknown_type */
} lv_msg_type_t;

/* A parsed message. root owns everything; every other pointer borrows from it and dies with
 * lv_wsmsg_free(). Absent optional fields are NULL. */
typedef struct {
    lv_msg_type_t type;
    json_t *root;              /* owned: the whole message object */
    const char *type_name;     /* the "type" string as sent (for unknown_type replies and logs) */
    const char *session_id;    /* hello: resume id, at most LV_WSMSG_ID_MAX bytes */
    const char *resume_secret; /* hello: resume secret, at most LV_WSMSG_ID_MAX bytes; never log it */
    const json_t *settings;    /* a JSON object (not yet validated: see lv_settings_apply_json) */
    json_t *t;                 /* ping: the token to echo, only when it is a JSON number */
} lv_client_msg_t;

/** Parse one text message p[0..len) (need not be NUL-terminated).
 * Checks, in order: len <= max_bytes; nesting of arrays/objects <= max_depth (counted in one pass
 * over the raw bytes before jansson sees them, so a deep message costs no allocations); valid
 * JSON with no duplicate keys; a top-level object; a string "type"; "settings", when present, an
 * object; "session_id" and "resume_secret", when present, strings of at most LV_WSMSG_ID_MAX
 * bytes. A well-formed message of an unknown type succeeds with type LV_MSG_UNKNOWN. The field
 * checks apply whatever the type. "t" is borrowed only when it is a number; otherwise it is NULL.
 * On success the caller owns out and must call lv_wsmsg_free(out). On failure *out is zeroed (so
 * lv_wsmsg_free is harmless), *err_code gets the protocol error code and *err_text a short
 * human-readable reason (both static; either pointer may be NULL).
 * Returns 0; LV_ELIMIT ("message_too_large") when len > max_bytes; LV_EINVAL ("bad_message") for
 * everything else. */
int lv_wsmsg_parse(const char *p, size_t len, size_t max_bytes, int max_depth, lv_client_msg_t *out,
                   const char **err_code, const char **err_text);

/** Release what lv_wsmsg_parse() produced and zero *m. Safe on a zeroed or already freed message
 * and on NULL. */
void lv_wsmsg_free(lv_client_msg_t *m);

/** Build the reply {"type":"error","code":code,"message":message[,"field":field]} as compact JSON
 * text. message NULL is sent as ""; field NULL is omitted. Bytes of message or field that are not
 * valid UTF-8 (say, from a backend's error text) are replaced by U+FFFD (lv_json_str_append_lossy).
 * Returns a malloc'd NUL-terminated string the caller frees with free(), or NULL when code is
 * NULL or memory ran out. */
char *lv_wsmsg_error(const char *code, const char *message, const char *field_or_null);

#endif
