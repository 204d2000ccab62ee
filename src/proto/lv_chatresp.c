/* lv_chatresp.c - OpenAI chat.completion(.chunk) parsing: a one-pass scanner of its own for the
 * common chunks (every token chunk, and the finish-reason and usage chunks that end each answer),
 * jansson for everything else. The scanner's
 * escape decoder is deliberately its own: it writes into the chunk's inline buffer without an
 * allocation, and whatever it does not take goes to jansson, which is the reference. */
#include "lv_chatresp.h"

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_utf8.h"

void lv_chatresp_init(lv_chatresp_t *r)
{
    /* the inline buffer is only read after a parse wrote it: zeroing it per chunk is waste */
    memset(r, 0, offsetof(lv_chatresp_t, priv_inline));
    r->content = "";
}

void lv_chatresp_clear(lv_chatresp_t *r)
{
    json_decref((json_t *)r->priv_doc);
    if (r->priv_fast != r->priv_inline)
        free(r->priv_fast);
    lv_chatresp_init(r);
}

/* ---- fast path for the common chunk ----
 * Nearly every chunk of a streamed answer looks like
 *   {"id":"..","object":"chat.completion.chunk",...,"choices":[{"index":0,"delta":{"content":"word"},
 *    "finish_reason":null}]}
 * and each answer ends with
 *   {"id":"..",...,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}
 *   {"id":"..",...,"choices":[],"usage":{"prompt_tokens":N,"completion_tokens":M,"total_tokens":K,...}}
 * Parsing those into a jansson tree costs several allocations each. This scanner walks the text
 * once as a strict JSON grammar, follows the paths to choices[0].delta.content,
 * choices[0].finish_reason and the usage counts, notes where the strings it wants (those two and
 * the top-level "id" and "model") lie, and decodes just those into the struct. It says "not mine"
 * (-1) for anything else, which then takes the full parser: errors, tool calls, more than one
 * choice, a tracked key twice or spelt with escapes, fields of unexpected types, a finish reason
 * that holds an escape, a token count that is not a plain non-negative integer up to INT_MAX
 * (negative, -0, fractional, exponent, too big: the full parser's own verdict on those is subtle
 * enough to leave to it), numbers jansson might refuse (too long), deep nesting, \u0000, and all
 * text that is not JSON. So whatever it accepts, jansson accepts with the same result;
 * lv_chatresp_parse_chunk_full() is the reference the unit test and fuzzer compare with. */

#define FAST_MAX_DEPTH 32 /* chunks nest 4 deep; jansson's own cap is 2048 */

typedef struct {
    const char *p; /* raw bytes between the quotes; NULL: the field was absent, null or no string */
    size_t len;
    int escaped;   /* holds a backslash: decode it, else copy it */
} fast_span_t;

enum { ROLE_OTHER, ROLE_ROOT, ROLE_CHOICES, ROLE_CHOICE, ROLE_DELTA, ROLE_USAGE };

/* Tracked keys, as bits of fast_scan_t.seen: one seen twice is "not mine" (jansson keeps the last
 * of duplicates; not worth copying). Only one choice, one delta and one usage are walked, so one
 * set will do. */
enum {
    SEEN_ID = 1 << 0,
    SEEN_MODEL = 1 << 1,
    SEEN_OBJECT = 1 << 2,
    SEEN_CHOICES = 1 << 3,
    SEEN_USAGE = 1 << 4,
    SEEN_FINISH = 1 << 5,
    SEEN_DELTA = 1 << 6,
    SEEN_CONTENT = 1 << 7,
    SEEN_PROMPT = 1 << 8,
    SEEN_COMPLETION = 1 << 9,
};

typedef struct {
    const char *p, *end;
    fast_span_t content, id, model, finish;
    unsigned seen;
    int has_usage; /* "usage" was an object */
    int prompt_tokens, completion_tokens;
} fast_scan_t;

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Four hex digits at h (the caller checked they are there); > 0xFFFF when one is not hex. */
static unsigned hex4(const char *h)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hexval(h[i]);
        if (d < 0)
            return 0x10000;
        v = v * 16 + (unsigned)d;
    }
    return v;
}

/* The escape at p (its backslash), p < end: *cp and its length in the text; 0 when jansson would
 * refuse it (an unknown escape, a lone or unpaired surrogate) or it is \u0000, which jansson refuses
 * without JSON_ALLOW_NUL and which the full parser should be the one to report. */
