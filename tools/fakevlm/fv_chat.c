/* fv_chat.c - fakevlm's chat-request validation and answer text: what a real OpenAI-compatible
 * server checks, and an answer that names what it received so tests can prove isolation. */
#include "fv_chat.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_rand.h"

static const char *const fault_names[FV_FAULT_COUNT] = {
    "none", "error500", "error429", "stall", "stall-after-first", "slow", "malformed", "nostream", "drop",
};

const char *fv_fault_name(fv_fault_t f)
{
    return (unsigned)f < FV_FAULT_COUNT ? fault_names[f] : "?";
}

int fv_fault_parse(const char *s, size_t n, fv_fault_t *out)
{
    for (size_t i = 0; i < FV_FAULT_COUNT; i++) {
        if (strlen(fault_names[i]) == n && memcmp(fault_names[i], s, n) == 0) {
            *out = (fv_fault_t)i;
            return 0;
        }
    }
    return LV_EINVAL;
}

const char *fv_fault_list(void)
{
    return "error500 error429 stall stall-after-first slow malformed nostream drop";
}

static int set_error(fv_error_t *err, int status, const char *type, const char *code, const char *param,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int set_error(fv_error_t *err, int status, const char *type, const char *code, const char *param,
                     const char *fmt, ...)
{
    err->status = status;
    err->type = type;
    err->code = code;
    err->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    if (status == 404)
        return LV_ENOTFOUND;
    return status == 500 ? LV_ENOMEM : LV_EINVAL;
}

#define BAD(param, ...) set_error(err, 400, "invalid_request_error", "invalid_request", param, __VA_ARGS__)

int fv_base64_decode(const char *in, size_t len, unsigned char *out, size_t out_cap, size_t *out_len)
{
    static signed char map[256];
    static int ready;
    if (!ready) { /* single-threaded tool; building the table twice would be harmless anyway */
        memset(map, -1, sizeof(map));
        const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; i++)
            map[(unsigned char)alpha[i]] = (signed char)i;
        ready = 1;
    }
    /* Padding is optional (some encoders drop it) but, when present, only at the end. */
    if (len >= 1 && in[len - 1] == '=')
        len--;
    if (len >= 1 && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return LV_EINVAL;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > out_cap)
        return LV_ELIMIT;
    /* Four characters to three bytes at a time: this loop runs over every byte of every image. */
    size_t o = 0, i = 0, full = len / 4 * 4;
    for (; i < full; i += 4) {
        int a = map[(unsigned char)in[i]], b = map[(unsigned char)in[i + 1]];
        int c = map[(unsigned char)in[i + 2]], d = map[(unsigned char)in[i + 3]];
        if ((a | b | c | d) < 0)
            return LV_EINVAL;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[o] = (unsigned char)(v >> 16);
        out[o + 1] = (unsigned char)(v >> 8);
        out[o + 2] = (unsigned char)v;
        o += 3;
    }
    if (len - full >= 2) { /* 2 or 3 characters left: 1 or 2 bytes */
        int a = map[(unsigned char)in[i]], b = map[(unsigned char)in[i + 1]];
        int c = len - full == 3 ? map[(unsigned char)in[i + 2]] : 0;
        if ((a | b | c) < 0)
            return LV_EINVAL;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        out[o++] = (unsigned char)(v >> 16);
        if (len - full == 3)
            out[o++] = (unsigned char)(v >> 8);
    }
    *out_len = o;
    return 0;
}

