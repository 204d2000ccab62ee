/* lv_statefile.c - encode and parse the session state file (format in lv_statefile.h). */
#include "lv_statefile.h"

#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_json_str.h"

#define FORMAT_NAME "livevlm-sessions"
#define SHA256_HEX_LEN 64

/* ---------- lines and snapshots ---------- */

lv_statefile_line_t *lv_statefile_line_ref(lv_statefile_line_t *line)
{
    line->refs++;
    return line;
}

void lv_statefile_line_unref(lv_statefile_line_t *line)
{
    if (line && --line->refs == 0)
        free(line);
}

int lv_statefile_snap_add(lv_statefile_snap_t *snap, lv_statefile_line_t *line)
{
    if (snap->n == snap->cap) {
        size_t cap = snap->cap ? 2 * snap->cap : 64;
        lv_statefile_line_t **p = realloc(snap->lines, cap * sizeof(*p));
        if (!p)
            return LV_ENOMEM;
        snap->lines = p;
        snap->cap = cap;
    }
    snap->lines[snap->n++] = lv_statefile_line_ref(line);
    snap->bytes += line->len;
    return 0;
}

void lv_statefile_snap_clear(lv_statefile_snap_t *snap)
{
    for (size_t i = 0; i < snap->n; i++)
        lv_statefile_line_unref(snap->lines[i]);
    free(snap->lines);
    memset(snap, 0, sizeof(*snap));
}

void lv_statefile_session_clear(lv_statefile_session_t *s)
{
    for (size_t i = 0; i < s->n_answers && i < LV_STATEFILE_ANSWERS_MAX; i++) {
        free(s->answers[i].text);
        s->answers[i].text = NULL;
    }
    s->n_answers = 0;
}

/* ---------- encoding ---------- */

/* A session line is written straight into one buffer, not built as a jansson tree and dumped: with
 * every session answering once a second, each is re-encoded about once a second, and the tree cost
 * ~80 heap calls per line (a third of livevlm's mallocs at 200 sessions, bench/scenarios/allocs.sh).
 * The bytes are those json_dumps(JSON_COMPACT) wrote for the same object (keys in this order,
 * numbers as jansson prints them), except that control characters are escaped in lower case
 * (\u001b where jansson wrote \u001B), so files written before and after read the same; the unit
 * test compares the two encoders byte for byte on text without control characters. */

/* ,"key": as one literal and its length, two arguments of the put_* below (the separator first:
 * an object's first member then gets its '{' written over it) */
#define KEY(name) ",\"" name "\":", sizeof(",\"" name "\":") - 1

/* A string value; LV_EINVAL when it is not UTF-8 (json_string refused those too). */
static int put_str(lv_buf_t *b, const char *key, size_t key_len, const char *v)
{
    int rc = lv_buf_append(b, key, key_len);
    return rc ? rc : lv_json_str_append(b, v, strlen(v));
}

static int put_u64(lv_buf_t *b, const char *key, size_t key_len, uint64_t v)
{
    if (v > INT64_MAX) /* JSON readers (jansson's included) stop at int64 */
        return LV_EINVAL;
    int rc = lv_buf_append(b, key, key_len);
    return rc ? rc : lv_buf_append_u64(b, v);
}

static int put_int(lv_buf_t *b, const char *key, size_t key_len, int v)
{
    if (v >= 0)
        return put_u64(b, key, key_len, (uint64_t)v);
    int rc = lv_buf_append(b, key, key_len);
    if (!rc)
        rc = lv_buf_append(b, "-", 1);
    return rc ? rc : lv_buf_append_u64(b, (uint64_t)(-(int64_t)v));
}

static int put_bool(lv_buf_t *b, const char *key, size_t key_len, bool v)
{
    int rc = lv_buf_append(b, key, key_len);
    return rc ? rc : (v ? lv_buf_append(b, "true", 4) : lv_buf_append(b, "false", 5));
}

/* A real as jansson writes it (jsonp_dtostr): %.17g, ".0" added when it would read back as an
 * integer, the exponent without '+' or leading zeros. LV_EINVAL for NaN and infinities, which JSON
 * has no word for (json_real refused them). */
