/* fuzz_statefile.c - libFuzzer driver for the session state file parser (lv_statefile_parse) and
 * the one-line parser the cluster reads Redis records with (lv_statefile_parse_line). Each input is
 * tried three times: as a whole file (the checksum line almost never matches, so this covers the
 * framing), sealed with a correct checksum line, so the fuzzer reaches the header and session line
 * parsers, and as one session line. Every session handed out must be within the caps, and must
 * encode and parse back; a line the line parser accepts re-encodes to a line that parses to the
 * same encoding, and to the same bytes when its history entries are handed to the encoder already
 * encoded (lv_statefile_encode_answer, as the session's cache does).
 * fuzz-sources: src/proto/lv_statefile.c src/proto/lv_settings.c src/common/lv_common.c
 * fuzz-sources: src/common/lv_utf8.c src/proto/lv_rtspurl.c src/common/lv_buf.c src/common/lv_json_str.c
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "../../src/proto/lv_statefile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const lv_statefile_limits_t LIM = {1u << 20, 8, 3600000};
#define NOW_MS 1700000000000ull

static int sink(void *ud, const void *p, size_t n)
{
    char **buf = ud;
    size_t have = strlen(*buf);
    char *nb = realloc(*buf, have + n + 1);
    if (!nb)
        abort();
    memcpy(nb + have, p, n);
    nb[have + n] = '\0';
    *buf = nb;
    return 0;
}

static int count_cb(void *ud, const lv_statefile_session_t *s)
{
    (*(int *)ud)++;
    return 0;
}

static int check_cb(void *ud, const lv_statefile_session_t *s)
{
    if (strlen(s->rec.id) != LV_SESSION_ID_LEN || strlen(s->rec.secret_hash) != LV_SECRET_HASH_LEN ||
        !s->rec.principal[0] || s->n_answers > LV_STATEFILE_ANSWERS_MAX)
        abort();
    for (size_t i = 0; i < s->n_answers; i++)
        if (!s->answers[i].text || s->answers[i].text_len > LV_STATEFILE_TEXT_MAX ||
            strlen(s->answers[i].text) != s->answers[i].text_len)
            abort();
    /* what was read can be written and read back */
    lv_statefile_line_t *line = NULL;
    lv_statefile_snap_t snap;
    memset(&snap, 0, sizeof(snap));
    if (lv_statefile_encode_session(s, &line) != 0 || lv_statefile_snap_add(&snap, line) != 0)
        abort();
    lv_statefile_line_unref(line);
    char *file = calloc(1, 1);
    if (!file || lv_statefile_emit(&snap, sink, &file) != 0)
        abort();
    lv_statefile_limits_t forever = {LV_STATEFILE_MAX_BYTES, 1, 0};
    int n = 0;
    if (lv_statefile_parse(file, strlen(file), &forever, NOW_MS, count_cb, &n, NULL, NULL) != 0 || n != 1)
        abort();
    free(file);
    lv_statefile_snap_clear(&snap);
    (*(int *)ud)++;
    return 0;
}

/* s encoded with each history entry pre-encoded (json) and a size hint: the same bytes as want. */
static void check_pieced(lv_statefile_session_t *s, const lv_statefile_line_t *want)
{
    lv_buf_t pieces[LV_STATEFILE_ANSWERS_MAX];
    lv_statefile_line_t *line = NULL;
    for (size_t i = 0; i < s->n_answers; i++) {
        lv_buf_init(&pieces[i], LV_STATEFILE_ANSWER_JSON_MAX);
        if (lv_statefile_encode_answer(&s->answers[i], &pieces[i]) != 0)
            abort();
        s->answers[i].json = pieces[i].data;
        s->answers[i].json_len = pieces[i].len;
    }
    s->size_hint = want->len;
    if (lv_statefile_encode_session(s, &line) != 0 || line->len != want->len ||
        memcmp(line->data, want->data, want->len) != 0)
        abort();
    lv_statefile_line_unref(line);
    for (size_t i = 0; i < s->n_answers; i++) {
        s->answers[i].json = NULL;
        s->answers[i].json_len = 0;
        lv_buf_free(&pieces[i]);
    }
    s->size_hint = 0;
}

/* The input as one session line (a Redis record). Accepted: within the caps (check_cb), and its
 * encoding is a fixed point: encode(parse(encode(s))) == encode(s). A refusal leaves nothing owned. */
static void fuzz_line(const uint8_t *data, size_t size)
{
    lv_statefile_session_t *s = malloc(sizeof(*s)), *again = malloc(sizeof(*again));
    lv_statefile_line_t *a = NULL, *b = NULL;
    const char *why = NULL;
    int n = 0;
    if (!s || !again)
        abort();
    if (lv_statefile_parse_line((const char *)data, size, NOW_MS, s, &why) != 0) {
        if (!why || s->n_answers != 0)
            abort();
        goto out;
    }
    if (check_cb(&n, s) != 0 || n != 1 || s->age_ms > NOW_MS)
        abort();
    if (lv_statefile_encode_session(s, &a) != 0 ||
        lv_statefile_parse_line(a->data, a->len, NOW_MS, again, NULL) != 0 ||
        lv_statefile_encode_session(again, &b) != 0 || a->len != b->len || memcmp(a->data, b->data, a->len) != 0)
        abort();
    check_pieced(s, a);
    lv_statefile_session_clear(again);
    lv_statefile_line_unref(a);
    lv_statefile_line_unref(b);
out:
    lv_statefile_session_clear(s);
    free(s);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int n = 0;
    fuzz_line(data, size);
    lv_statefile_stats_t st;
    if (lv_statefile_parse((const char *)data, size, &LIM, NOW_MS, check_cb, &n, &st, NULL) == 0 &&
        (size_t)n != st.delivered)
        abort();

    /* sealed: the input as the body, then its correct checksum line */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    bool nl = size > 0 && data[size - 1] == '\n';
    size_t body = size + !nl;
    char *file = malloc(body + 80);
    if (!file)
        return 0;
    memcpy(file, data, size);
    if (!nl)
        file[size] = '\n';
    if (EVP_Digest(file, body, md, &md_len, EVP_sha256(), NULL) != 1)
        abort();
    size_t len = body;
    len += (size_t)snprintf(file + len, 80, "{\"sha256\":\"");
    for (unsigned i = 0; i < md_len; i++)
        len += (size_t)snprintf(file + len, 3, "%02x", md[i]);
    len += (size_t)snprintf(file + len, 4, "\"}\n");
    n = 0;
    int rc = lv_statefile_parse(file, len, &LIM, NOW_MS, check_cb, &n, &st, NULL);
    if ((rc == 0 && (size_t)n != st.delivered) || (rc != 0 && n != 0))
        abort(); /* all or nothing */
    free(file);
    return 0;
}