static size_t fast_escape(const char *p, const char *end, unsigned *cp)
{
    if (end - p < 2)
        return 0;
    switch (p[1]) {
    case '"': *cp = '"'; return 2;
    case '\\': *cp = '\\'; return 2;
    case '/': *cp = '/'; return 2;
    case 'b': *cp = '\b'; return 2;
    case 'f': *cp = '\f'; return 2;
    case 'n': *cp = '\n'; return 2;
    case 'r': *cp = '\r'; return 2;
    case 't': *cp = '\t'; return 2;
    case 'u': break;
    default: return 0;
    }
    if (end - p < 6)
        return 0;
    unsigned hi = hex4(p + 2);
    if (hi > 0xFFFF || hi == 0 || (hi >= 0xDC00 && hi <= 0xDFFF))
        return 0;
    if (hi < 0xD800 || hi > 0xDBFF) {
        *cp = hi;
        return 6;
    }
    /* RFC 8259 section 7: a character outside the BMP is a UTF-16 surrogate pair of escapes */
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u')
        return 0;
    unsigned lo = hex4(p + 8);
    if (lo < 0xDC00 || lo > 0xDFFF)
        return 0;
    *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    return 12;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode a span fast_string() checked into out (room for sp->len + 1: decoding never lengthens)
 * and NUL-terminate it; returns the decoded length. */
static size_t fast_decode(const fast_span_t *sp, char *out)
{
    const char *p = sp->p, *end = sp->p + sp->len;
    size_t o = 0;
    if (!sp->escaped) {
        memcpy(out, p, sp->len);
        o = sp->len;
        goto out;
    }
    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        size_t run = bs ? (size_t)(bs - p) : (size_t)(end - p);
        memcpy(out + o, p, run);
        o += run;
        p += run;
        if (!bs)
            break;
        unsigned cp = 0;
        p += fast_escape(p, end, &cp); /* checked, so never 0 */
        o += put_utf8(out + o, cp);
    }
out:
    out[o] = '\0';
    return o;
}

static void fast_ws(fast_scan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* s->p at an opening quote. Checks the string as jansson's lexer does (no control bytes, known
 * escapes, paired surrogates, UTF-8 by RFC 3629) and leaves s->p past the closing quote; out (may
 * be NULL) gets the raw span. */
static int fast_string(fast_scan_t *s, fast_span_t *out)
{
    const char *start = s->p + 1, *p = start, *end = s->end;
    int escaped = 0;
    for (;;) {
        /* the bulk of a chunk is plain ASCII inside strings: skip it eight bytes at a time while
         * none is a quote, a backslash, a control byte or non-ASCII (the "has a zero byte" trick:
         * exact as to whether one matches, which is all this asks) */
        while (end - p >= 8) {
            const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
            uint64_t w, q, b;
            memcpy(&w, p, 8);
            q = w ^ (ones * '"');
            b = w ^ (ones * '\\');
            if ((((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w) | w) & highs)
                break;
            p += 8;
        }
        while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p >= end)
            return -1;
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c == '\\') {
            unsigned cp;
            size_t k = fast_escape(p, end, &cp);
            if (!k)
                return -1;
            p += k;
            escaped = 1;
            continue;
        }
        if (c < 0x80)
            return -1; /* a raw control byte, NUL included */
        size_t k = lv_utf8_seq_len(p, (size_t)(end - p));
        if (!k)
            return -1;
        p += k;
    }
    if (out) {
        out->p = start;
        out->len = (size_t)(p - start);
        out->escaped = escaped;
    }
    s->p = p + 1;
    return 0;
}

static int is_digit(const char *p, const char *end) { return p < end && *p >= '0' && *p <= '9'; }

/* RFC 8259 section 6 number, and only one jansson is sure to take: an integer of at most 18 digits
 * (json_int_t holds it; jansson refuses one that overflows), a real no bigger than 1e300 (jansson
 * refuses one that overflows a double). */
static int fast_number(fast_scan_t *s)
{
    const char *p = s->p, *end = s->end;
    int real = 0;
    long exp = 0;
    if (p < end && *p == '-')
        p++;
    const char *digits = p;
    if (!is_digit(p, end))
        return -1;
    if (*p == '0')
        p++;
    else
        while (is_digit(p, end))
            p++;
    size_t int_digits = (size_t)(p - digits);
    if (is_digit(p, end))
        return -1; /* a leading zero */
    if (p < end && *p == '.') {
        real = 1;
        if (!is_digit(++p, end))
            return -1;
        while (is_digit(p, end))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        int neg = 0;
        real = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            neg = *p++ == '-';
        if (!is_digit(p, end))
            return -1;
        for (int i = 0; is_digit(p, end); i++, p++) {
            if (i == 3)
                return -1;
            exp = exp * 10 + (*p - '0');
        }
        if (neg)
            exp = -exp;
    }
    if (real ? (long)int_digits + exp > 300 : int_digits > 18)
        return -1;
    s->p = p;
    return 0;
}