static int put_real(lv_buf_t *b, const char *key, size_t key_len, double v)
{
    char num[40], out[48];
    size_t o;
    if (!isfinite(v))
        return LV_EINVAL;
    int rc = lv_buf_append(b, key, key_len);
    if (rc)
        return rc;
    /* a whole number below 1e17 (17 digits at most) is what %.17g prints in plain decimal, so its
     * digits are written without printf; -0 (signbit) keeps printf's "-0" */
    if (v >= 0 && v < 1e17 && !signbit(v) && v == (double)(uint64_t)v) {
        if ((rc = lv_buf_append_u64(b, (uint64_t)v)) == 0)
            rc = lv_buf_append(b, ".0", 2);
        return rc;
    }
    int n = snprintf(num, sizeof(num), "%.17g", v);
    if (n <= 0 || (size_t)n >= sizeof(num))
        return LV_EINVAL;
    const char *e = memchr(num, 'e', (size_t)n);
    if (!e) {
        memcpy(out, num, (size_t)n);
        o = (size_t)n;
        if (!memchr(num, '.', (size_t)n)) {
            memcpy(out + o, ".0", 2);
            o += 2;
        }
    } else {
        const char *d = e + 1;
        o = (size_t)(d - num);
        memcpy(out, num, o);
        if (*d == '-')
            out[o++] = *d++;
        else if (*d == '+')
            d++;
        while (*d == '0' && d[1])
            d++;
        while (*d)
            out[o++] = *d++;
    }
    return lv_buf_append(b, out, o);
}

/* A duration: one that is not a finite, non-negative number is saved as 0. */
static int put_ms(lv_buf_t *b, const char *key, size_t key_len, double v)
{
    return put_real(b, key, key_len, isfinite(v) && v >= 0 ? v : 0.0);
}

/* A history text cut at a byte cap may end inside a UTF-8 sequence, which JSON cannot carry: drop
 * the (at most 3) bytes of the cut sequence rather than the whole answer. */
static int put_text(lv_buf_t *b, const char *text, size_t len)
{
    int rc = lv_buf_append(b, KEY("text"));
    if (rc || !text)
        return rc ? rc : lv_buf_append(b, "\"\"", 2);
    if (len > LV_STATEFILE_TEXT_MAX)
        len = LV_STATEFILE_TEXT_MAX;
    for (size_t cut = 0; cut <= 3 && cut <= len; cut++)
        if ((rc = lv_json_str_append(b, text, len - cut)) != LV_EINVAL)
            return rc;
    return lv_buf_append(b, "\"\"", 2); /* invalid inside: never produced by a backend reply, which was JSON */
}

static int put_settings(lv_buf_t *b, const lv_settings_t *st)
{
    /* the fields and order of lv_settings_to_json (the page's and the job message's form) */
    int rc = put_str(b, KEY("prompt"), st->prompt);
    if (!rc)
        rc = put_int(b, KEY("max_tokens"), st->max_tokens);
    if (!rc)
        rc = put_real(b, KEY("temperature"), st->temperature);
    if (!rc)
        rc = put_int(b, KEY("interval_ms"), st->interval_ms);
    if (!rc)
        rc = put_str(b, KEY("backend"), st->backend);
    if (!rc)
        rc = put_str(b, KEY("model"), st->model);
    if (!rc)
        rc = put_int(b, KEY("frame_max_side"), st->frame_max_side);
    if (!rc)
        rc = put_int(b, KEY("jpeg_quality"), st->jpeg_quality);
    if (!rc)
        rc = put_int(b, KEY("stats_interval_ms"), st->stats_interval_ms);
    if (!rc)
        rc = put_bool(b, KEY("debug"), st->debug);
    if (!rc)
        rc = put_str(b, KEY("source"), st->source);
    return rc;
}

int lv_statefile_encode_answer(const lv_statefile_answer_t *a, lv_buf_t *out)
{
    size_t open_at = out->len;
    /* the first put_* writes a ',' that the '{' is written over */
    int rc = put_u64(out, KEY("answer_id"), a->answer_id);
    if (!rc) {
        out->data[open_at] = '{';
        rc = put_u64(out, KEY("wall_ms"), a->wall_ms);
    }
    if (!rc)
        rc = put_ms(out, KEY("latency_ms"), a->latency_ms);
    if (!rc)
        rc = put_text(out, a->text, a->text_len);
    if (!rc)
        rc = lv_buf_append(out, "}", 1);
    if (rc)
        lv_buf_truncate(out, open_at);
    return rc;
}