/* JPEG markers (ITU T.81 B.1.1.3): SOFn are C0..CF except C4 (DHT), C8 (JPG) and CC (DAC). */
static bool is_sof(unsigned m)
{
    return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

int fv_jpeg_size(const unsigned char *p, size_t n, unsigned *w, unsigned *h)
{
    if (n < 2 || p[0] != 0xFF || p[1] != 0xD8)
        return LV_EINVAL;
    size_t i = 2;
    for (;;) {
        /* A decoder skips stray bytes before a marker (libjpeg warns "extraneous bytes"); so do we. */
        while (i < n && p[i] != 0xFF)
            i++;
        while (i < n && p[i] == 0xFF) /* fill bytes */
            i++;
        if (i >= n)
            return LV_ENOTFOUND;
        unsigned m = p[i++];
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) /* standalone markers */
            continue;
        if (m == 0xD9 || m == 0xDA) /* end of image, or scan data before any frame header */
            return LV_ENOTFOUND;
        if (n - i < 2)
            return LV_ENOTFOUND;
        size_t seg_len = (size_t)p[i] << 8 | p[i + 1];
        if (seg_len < 2)
            return LV_ENOTFOUND;
        if (is_sof(m)) {
            /* Lh Ll P Yh Yl Xh Xl: height then width. */
            if (seg_len < 8 || n - i < 7)
                return LV_ENOTFOUND;
            *h = (unsigned)p[i + 3] << 8 | p[i + 4];
            *w = (unsigned)p[i + 5] << 8 | p[i + 6];
            return 0;
        }
        i += seg_len;
    }
}

/* What a data: URL holds, found without keeping the decoded bytes. */
typedef enum { IMG_OK, IMG_NOT_DATA, IMG_BAD_URL, IMG_BAD_MIME, IMG_BAD_BASE64, IMG_NOT_JPEG, IMG_NOMEM } img_status_t;

typedef struct {
    img_status_t status;
    size_t bytes;
    unsigned width, height;
} img_info_t;

static void describe_data_url(const char *url, size_t url_len, img_info_t *info)
{
    memset(info, 0, sizeof(*info));
    if (url_len < 5 || memcmp(url, "data:", 5) != 0) {
        info->status = IMG_NOT_DATA;
        return;
    }
    const char *comma = memchr(url, ',', url_len);
    if (!comma) {
        info->status = IMG_BAD_URL;
        return;
    }
    size_t meta_len = (size_t)(comma - url) - 5;
    const char *meta = url + 5;
    if (meta_len < 13 || memcmp(meta, "image/", 6) != 0 || memcmp(meta + meta_len - 7, ";base64", 7) != 0) {
        info->status = IMG_BAD_MIME;
        return;
    }
    const char *b64 = comma + 1;
    size_t b64_len = url_len - (size_t)(b64 - url);
    size_t cap = b64_len / 4 * 3 + 3;
    unsigned char *img = malloc(cap);
    if (!img) {
        info->status = IMG_NOMEM;
        return;
    }
    size_t n = 0;
    if (fv_base64_decode(b64, b64_len, img, cap, &n)) {
        free(img);
        info->status = IMG_BAD_BASE64;
        return;
    }
    unsigned w = 0, h = 0;
    int rc = fv_jpeg_size(img, n, &w, &h);
    free(img); /* only its size and frame header are kept */
    info->status = rc == LV_EINVAL ? IMG_NOT_JPEG : IMG_OK;
    info->bytes = n;
    info->width = rc == 0 ? w : 0;
    info->height = rc == 0 ? h : 0;
}

/* ---- the fast path for big images ----
 * A 30 KB JPEG is 40 KB of base64, and jansson's lexer spends about 10 ns per byte of a string
 * (80% of a request's CPU). So before the JSON is parsed, every "url" value that is a long data:
 * URL without escapes is described by the tight loop above and replaced, in a copy of the body,
 * by a short reference "data:fakevlm-ref-<nonce>,<k>" that read_image() resolves. The nonce is
 * random per process, so no client can forge a reference. Strings are delimited exactly as
 * jansson does (a quote not preceded by an odd run of backslashes), and the replacement keeps a
 * string a string, so the document stays valid or invalid as it was; on invalid JSON the
 * original body is parsed again so the error message points at the client's own column. */
#define LIFT_MIN_BYTES 1024
#define LIFT_MAX_IMAGES 16
#define REF_PREFIX "data:fakevlm-ref-"

typedef struct {
    img_info_t images[LIFT_MAX_IMAGES];
    size_t n;
    char nonce[17];
} lifted_t;

