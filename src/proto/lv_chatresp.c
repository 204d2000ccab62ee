/* lv_chatresp.c - OpenAI chat.completion(.chunk) parsing with jansson. */
#include "lv_chatresp.h"

#include <jansson.h>
#include <limits.h>
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
    lv_chatresp_init(r);
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