/* Room for the line: the fixed fields, plus 6 bytes per byte of text (the longest escape), or the
 * exact size of an entry already encoded; at least the caller's hint (the previous line). */
static size_t line_estimate(const lv_statefile_session_t *s)
{
    size_t n = 1024 + 6 * (sizeof(s->rec.settings.prompt) / 4);
    for (size_t i = 0; i < s->n_answers && i < LV_STATEFILE_ANSWERS_MAX; i++) {
        const lv_statefile_answer_t *a = &s->answers[i];
        n += a->json ? a->json_len + 1 : 128 + LV_MIN(a->text_len, (size_t)LV_STATEFILE_TEXT_MAX) * 5 / 4;
    }
    return LV_MIN(LV_MAX(n, s->size_hint), (size_t)LV_STATEFILE_LINE_MAX - 1); /* "\n" is spare */
}

int lv_statefile_encode_session(const lv_statefile_session_t *s, lv_statefile_line_t **out)
{
    lv_buf_t b;
    int rc;
    *out = NULL;
    if (s->n_answers > LV_STATEFILE_ANSWERS_MAX)
        return LV_ELIMIT;
    /* the header's room sits in front of the JSON, so the buffer becomes the line with no copy */
    const size_t head = offsetof(lv_statefile_line_t, data);
    lv_buf_init(&b, head + LV_STATEFILE_LINE_MAX - 1); /* the final "\n" is the buffer's spare byte */
    static const char room[offsetof(lv_statefile_line_t, data)];
    if ((rc = lv_buf_reserve(&b, head + line_estimate(s))) != 0 || (rc = lv_buf_append(&b, room, head)) != 0)
        goto out;
    /* the first put_* writes a ',' that the '{' is written over */
    size_t open_at = b.len;
    rc = put_str(&b, KEY("id"), s->rec.id);
    if (!rc)
        b.data[open_at] = '{';
    if (!rc)
        rc = put_str(&b, KEY("secret_sha256"), s->rec.secret_hash);
    if (!rc)
        rc = put_str(&b, KEY("owner"), s->rec.principal);
    if (!rc)
        rc = put_str(&b, KEY("tenant"), s->rec.tenant[0] ? s->rec.tenant : "default");
    if (!rc)
        rc = put_u64(&b, KEY("created_ms"), s->rec.created_ms);
    if (!rc)
        rc = put_u64(&b, KEY("last_seen_ms"), s->last_seen_ms);
    if (!rc)
        rc = put_bool(&b, KEY("attached"), s->attached);
    if (!rc)
        rc = put_bool(&b, KEY("started"), s->rec.started);
    if (!rc)
        rc = put_u64(&b, KEY("answer_seq"), s->answer_seq);
    if (!rc)
        rc = put_u64(&b, KEY("total_inferences"), s->rec.total_inferences);
    if (!rc)
        rc = put_ms(&b, KEY("avg_latency_ms"), s->rec.avg_latency_ms);
    if (!rc && (rc = lv_buf_append(&b, KEY("settings"))) == 0) {
        open_at = b.len;
        if ((rc = put_settings(&b, &s->rec.settings)) == 0) {
            b.data[open_at] = '{';
            rc = lv_buf_append(&b, "}", 1);
        }
    }
    if (!rc)
        rc = lv_buf_append(&b, ",\"history\":[", sizeof(",\"history\":[") - 1);
    for (size_t i = 0; !rc && i < s->n_answers; i++) {
        const lv_statefile_answer_t *a = &s->answers[i];
        if (i && (rc = lv_buf_append(&b, ",", 1)) != 0)
            break;
        /* an entry the caller keeps encoded is copied: the same bytes, without the formatting */
        rc = a->json ? lv_buf_append(&b, a->json, a->json_len) : lv_statefile_encode_answer(a, &b);
    }
    if (!rc)
        rc = lv_buf_append(&b, "]}", 2);
    if (rc)
        goto out;
    /* compact output has no raw newline: strings escape theirs, so one session is one line */
    size_t len = b.len - head;
    b.data[b.len] = '\n'; /* the spare byte lv_buf keeps past len */
    lv_statefile_line_t *line = realloc(b.data, head + len + 1); /* give back the estimate's slack */
    if (!line)
        line = (lv_statefile_line_t *)(void *)b.data;
    b.data = NULL;
    line->refs = 1;
    line->len = len + 1;
    *out = line;
out:
    lv_buf_free(&b);
    return rc == LV_ELIMIT || rc == LV_ENOMEM || rc == 0 ? rc : LV_EINVAL;
}