static size_t skip_ws(const char *s, size_t i, size_t len)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* Copy body into out (len + 1 bytes), lifting long data: URLs; returns the copy's length. */
static size_t lift_images(const char *body, size_t len, char *out, lifted_t *lift)
{
    size_t w = 0, copied = 0, i = 0;
    size_t url_value_at = SIZE_MAX; /* offset of the opening quote of a "url" member's value */
    while (i < len) {
        const char *q = memchr(body + i, '"', len - i);
        if (!q)
            break;
        size_t open = (size_t)(q - body), s = open + 1, e = s;
        for (;;) { /* find the closing quote */
            const char *qq = memchr(body + e, '"', len - e);
            if (!qq)
                goto done; /* unterminated: jansson will say so */
            size_t pos = (size_t)(qq - body), bs = 0;
            while (pos - bs > s && body[pos - bs - 1] == '\\')
                bs++;
            if (bs % 2 == 0) {
                e = pos;
                break;
            }
            e = pos + 1;
        }
        i = e + 1;
        size_t n = e - s;
        bool liftable = open == url_value_at && n >= LIFT_MIN_BYTES && lift->n < LIFT_MAX_IMAGES &&
                        memcmp(body + s, "data:", 5) == 0 && !memchr(body + s, '\\', n);
        if (liftable) {
            describe_data_url(body + s, n, &lift->images[lift->n]);
            memcpy(out + w, body + copied, s - copied);
            w += s - copied;
            int k = snprintf(out + w, n + 1, REF_PREFIX "%s,%zu", lift->nonce, lift->n);
            w += (size_t)k; /* k < 64 <= n: the reference always fits where the URL was */
            copied = e;
            lift->n++;
        }
        url_value_at = SIZE_MAX;
        size_t next = skip_ws(body, i, len);
        if (next < len && body[next] == ':' && n == 3 && memcmp(body + s, "url", 3) == 0)
            url_value_at = skip_ws(body, next + 1, len);
    }
done:
    memcpy(out + w, body + copied, len - copied);
    w += len - copied;
    out[w] = '\0';
    return w;
}

static int read_image(const char *url, size_t url_len, const lifted_t *lift, fv_chat_request_t *out, fv_error_t *err)
{
    const char *param = "messages";
    img_info_t info;
    size_t plen = sizeof(REF_PREFIX) - 1;
    bool is_ref = lift->n && url_len > plen + 17 && memcmp(url, REF_PREFIX, plen) == 0 &&
                  memcmp(url + plen, lift->nonce, 16) == 0 && url[plen + 16] == ',';
    if (is_ref) {
        size_t k = 0;
        for (size_t i = plen + 17; i < url_len && k < LIFT_MAX_IMAGES; i++)
            k = k * 10 + (size_t)(url[i] - '0');
        if (k >= lift->n)
            return set_error(err, 500, "server_error", "internal_error", NULL, "lost image reference");
        info = lift->images[k];
    } else {
        describe_data_url(url, url_len, &info);
    }
    switch (info.status) {
    case IMG_OK:
        break;
    case IMG_NOT_DATA:
        return set_error(err, 400, "invalid_request_error", "invalid_image_url", param,
                         "fakevlm accepts only data: image URLs (data:image/jpeg;base64,...)");
    case IMG_BAD_URL:
        return set_error(err, 400, "invalid_request_error", "invalid_image_url", param, "malformed data: URL");
    case IMG_BAD_MIME:
        return set_error(err, 400, "invalid_request_error", "invalid_image", param,
                         "invalid image: expected data:image/...;base64,");
    case IMG_BAD_BASE64:
        return set_error(err, 400, "invalid_request_error", "invalid_image", param, "invalid image: bad base64");
    case IMG_NOT_JPEG:
        return set_error(err, 400, "invalid_request_error", "invalid_image", param,
                         "invalid image: not a JPEG (does not start with FF D8)");
    case IMG_NOMEM:
    default:
        return set_error(err, 500, "server_error", "out_of_memory", NULL, "out of memory");
    }
    out->has_image = true;
    out->image_bytes = info.bytes;
    out->width = info.width;
    out->height = info.height;
    return 0;
}

