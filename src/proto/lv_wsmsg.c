/* lv_wsmsg.c - client text message parsing (depth pre-check + jansson) and error replies. */
#include "lv_wsmsg.h"

#include <stdlib.h>
#include <string.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_json_str.h"

#define E_TOO_LARGE "message_too_large"
#define E_BAD "bad_message"

static const struct {
    const char *name;
    lv_msg_type_t type;
} msg_types[] = {
    {"hello", LV_MSG_HELLO},
    {"update_settings", LV_MSG_UPDATE_SETTINGS},
    {"start", LV_MSG_START},
    {"stop", LV_MSG_STOP},
    {"ping", LV_MSG_PING},
};

/* Maximum nesting of [ and { outside strings. Jansson recurses per level and allocates per
 * container; refusing deep input up front keeps a 64 KiB "[[[[..." from costing 32k allocations
 * and stack frames. Strings are skipped honouring backslash escapes, so "\"[" inside a string
 * does not count. The scan does not validate JSON; jansson does that afterwards. Returns 1 when
 * the depth stays within max_depth. */
static int depth_ok(const char *p, size_t len, int max_depth)
{
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (in_string) {
            if (c == '\\')
                i++; /* skip the escaped character, whatever it is */
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return 0;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return 1;
}

static int fail(lv_client_msg_t *out, const char **err_code, const char **err_text, const char *code,
                const char *text, int rc)
{
    if (out->root)
        json_decref(out->root);
    memset(out, 0, sizeof(*out));
    if (err_code)
        *err_code = code;
    if (err_text)
        *err_text = text;
    return rc;
}

/* An optional string field of bounded length. Returns NULL when fine (and sets *dst when present). */
static const char *get_id_field(json_t *root, const char *key, const char **dst)
{
    json_t *v = json_object_get(root, key);
    if (!v)
        return NULL;
    if (!json_is_string(v))
        return "session_id and resume_secret must be strings";
    if (json_string_length(v) > LV_WSMSG_ID_MAX)
        return "session_id or resume_secret too long";
    *dst = json_string_value(v);
    return NULL;
}

int lv_wsmsg_parse(const char *p, size_t len, size_t max_bytes, int max_depth, lv_client_msg_t *out,
                   const char **err_code, const char **err_text)
{
    json_error_t jerr;
    const char *why;

    if (!out)
        return LV_EINVAL;
    memset(out, 0, sizeof(*out));
    if (len > max_bytes)
        return fail(out, err_code, err_text, E_TOO_LARGE, "text message too large", LV_ELIMIT);
    if (!p || len == 0)
        return fail(out, err_code, err_text, E_BAD, "empty message", LV_EINVAL);
    if (!depth_ok(p, len, max_depth))
        return fail(out, err_code, err_text, E_BAD, "JSON nested too deeply", LV_EINVAL);

    /* Duplicate keys are refused: with {"type":"stop","type":"start"} different parsers would
     * disagree on what was sent. \u0000 in strings is refused by default (no JSON_ALLOW_NUL), so
     * every string below is a proper C string. */
    out->root = json_loadb(p, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!out->root)
        return fail(out, err_code, err_text, E_BAD, "not valid JSON", LV_EINVAL);
    if (!json_is_object(out->root))
        return fail(out, err_code, err_text, E_BAD, "not a JSON object", LV_EINVAL);

    json_t *type = json_object_get(out->root, "type");
    if (!json_is_string(type))
        return fail(out, err_code, err_text, E_BAD, "missing or non-string \"type\"", LV_EINVAL);
    out->type_name = json_string_value(type);
    out->type = LV_MSG_UNKNOWN;
    for (size_t i = 0; i < LV_ARRAY_LEN(msg_types); i++) {
        if (strcmp(out->type_name, msg_types[i].name) == 0) {
            out->type = msg_types[i].type;
            break;
        }
    }

    json_t *settings = json_object_get(out->root, "settings");
    if (settings && !json_is_object(settings))
        return fail(out, err_code, err_text, E_BAD, "\"settings\" must be an object", LV_EINVAL);
    out->settings = settings;

    if ((why = get_id_field(out->root, "session_id", &out->session_id)) != NULL ||
        (why = get_id_field(out->root, "resume_secret", &out->resume_secret)) != NULL)
        return fail(out, err_code, err_text, E_BAD, why, LV_EINVAL);

    /* Only numbers are echoed in pong (protocol: "t? (any number)"), which also keeps a client
     * from making us echo a large object back. */
    json_t *t = json_object_get(out->root, "t");
    out->t = json_is_number(t) ? t : NULL;
    return 0;
}

void lv_wsmsg_free(lv_client_msg_t *m)
{
    if (!m)
        return;
    if (m->root)
        json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

/* Written by hand rather than through jansson: the text may not be UTF-8 (a backend's error
 * message), and jansson refuses such strings where the page should still get the reply. */
char *lv_wsmsg_error(const char *code, const char *message, const char *field_or_null)
{
    if (!code)
        return NULL;
    if (!message)
        message = "";
    size_t code_len = strlen(code), msg_len = strlen(message);
    size_t field_len = field_or_null ? strlen(field_or_null) : 0;
    lv_buf_t b;
    /* An escape is at most 6 bytes per input byte, so this cap never truncates a reply; it
     * only keeps the buffer's contract (every buffer has one). */
    lv_buf_init(&b, 64 + 6 * (code_len + msg_len + field_len));
    if (lv_buf_append_str(&b, "{\"type\":\"error\",\"code\":") != 0 ||
        lv_json_str_append_lossy(&b, code, code_len) != 0 || lv_buf_append_str(&b, ",\"message\":") != 0 ||
        lv_json_str_append_lossy(&b, message, msg_len) != 0 ||
        (field_or_null && (lv_buf_append_str(&b, ",\"field\":") != 0 ||
                           lv_json_str_append_lossy(&b, field_or_null, field_len) != 0)) ||
        lv_buf_append(&b, "}", 1) != 0) {
        lv_buf_free(&b);
        return NULL;
    }
    return b.data; /* malloc'd by lv_buf, NUL-terminated */
}
