/* lv_chatresp.c - OpenAI chat.completion(.chunk) parsing with jansson. */
#include "lv_chatresp.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"

void lv_chatresp_init(lv_chatresp_t *r)
{
    memset(r, 0, sizeof *r);
    r->content = "";
}

void lv_chatresp_clear(lv_chatresp_t *r)
{
    json_decref((json_t *)r->priv_doc);
    free(r->priv_fast);
    lv_chatresp_init(r);
}

/* ---- fast path for the common chunk ----
 * Nearly every chunk of a streamed answer looks like
 *   {"id":"..","object":"chat.completion.chunk",...,"choices":[{"index":0,"delta":{"content":"word"},
 *    "finish_reason":null}]}
 * and parsing it into a jansson tree costs several allocations per token. This scanner reads just
 * the content string (and the id) from such a chunk and says "not mine" (-1) for anything else —
 * errors, usage, finish reasons, tool calls, unusual layouts — which then take the full parser. */

static const char *find_key(const char *p, size_t n, const char *key, size_t klen, int *count)
{
    const char *hit = NULL;
    *count = 0;
    for (const char *q = p; (size_t)(q - p) + klen <= n;) {
        const char *f = memchr(q, key[0], n - (size_t)(q - p));
        if (!f || (size_t)(f - p) + klen > n)
            break;
        if (memcmp(f, key, klen) == 0) {
            if (!hit)
                hit = f;
            (*count)++;
        }
        q = f + 1;
    }
    return hit;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decode the JSON string starting after its opening quote; *end = the closing quote. -1 if bad. */
static int json_unescape(const char *p, const char *lim, char *out, size_t *out_len, const char **end)
{
    size_t o = 0;
    while (p < lim && *p != '"') {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20)
            return -1;
        if (ch != '\\') {
            out[o++] = (char)ch;
            p++;
            continue;
        }
        if (++p >= lim)
            return -1;
        switch (*p) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 1; i <= 4; i++) {
                int h = p + i < lim ? hexval(p[i]) : -1;
                if (h < 0)
                    return -1;
                cp = cp * 16 + (unsigned)h;
            }
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair */
                unsigned lo = 0;
                if (p + 6 >= lim || p[1] != '\\' || p[2] != 'u')
                    return -1;
                for (int i = 3; i <= 6; i++) {
                    int h = hexval(p[i]);
                    if (h < 0)
                        return -1;
                    lo = lo * 16 + (unsigned)h;
                }
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            if (cp == 0)
                return -1; /* the full parser decides about NUL */
            if (cp < 0x80) {
                out[o++] = (char)cp;
            } else if (cp < 0x800) {
                out[o++] = (char)(0xC0 | (cp >> 6));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[o++] = (char)(0xE0 | (cp >> 12));
                out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[o++] = (char)(0xF0 | (cp >> 18));
                out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            return -1;
        }
        p++;
    }
    if (p >= lim)
        return -1;
    *end = p;
    *out_len = o;
    return 0;
}

/* Brackets balance outside strings, and the text is one object: a cheap shape check so that a
 * truncated or garbled chunk still reaches the full parser and its error. */
static int balanced_object(const char *p, size_t n)
{
    int depth = 0, in_str = 0;
    if (n < 2 || p[0] != '{' || p[n - 1] != '}')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"')
            in_str = 1;
        else if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth < 0)
            return 0;
        else if (depth == 0 && i != n - 1)
            return 0;
    }
    return depth == 0 && !in_str;
}