/* "[[fault:KIND]]" anywhere in the prompt picks a fault for this request. */
static int read_prompt_fault(const char *s, size_t n, fv_chat_request_t *out, fv_error_t *err)
{
    static const char open[] = "[[fault:";
    const size_t olen = sizeof(open) - 1;
    for (size_t i = 0; i + olen <= n; i++) {
        if (memcmp(s + i, open, olen) != 0)
            continue;
        const char *kind = s + i + olen;
        size_t left = n - i - olen;
        for (size_t k = 0; k + 1 < left; k++) {
            if (kind[k] == ']' && kind[k + 1] == ']') {
                if (fv_fault_parse(kind, k, &out->prompt_fault))
                    return set_error(err, 400, "invalid_request_error", "unknown_fault", "messages",
                                     "unknown fault marker [[fault:%.*s]]; kinds: none %s", (int)LV_MIN(k, 40),
                                     kind, fv_fault_list());
                out->has_prompt_fault = true;
                return 0;
            }
        }
        return 0; /* no closing "]]": not a marker */
    }
    return 0;
}

static size_t count_words(const char *s, size_t n)
{
    size_t words = 0;
    bool in_word = false;
    for (size_t i = 0; i < n; i++) {
        bool space = s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v';
        if (!space && !in_word)
            words++;
        in_word = !space;
    }
    return words;
}

static int hash_prompt(const char *s, size_t n, char out[9])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(s, n, md, &md_len, EVP_sha256(), NULL) || md_len < 4)
        return LV_EIO;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 4; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[8] = '\0';
    return 0;
}

/* Reads the last user message: text parts into prompt, the first image part into out. */
static int read_user_message(json_t *content, const lifted_t *lift, lv_buf_t *prompt, fv_chat_request_t *out,
                             fv_error_t *err)
{
    if (json_is_string(content))
        return lv_buf_append(prompt, json_string_value(content), json_string_length(content)) ? LV_ENOMEM : 0;
    if (!json_is_array(content))
        return BAD("messages", "the last user message's content must be a string or an array of parts");
    size_t i;
    json_t *part;
    bool first_text = true;
    json_array_foreach(content, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!json_is_object(part) || !type)
            return BAD("messages", "content part %zu must be an object with a string \"type\"", i);
        if (strcmp(type, "text") == 0) {
            json_t *text = json_object_get(part, "text");
            if (!json_is_string(text))
                return BAD("messages", "content part %zu (text) needs a string \"text\"", i);
            if ((!first_text && lv_buf_append(prompt, "\n", 1)) ||
                lv_buf_append(prompt, json_string_value(text), json_string_length(text)))
                return set_error(err, 500, "server_error", "out_of_memory", NULL, "out of memory");
            first_text = false;
        } else if (strcmp(type, "image_url") == 0) {
            json_t *iu = json_object_get(part, "image_url");
            json_t *url = json_is_object(iu) ? json_object_get(iu, "url") : iu;
            if (!json_is_string(url))
                return BAD("messages", "content part %zu (image_url) needs image_url.url", i);
            if (out->has_image)
                continue; /* the first image is the one described */
            int rc = read_image(json_string_value(url), json_string_length(url), lift, out, err);
            if (rc)
                return rc;
        }
        /* other part types (input_audio, ...) are accepted and ignored, as text-only servers do */
    }
    return 0;
}

static int read_options(json_t *root, fv_chat_request_t *out, fv_error_t *err)
{
    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_null(stream)) {
        if (!json_is_boolean(stream))
            return BAD("stream", "stream must be a boolean");
        out->stream = json_is_true(stream);
    }
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return BAD("stream_options", "stream_options must be an object");
        json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_boolean(iu))
            return BAD("stream_options", "stream_options.include_usage must be a boolean");
        out->include_usage = iu && json_is_true(iu);
    }
    static const char *const names[] = {"max_completion_tokens", "max_tokens"};
    for (size_t k = 0; k < LV_ARRAY_LEN(names); k++) {
        json_t *mt = json_object_get(root, names[k]);
        if (!mt || json_is_null(mt))
            continue;
        if (!json_is_integer(mt) || json_integer_value(mt) < 1)
            return BAD(names[k], "%s must be a positive integer", names[k]);
        out->max_tokens = json_integer_value(mt) > 1000000000 ? 1000000000 : (long)json_integer_value(mt);
        break;
    }
    return 0;
}