/* ---------- the whole file ---------- */

static void hex_of(const unsigned char *md, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[2 * n] = '\0';
}

int lv_statefile_emit(const lv_statefile_snap_t *snap, lv_statefile_sink_fn sink, void *ud)
{
    int rc = 0;
    char buf[160], hex[SHA256_HEX_LEN + 1];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        rc = LV_ENOMEM;
        goto out;
    }
    int n = snprintf(buf, sizeof(buf), "{\"format\":\"%s\",\"version\":%d,\"saved_ms\":%llu,\"sessions\":%zu}\n",
                     FORMAT_NAME, LV_STATEFILE_VERSION, (unsigned long long)snap->saved_ms, snap->n);
    if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) {
        rc = LV_EIO;
        goto out;
    }
    if ((rc = sink(ud, buf, (size_t)n)) != 0)
        goto out;
    for (size_t i = 0; i < snap->n; i++) {
        const lv_statefile_line_t *l = snap->lines[i];
        if (EVP_DigestUpdate(ctx, l->data, l->len) != 1) {
            rc = LV_EIO;
            goto out;
        }
        if ((rc = sink(ud, l->data, l->len)) != 0)
            goto out;
    }
    if (EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len != SHA256_HEX_LEN / 2) {
        rc = LV_EIO;
        goto out;
    }
    hex_of(md, md_len, hex);
    n = snprintf(buf, sizeof(buf), "{\"sha256\":\"%s\"}\n", hex);
    rc = sink(ud, buf, (size_t)n);
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* ---------- parsing ---------- */

#define FAIL(code, reason)                                                                                             \
    do {                                                                                                               \
        rc = (code);                                                                                                   \
        *why = (reason);                                                                                               \
        goto out;                                                                                                      \
    } while (0)

static bool is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static int get_u64(const json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return LV_EPARSE;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_ms(const json_t *o, const char *key, double *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v) || !(json_number_value(v) >= 0))
        return LV_EPARSE;
    *out = json_number_value(v);
    return 0;
}

static int get_bool(const json_t *o, const char *key, bool *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        return LV_EPARSE;
    *out = json_is_true(v);
    return 0;
}

/* A string of min..size-1 bytes into dst (jansson refuses "\u0000", so it has no inner NUL). */
static int get_str(const json_t *o, const char *key, char *dst, size_t size, size_t min)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return LV_EPARSE;
    size_t n = json_string_length(v);
    if (n < min || n >= size)
        return LV_EPARSE;
    memcpy(dst, json_string_value(v), n + 1);
    return 0;
}