static int fast_chunk(lv_chatresp_t *r, const char *p, size_t n)
{
    static const char k_content[] = "\"content\":\"", k_fin[] = "\"finish_reason\":null", k_id[] = "\"id\":\"";
    static const char *const not_mine[] = {"\"error\"", "\"tool_calls\"", "\"finish_reason\":\"",
                                           "\"object\":\"error\""};
    static const char k_usage[] = "\"usage\":";
    int count;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == '\t'))
        n--;
    while (n && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    if (!balanced_object(p, n) || !find_key(p, n, "\"choices\":[{", 12, &count) || count != 1)
        return -1;
    for (size_t i = 0; i < sizeof(not_mine) / sizeof(not_mine[0]); i++)
        if (find_key(p, n, not_mine[i], strlen(not_mine[i]), &count))
            return -1;
    /* with stream_options.include_usage, OpenAI and vLLM put "usage":null in every chunk but the
     * last: only a chunk that carries real usage needs the full parser */
    const char *u = find_key(p, n, "\"usage\"", 7, &count);
    if (u && (count != 1 || (size_t)(p + n - u) < sizeof(k_usage) - 1 + 4 ||
              memcmp(u, k_usage, sizeof(k_usage) - 1) != 0 || memcmp(u + sizeof(k_usage) - 1, "null", 4) != 0))
        return -1;
    const char *c = find_key(p, n, k_content, sizeof(k_content) - 1, &count);
    if (!c || count != 1 || !find_key(p, n, k_fin, sizeof(k_fin) - 1, &count) || count != 1)
        return -1;
    static const char k_model[] = "\"model\":\"";
    const char *id = find_key(p, n, k_id, sizeof(k_id) - 1, &count);
    const char *model = find_key(p, n, k_model, sizeof(k_model) - 1, &count);
    char *buf = malloc(n + 3); /* decoded strings are never longer than their JSON form */
    if (!buf)
        return -1;
    size_t clen = 0, idlen = 0, mlen = 0;
    const char *end = NULL;
    char *idp = NULL, *mp = NULL;
    if (json_unescape(c + sizeof(k_content) - 1, p + n, buf, &clen, &end) != 0)
        goto fail;
    buf[clen] = '\0';
    idp = buf + clen + 1;
    if (id && json_unescape(id + sizeof(k_id) - 1, p + n, idp, &idlen, &end) != 0)
        goto fail;
    idp[idlen] = '\0';
    mp = idp + idlen + 1;
    if (model && json_unescape(model + sizeof(k_model) - 1, p + n, mp, &mlen, &end) != 0)
        goto fail;
    mp[mlen] = '\0';
    r->priv_fast = buf;
    r->content = buf;
    r->content_len = clen;
    r->id = id ? idp : NULL;
    r->model = model ? mp : NULL;
    return 0;
fail:
    free(buf);
    return -1;
}

/* "error": {"message": "..."} (OpenAI, vLLM, Ollama's /v1) or a bare string (some proxies). */
static int read_error(lv_chatresp_t *r, json_t *err)
{
    if (json_is_string(err)) {
        r->error_message = json_string_value(err);
    } else if (json_is_object(err)) {
        json_t *m = json_object_get(err, "message");
        r->error_message = json_is_string(m) ? json_string_value(m) : "backend reported an error";
    } else {
        r->error_message = "backend reported an error";
    }
    return LV_EBACKEND;
}

/* Optional string: absent or null gives NULL; anything else but a string is a type error. */
static int opt_string(json_t *obj, const char *key, const char **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return LV_EPARSE;
    *out = json_string_value(v);
    return 0;
}

static int opt_count(json_t *obj, const char *key, int *out)
{
    json_t *v = json_object_get(obj, key);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX)
        return LV_EPARSE;
    *out = (int)json_integer_value(v);
    return 0;
}

static int read_usage(lv_chatresp_t *r, json_t *root)
{
    json_t *u = json_object_get(root, "usage");
    int rc;
    if (!u || json_is_null(u))
        return 0;
    if (!json_is_object(u))
        return LV_EPARSE;
    r->has_usage = 1;
    if ((rc = opt_count(u, "prompt_tokens", &r->prompt_tokens)) != 0)
        return rc;
    return opt_count(u, "completion_tokens", &r->completion_tokens);
}

/* The content member of a delta or message object: string, null or absent. */
static int read_content(lv_chatresp_t *r, json_t *holder)
{
    json_t *c = json_object_get(holder, "content");
    if (!c || json_is_null(c))
        return 0;
    if (!json_is_string(c))
        return LV_EPARSE;
    r->content = json_string_value(c);
    r->content_len = json_string_length(c);
    return 0;
}