static int fast_literal(fast_scan_t *s, const char *lit, size_t len)
{
    if ((size_t)(s->end - s->p) < len || memcmp(s->p, lit, len) != 0)
        return -1;
    s->p += len;
    return 0;
}

static int fast_null(fast_scan_t *s) { return fast_literal(s, "null", 4) == 0; }

/* A usage token count as the full parser's opt_count() reads it, but only where that is plain:
 * null (0), or 1 to 10 digits without a leading zero, no fraction or exponent, at most INT_MAX.
 * Anything else (negative, -0, 1.0, 1e2, past INT_MAX, a string) is "not mine": jansson's integer
 * and real rules decide whether it is LV_EPARSE. A '.' or exponent after the digits would also
 * fail the object grammar that follows; refusing it here keeps this a whole number token. */
static int fast_count(fast_scan_t *s, int *out)
{
    const char *p = s->p, *end = s->end;
    uint64_t v = 0;
    *out = 0;
    if (fast_null(s))
        return 0;
    if (!is_digit(p, end) || (*p == '0' && is_digit(p + 1, end)))
        return -1;
    for (int i = 0; is_digit(p, end); i++, p++) {
        if (i == 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v > INT_MAX || (p < end && (*p == '.' || *p == 'e' || *p == 'E')))
        return -1;
    *out = (int)v;
    s->p = p;
    return 0;
}

static int fast_object(fast_scan_t *s, int depth, int role);
static int fast_array(fast_scan_t *s, int depth, int role);

/* Any value, s->p at its first byte; role says what an object or array here is on the path. */
static int fast_value(fast_scan_t *s, int depth, int role)
{
    if (s->p >= s->end)
        return -1;
    switch (*s->p) {
    case '{': return fast_object(s, depth + 1, role);
    case '[': return fast_array(s, depth + 1, role);
    case '"': return fast_string(s, NULL);
    case 't': return fast_literal(s, "true", 4);
    case 'f': return fast_literal(s, "false", 5);
    case 'n': return fast_literal(s, "null", 4);
    default: return fast_number(s);
    }
}

/* A string we want (id, model, content): its span; or, where only_string is 0, any other value
 * (the field then reads as absent, as opt-string reading in the full parser does for id/model). */
static int fast_want_string(fast_scan_t *s, int depth, fast_span_t *out, int only_string)
{
    if (s->p < s->end && *s->p == '"')
        return fast_string(s, out);
    if (only_string)
        return fast_null(s) ? 0 : -1;
    return fast_value(s, depth, ROLE_OTHER);
}

static int key_is(const fast_span_t *k, const char *lit, size_t len)
{
    return k->len == len && memcmp(k->p, lit, len) == 0;
}
#define KEY_IS(k, lit) key_is((k), lit, sizeof(lit) - 1)

/* One member's value, s->p at it; the key tells what it is when the object is on the path. */
static int fast_member(fast_scan_t *s, int depth, int role, const fast_span_t *key)
{
    unsigned bit = 0;
    if (KEY_IS(key, "error") || KEY_IS(key, "tool_calls"))
        return -1; /* at any depth, as the scanner before this one: never a plain token */
    if (role == ROLE_ROOT) {
        if (KEY_IS(key, "id"))
            bit = SEEN_ID;
        else if (KEY_IS(key, "model"))
            bit = SEEN_MODEL;
        else if (KEY_IS(key, "object"))
            bit = SEEN_OBJECT;
        else if (KEY_IS(key, "choices"))
            bit = SEEN_CHOICES;
        else if (KEY_IS(key, "usage"))
            bit = SEEN_USAGE;
    } else if (role == ROLE_CHOICE) {
        if (KEY_IS(key, "finish_reason"))
            bit = SEEN_FINISH;
        else if (KEY_IS(key, "delta"))
            bit = SEEN_DELTA;
    } else if (role == ROLE_DELTA && KEY_IS(key, "content")) {
        bit = SEEN_CONTENT;
    } else if (role == ROLE_USAGE) {
        if (KEY_IS(key, "prompt_tokens"))
            bit = SEEN_PROMPT;
        else if (KEY_IS(key, "completion_tokens"))
            bit = SEEN_COMPLETION;
    }
    if (!bit)
        return fast_value(s, depth, ROLE_OTHER);
    if (s->seen & bit)
        return -1;
    s->seen |= bit;
    switch (bit) {
    case SEEN_ID: return fast_want_string(s, depth, &s->id, 0);
    case SEEN_MODEL: return fast_want_string(s, depth, &s->model, 0);
    case SEEN_CONTENT: return fast_want_string(s, depth, &s->content, 1);
    case SEEN_OBJECT: {
        fast_span_t v = {0};
        if (fast_want_string(s, depth, &v, 0) != 0)
            return -1;
        /* older vLLM's error object; an escaped spelling is left to the full parser */
        return v.p && (v.escaped || KEY_IS(&v, "error")) ? -1 : 0;
    }
    case SEEN_CHOICES:
        if (s->p < s->end && *s->p == '[')
            return fast_array(s, depth + 1, ROLE_CHOICES);
        return fast_null(s) ? 0 : -1;
    case SEEN_DELTA:
        if (s->p < s->end && *s->p == '{')
            return fast_object(s, depth + 1, ROLE_DELTA);
        return fast_null(s) ? 0 : -1;
    case SEEN_FINISH:
        /* "stop", "length", ...: plain ASCII in every backend; one with an escape, or of another
         * type (a type error for the full parser), is left to jansson */
        if (fast_want_string(s, depth, &s->finish, 1) != 0)
            return -1;
        return s->finish.p && s->finish.escaped ? -1 : 0;
    case SEEN_USAGE:
        if (s->p < s->end && *s->p == '{') {
            s->has_usage = 1;
            return fast_object(s, depth + 1, ROLE_USAGE);
        }
        return fast_null(s) ? 0 : -1;
    case SEEN_PROMPT: return fast_count(s, &s->prompt_tokens);
    case SEEN_COMPLETION: return fast_count(s, &s->completion_tokens);
    default: return -1;
    }
}

static int fast_object(fast_scan_t *s, int depth, int role)
{
    if (depth > FAST_MAX_DEPTH)
        return -1;
    s->p++; /* '{' */
    fast_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        fast_span_t key;
        if (s->p >= s->end || *s->p != '"' || fast_string(s, &key) != 0)
            return -1;
        if (key.escaped)
            return -1; /* "\u0069d" is "id" too: not worth decoding keys for */
        fast_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return -1;
        s->p++;
        fast_ws(s);
        if (fast_member(s, depth, role, &key) != 0)
            return -1;
        fast_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == '}') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return -1;
        s->p++;
        fast_ws(s);
    }
}