int fv_chat_parse(const char *body, size_t len, const char *const *models, size_t n_models,
                  fv_chat_request_t *out, fv_error_t *err)
{
    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    lv_buf_t prompt;
    lv_buf_init(&prompt, len + 1);
    int rc;
    json_error_t jerr;
    json_t *root = NULL;
    static char nonce[17]; /* drawn once per process */
    if (!nonce[0] && lv_rand_hex(nonce, sizeof(nonce), 8) != 0)
        nonce[0] = '\0';
    bool have_nonce = nonce[0] != '\0';
    lifted_t lift;
    lift.n = 0;
    memcpy(lift.nonce, nonce, sizeof(nonce));
    char *copy = have_nonce && len >= LIFT_MIN_BYTES ? malloc(len + 1) : NULL;
    if (copy) {
        size_t n = lift_images(body, len, copy, &lift);
        root = json_loadb(copy, n, 0, &jerr);
        free(copy);
    }
    if (!root) {
        lift.n = 0;
        root = json_loadb(body, len, 0, &jerr);
    }
    if (!root) {
        rc = set_error(err, 400, "invalid_request_error", "invalid_json", NULL,
                       "could not parse the JSON body: %s (line %d, column %d)", jerr.text, jerr.line,
                       jerr.column);
        goto out;
    }
    if (!json_is_object(root)) {
        rc = BAD(NULL, "the request body must be a JSON object");
        goto out;
    }
    json_t *model = json_object_get(root, "model");
    if (!json_is_string(model)) {
        rc = BAD("model", "you must provide a model parameter (a string)");
        goto out;
    }
    size_t m;
    for (m = 0; m < n_models; m++) {
        if (strcmp(models[m], json_string_value(model)) == 0)
            break;
    }
    if (m == n_models) {
        rc = set_error(err, 404, "invalid_request_error", "model_not_found", "model",
                       "The model `%.*s` does not exist or you do not have access to it.",
                       (int)LV_MIN(json_string_length(model), 200), json_string_value(model));
        goto out;
    }
    out->model_index = m;
    json_t *messages = json_object_get(root, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        rc = BAD("messages", "messages must be a non-empty array");
        goto out;
    }
    rc = read_options(root, out, err);
    if (rc)
        goto out;
    size_t i;
    json_t *msg, *last_user = NULL;
    json_array_foreach(messages, i, msg) {
        const char *role = json_string_value(json_object_get(msg, "role"));
        if (!json_is_object(msg) || !role) {
            rc = BAD("messages", "messages[%zu] must be an object with a string \"role\"", i);
            goto out;
        }
        if (strcmp(role, "user") == 0)
            last_user = msg;
    }
    if (!last_user) {
        rc = BAD("messages", "messages must contain a user message");
        goto out;
    }
    rc = read_user_message(json_object_get(last_user, "content"), &lift, &prompt, out, err);
    if (rc)
        goto out;
    const char *text = prompt.data ? prompt.data : "";
    if (hash_prompt(text, prompt.len, out->prompt_sha8)) {
        rc = set_error(err, 500, "server_error", "internal_error", NULL, "SHA-256 unavailable");
        goto out;
    }
    out->prompt_words = count_words(text, prompt.len);
    rc = read_prompt_fault(text, prompt.len, out, err);
out:
    json_decref(root);
    lv_buf_free(&prompt);
    return rc;
}

int fv_answer_text(lv_buf_t *out, const char *model, const fv_chat_request_t *req, uint64_t seq,
                   size_t min_words)
{
    static const char *const filler[] = {
        "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
        "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua",
    };
    int rc = lv_buf_printf(out, "fakevlm model=%s prompt=%s image=%zu bytes jpeg=%ux%u seq=%llu. ", model,
                           req->prompt_sha8, req->image_bytes, req->width, req->height, (unsigned long long)seq);
    for (size_t words = FV_HEADER_WORDS; rc == 0 && words < min_words; words++) {
        const char *w = filler[(words - FV_HEADER_WORDS) % LV_ARRAY_LEN(filler)];
        rc = lv_buf_append_str(out, w);
        if (rc == 0)
            rc = lv_buf_append(out, " ", 1);
    }
    return rc;
}

size_t fv_word_len(const char *text, size_t avail)
{
    const char *sp = memchr(text, ' ', avail);
    return sp ? (size_t)(sp - text) + 1 : avail;
}