/* Load and check the common top level; *root_out is borrowed from r->priv_doc. */
static int load(lv_chatresp_t *r, const char *p, size_t n, size_t max_bytes, json_t **root_out)
{
    json_error_t jerr;
    lv_chatresp_clear(r);
    if (n > max_bytes)
        return LV_ELIMIT;
    json_t *root = json_loadb(p, n, 0, &jerr);
    if (!root)
        return LV_EPARSE;
    r->priv_doc = root;
    if (!json_is_object(root))
        return LV_EPARSE;
    json_t *err = json_object_get(root, "error");
    if (err && !json_is_null(err))
        return read_error(r, err);
    /* Older vLLM answers errors as {"object":"error","message":"...","code":400}. */
    json_t *obj = json_object_get(root, "object");
    if (json_is_string(obj) && strcmp(json_string_value(obj), "error") == 0)
        return read_error(r, root);
    /* id and model only feed the debug view: anything but a string is just ignored. */
    json_t *id = json_object_get(root, "id"), *model = json_object_get(root, "model");
    r->id = json_is_string(id) ? json_string_value(id) : NULL;
    r->model = json_is_string(model) ? json_string_value(model) : NULL;
    *root_out = root;
    return read_usage(r, root);
}

/* choices[0] as an object, or NULL when "choices" is absent/null/empty. */
static int first_choice(json_t *root, json_t **out)
{
    json_t *ch = json_object_get(root, "choices");
    *out = NULL;
    if (!ch || json_is_null(ch))
        return 0;
    if (!json_is_array(ch))
        return LV_EPARSE;
    if (json_array_size(ch) == 0)
        return 0;
    json_t *c0 = json_array_get(ch, 0);
    if (!json_is_object(c0))
        return LV_EPARSE;
    *out = c0;
    return 0;
}

static int is_done_sentinel(const char *p, size_t n)
{
    while (n && (p[0] == ' ' || p[0] == '\t' || p[0] == '\r' || p[0] == '\n')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
        n--;
    return n == 6 && memcmp(p, "[DONE]", 6) == 0;
}

int lv_chatresp_parse_chunk(lv_chatresp_t *r, const char *p, size_t n, size_t max_bytes)
{
    json_t *root = NULL, *c0 = NULL;
    int rc;
    if (n <= 64 && is_done_sentinel(p, n)) {
        lv_chatresp_clear(r);
        r->is_done = 1;
        return 0;
    }
    if (n > max_bytes)
        return LV_ELIMIT;
    lv_chatresp_clear(r);
    if (fast_chunk(r, p, n) == 0)
        return 0;
    if ((rc = load(r, p, n, max_bytes, &root)) != 0)
        goto out;
    if ((rc = first_choice(root, &c0)) != 0 || !c0)
        goto out;
    if ((rc = opt_string(c0, "finish_reason", &r->finish_reason)) != 0)
        goto out;
    json_t *delta = json_object_get(c0, "delta");
    if (!delta || json_is_null(delta))
        goto out;
    if (!json_is_object(delta)) {
        rc = LV_EPARSE;
        goto out;
    }
    rc = read_content(r, delta);
out:
    if (rc && rc != LV_EBACKEND)
        lv_chatresp_clear(r);
    return rc;
}

int lv_chatresp_parse_completion(lv_chatresp_t *r, const char *p, size_t n, size_t max_bytes)
{
    json_t *root = NULL, *c0 = NULL;
    int rc;
    if ((rc = load(r, p, n, max_bytes, &root)) != 0)
        goto out;
    if ((rc = first_choice(root, &c0)) != 0)
        goto out;
    if (!c0) {
        rc = LV_EPARSE;
        goto out;
    }
    if ((rc = opt_string(c0, "finish_reason", &r->finish_reason)) != 0)
        goto out;
    json_t *msg = json_object_get(c0, "message");
    if (!json_is_object(msg)) {
        rc = LV_EPARSE;
        goto out;
    }
    rc = read_content(r, msg);
out:
    if (rc && rc != LV_EBACKEND)
        lv_chatresp_clear(r);
    return rc;
}

int lv_chatresp_parse_error(lv_chatresp_t *r, const char *p, size_t n, size_t max_bytes)
{
    lv_chatresp_clear(r);
    if (n > max_bytes)
        return LV_ELIMIT;
    json_t *root = json_loadb(p, n, JSON_DECODE_ANY, NULL);
    r->priv_doc = root;
    json_t *err = json_is_object(root) ? json_object_get(root, "error") : NULL;
    return read_error(r, err && !json_is_null(err) ? err : root);
}