/* One session line into *s (texts owned). On error *s holds nothing to free. */
static int decode_session(const char *p, size_t n, lv_statefile_session_t *s, const char **why)
{
    int rc = LV_EPARSE;
    json_t *o = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
    memset(s, 0, sizeof(*s));
    if (!json_is_object(o))
        FAIL(LV_EPARSE, "a session line is not a JSON object");
    if (get_str(o, "id", s->rec.id, sizeof(s->rec.id), LV_SESSION_ID_LEN) ||
        !is_lower_hex(s->rec.id, LV_SESSION_ID_LEN))
        FAIL(LV_EPARSE, "a session id is not 32 hex digits");
    if (get_str(o, "secret_sha256", s->rec.secret_hash, sizeof(s->rec.secret_hash), LV_SECRET_HASH_LEN) ||
        !is_lower_hex(s->rec.secret_hash, LV_SECRET_HASH_LEN))
        FAIL(LV_EPARSE, "a secret hash is not 64 hex digits");
    if (get_str(o, "owner", s->rec.principal, sizeof(s->rec.principal), 1))
        FAIL(LV_EPARSE, "a session owner is missing or too long");
    /* lines written before tenants existed have none: the default tenant */
    if (!json_object_get(o, "tenant"))
        snprintf(s->rec.tenant, sizeof(s->rec.tenant), "default");
    else if (get_str(o, "tenant", s->rec.tenant, sizeof(s->rec.tenant), 1))
        FAIL(LV_EPARSE, "a session tenant is not a string of 1..32 bytes");
    if (get_u64(o, "created_ms", &s->rec.created_ms) || get_u64(o, "last_seen_ms", &s->last_seen_ms) ||
        get_u64(o, "answer_seq", &s->answer_seq) || get_u64(o, "total_inferences", &s->rec.total_inferences) ||
        get_ms(o, "avg_latency_ms", &s->rec.avg_latency_ms) || get_bool(o, "attached", &s->attached) ||
        get_bool(o, "started", &s->rec.started))
        FAIL(LV_EPARSE, "a session field is missing or has the wrong type");
    json_t *settings = json_object_get(o, "settings");
    if (!json_is_object(settings))
        FAIL(LV_EPARSE, "a session has no settings object");
    /* the same validation as a client's update; a value a newer rule refuses resets the settings
     * rather than losing the session */
    lv_settings_defaults(&s->rec.settings);
    if (lv_settings_apply_json(&s->rec.settings, settings, NULL, NULL) != 0) {
        lv_settings_defaults(&s->rec.settings);
        s->settings_reset = true;
    }
    json_t *hist = json_object_get(o, "history");
    if (!json_is_array(hist))
        FAIL(LV_EPARSE, "a session has no history array");
    if (json_array_size(hist) > LV_STATEFILE_ANSWERS_MAX)
        FAIL(LV_ELIMIT, "a session has more history entries than the cap");
    for (size_t i = 0; i < json_array_size(hist); i++) {
        json_t *e = json_array_get(hist, i);
        lv_statefile_answer_t *a = &s->answers[i];
        json_t *t = json_object_get(e, "text");
        if (!json_is_object(e) || get_u64(e, "answer_id", &a->answer_id) || get_u64(e, "wall_ms", &a->wall_ms) ||
            get_ms(e, "latency_ms", &a->latency_ms) || !json_is_string(t))
            FAIL(LV_EPARSE, "a history entry is malformed");
        a->text_len = json_string_length(t);
        if (a->text_len > LV_STATEFILE_TEXT_MAX)
            FAIL(LV_ELIMIT, "a history text is longer than the cap");
        a->text = malloc(a->text_len + 1);
        if (!a->text)
            FAIL(LV_ENOMEM, "out of memory");
        memcpy(a->text, json_string_value(t), a->text_len + 1);
        s->n_answers = i + 1;
    }
    rc = 0;
out:
    if (rc)
        lv_statefile_session_clear(s);
    json_decref(o);
    return rc;
}

int lv_statefile_parse_line(const char *data, size_t len, uint64_t now_wall_ms, lv_statefile_session_t *out,
                            const char **why)
{
    int rc = 0;
    const char *why_local = NULL;
    if (!why)
        why = &why_local;
    *why = NULL;
    memset(out, 0, sizeof(*out));
    if (len > 0 && data[len - 1] == '\n')
        len--;
    /* the file's walk splits at newlines, so none of its session lines holds one: neither may this */
    if (len > LV_STATEFILE_LINE_MAX)
        FAIL(LV_ELIMIT, "a line is longer than the cap");
    if (memchr(data, '\n', len))
        FAIL(LV_EPARSE, "a session line holds a newline");
    if ((rc = decode_session(data, len, out, why)) != 0)
        goto out;
    uint64_t seen = out->attached ? now_wall_ms : out->last_seen_ms;
    out->age_ms = now_wall_ms > seen ? now_wall_ms - seen : 0;
out:
    return rc;
}

/* Walk the lines before the checksum line. With deliver false it only validates; with deliver
 * true (only after a clean validation) it hands live sessions to cb and fills stats. */
