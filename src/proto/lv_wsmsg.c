/* lv_wsmsg.c - client text message parsing (depth pre-check + jansson) and error replies. */
#include "lv_wsmsg.h"

#include <stdlib.h>
#include <string.h>

#include "lv_common.h"

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

/* Length of the valid UTF-8 sequence at s[0..len), or 0 when s does not start one (RFC 3629:
 * no overlongs, surrogates or code points past U+10FFFF). */
static size_t utf8_seq_len(const unsigned char *s, size_t len)
{
    unsigned c = s[0], cp, min;
    size_t n;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        n = 1, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
        n = 2, min = 0x800, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
        n = 3, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if (len - 1 < n)
        return 0;
    for (size_t k = 1; k <= n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n + 1;
}

/* A JSON string from C text, with invalid UTF-8 bytes replaced by '?' so an error reply is never
 * lost because a backend sent us Latin-1. NULL only when out of memory. */
static json_t *json_string_lossy(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t len = strlen(s);
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq_len(u + i, len - i);
        if (n == 0) {
            copy[i++] = '?';
        } else {
            memcpy(copy + i, s + i, n);
            i += n;
        }
    }
    copy[len] = '\0';
    j = json_string(copy);
    free(copy);
    return j;
}

char *lv_wsmsg_error(const char *code, const char *message, const char *field_or_null)
{
    char *text = NULL;
    json_t *obj = NULL;

    if (!code)
        return NULL;
    obj = json_object();
    if (!obj)
        goto out;
    /* json_object_set_new() consumes the value even on failure and refuses a NULL value, so
     * an allocation failure anywhere shows up as a non-zero return. */
    if (json_object_set_new(obj, "type", json_string("error")) != 0 ||
        json_object_set_new(obj, "code", json_string_lossy(code)) != 0 ||
        json_object_set_new(obj, "message", json_string_lossy(message ? message : "")) != 0)
        goto out;
    if (field_or_null && json_object_set_new(obj, "field", json_string_lossy(field_or_null)) != 0)
        goto out;
    text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
    json_decref(obj);
    return text;
}