static int fast_array(fast_scan_t *s, int depth, int role)
{
    if (depth > FAST_MAX_DEPTH)
        return -1;
    s->p++; /* '[' */
    fast_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (int i = 0;; i++) {
        if (role == ROLE_CHOICES) {
            /* one choice (n=1), an object: more, or anything else, is the full parser's */
            if (i > 0 || s->p >= s->end || *s->p != '{' || fast_object(s, depth + 1, ROLE_CHOICE) != 0)
                return -1;
        } else if (fast_value(s, depth, ROLE_OTHER) != 0) {
            return -1;
        }
        fast_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == ']') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return -1;
        s->p++;
        fast_ws(s);
    }
}

static int fast_chunk(lv_chatresp_t *r, const char *p, size_t n)
{
    fast_scan_t s = {.p = p, .end = p + n};
    fast_ws(&s);
    if (s.p >= s.end || *s.p != '{' || fast_object(&s, 1, ROLE_ROOT) != 0)
        return -1;
    fast_ws(&s);
    if (s.p != s.end)
        return -1;
    /* decoded strings are never longer than their JSON form */
    size_t need = s.content.len + s.id.len + s.model.len + s.finish.len + 4;
    char *buf = need <= sizeof r->priv_inline ? r->priv_inline : malloc(need);
    if (!buf)
        return -1;
    r->priv_fast = buf;
    if (s.content.p) {
        r->content = buf;
        r->content_len = fast_decode(&s.content, buf);
        buf += r->content_len + 1;
    }
    if (s.id.p) {
        r->id = buf;
        buf += fast_decode(&s.id, buf) + 1;
    }
    if (s.model.p) {
        r->model = buf;
        buf += fast_decode(&s.model, buf) + 1;
    }
    if (s.finish.p) {
        r->finish_reason = buf;
        fast_decode(&s.finish, buf);
    }
    r->has_usage = s.has_usage;
    r->prompt_tokens = s.prompt_tokens;
    r->completion_tokens = s.completion_tokens;
    return 0;
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

static int parse_chunk(lv_chatresp_t *r, const char *p, size_t n, size_t max_bytes, int try_fast)
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
    if (try_fast && fast_chunk(r, p, n) == 0)
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

int lv_chatresp_parse_chunk(lv_chatresp_t *r, const char *p, size_t n, size_t max_bytes)
{
    return parse_chunk(r, p, n, max_bytes, 1);
}

int lv_chatresp_parse_chunk_full(lv_chatresp_t *r, const char *p, size_t n, size_t max_bytes)
{
    return parse_chunk(r, p, n, max_bytes, 0);
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