static int walk(const char *data, size_t body_len, const lv_statefile_limits_t *lim, uint64_t now_ms,
                lv_statefile_cb_t cb, void *ud, lv_statefile_stats_t *st, bool deliver, const char **why)
{
    int rc = 0;
    size_t pos = 0, line_no = 0, declared = 0;
    uint64_t saved_ms = 0;
    json_t *head = NULL;
    lv_statefile_session_t *s = malloc(sizeof(*s));
    if (!s)
        FAIL(LV_ENOMEM, "out of memory");
    while (pos < body_len) {
        const char *p = data + pos;
        const char *nl = memchr(p, '\n', body_len - pos);
        size_t n = (size_t)(nl - p); /* body_len ends at a newline, so nl is never NULL */
        pos += n + 1;
        if (n > LV_STATEFILE_LINE_MAX)
            FAIL(LV_ELIMIT, "a line is longer than the cap");
        if (line_no++ == 0) {
            uint64_t version = 0, count = 0;
            head = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
            const char *format = json_string_value(json_object_get(head, "format"));
            if (!format || strcmp(format, FORMAT_NAME) != 0)
                FAIL(LV_EINVAL, "not a livevlm session file");
            if (get_u64(head, "version", &version) || version != LV_STATEFILE_VERSION)
                FAIL(LV_EINVAL, "written by another version of livevlm (unsupported format version)");
            if (get_u64(head, "saved_ms", &saved_ms) || get_u64(head, "sessions", &count))
                FAIL(LV_EPARSE, "the header is malformed");
            if (count > body_len / 2)
                FAIL(LV_EPARSE, "the header's session count does not match the file");
            declared = (size_t)count;
            continue;
        }
        if ((rc = decode_session(p, n, s, why)) != 0)
            goto out;
        if (deliver) {
            uint64_t seen = s->attached ? saved_ms : s->last_seen_ms;
            s->age_ms = now_ms > seen ? now_ms - seen : 0;
            if (lim->idle_ms && s->age_ms >= lim->idle_ms) {
                st->expired++;
            } else if (st->delivered >= lim->max_sessions) {
                st->over_cap++;
            } else {
                st->delivered++;
                st->settings_reset += s->settings_reset;
                if (cb && cb(ud, s) != 0)
                    st->refused++;
            }
        }
        lv_statefile_session_clear(s);
    }
    if (line_no == 0)
        FAIL(LV_EPARSE, "the header is missing");
    if (line_no - 1 != declared)
        FAIL(LV_EPARSE, "the header's session count does not match the file");
    st->saved_ms = saved_ms;
    st->sessions = declared;
out:
    json_decref(head);
    free(s);
    return rc;
}

int lv_statefile_parse(const char *data, size_t len, const lv_statefile_limits_t *lim, uint64_t now_wall_ms,
                       lv_statefile_cb_t cb, void *ud, lv_statefile_stats_t *stats, const char **why)
{
    int rc = 0;
    const char *why_local = NULL;
    lv_statefile_stats_t st_local;
    json_t *trailer = NULL;
    if (!why)
        why = &why_local;
    if (!stats)
        stats = &st_local;
    memset(stats, 0, sizeof(*stats));
    *why = NULL;
    if (len > lim->max_bytes)
        FAIL(LV_ELIMIT, "the file is larger than the cap");
    if (len == 0 || data[len - 1] != '\n')
        FAIL(LV_EPARSE, "truncated (it does not end with a complete line)");
    /* the checksum line is the last one; everything before it is the body it covers */
    size_t body_len = len - 1;
    while (body_len > 0 && data[body_len - 1] != '\n')
        body_len--;
    if (body_len == 0)
        FAIL(LV_EPARSE, "truncated (no checksum line)");
    trailer = json_loadb(data + body_len, len - 1 - body_len, JSON_REJECT_DUPLICATES, NULL);
    json_t *sum = json_object_get(trailer, "sha256");
    if (!json_is_string(sum) || json_string_length(sum) != SHA256_HEX_LEN ||
        !is_lower_hex(json_string_value(sum), SHA256_HEX_LEN))
        FAIL(LV_EPARSE, "truncated (the last line is not its checksum)");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char hex[SHA256_HEX_LEN + 1];
    if (EVP_Digest(data, body_len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != SHA256_HEX_LEN / 2)
        FAIL(LV_ENOMEM, "cannot compute SHA-256");
    hex_of(md, md_len, hex);
    if (memcmp(hex, json_string_value(sum), SHA256_HEX_LEN) != 0)
        FAIL(LV_EPARSE, "the checksum does not match (the file was altered or partly written)");
    /* all or nothing: validate every line before handing out the first session */
    if ((rc = walk(data, body_len, lim, now_wall_ms, NULL, NULL, stats, false, why)) != 0)
        goto out;
    memset(stats, 0, sizeof(*stats));
    rc = walk(data, body_len, lim, now_wall_ms, cb, ud, stats, true, why);
out:
    json_decref(trailer);
    return rc;
}
