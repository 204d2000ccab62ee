/* test_chatresp.c - chunk and completion parsing on payloads shaped like vLLM, Ollama, OpenAI. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "lv_chatresp.h"
#include "lv_buf.h"
#include "lv_common.h"
#include "wire_data.h"

#define CAP (256 * 1024)

static int chunk(lv_chatresp_t *r, const char *s) { return lv_chatresp_parse_chunk(r, s, strlen(s), CAP); }
static int completion(lv_chatresp_t *r, const char *s)
{
    return lv_chatresp_parse_completion(r, s, strlen(s), CAP);
}

static void test_vllm_stream(void **state)
{
    (void)state;
    lv_chatresp_t r;
    lv_chatresp_init(&r);
    assert_int_equal(chunk(&r, "{\"id\":\"chatcmpl-8b5c\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
                               "\"model\":\"Qwen/Qwen2.5-VL-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":"
                               "{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}"), 0);
    assert_int_equal(r.content_len, 0);
    assert_string_equal(r.content, "");
    assert_null(r.finish_reason);
    assert_string_equal(r.id, "chatcmpl-8b5c");
    assert_string_equal(r.model, "Qwen/Qwen2.5-VL-7B-Instruct");
    assert_false(r.has_usage);
    assert_false(r.is_done);

    assert_int_equal(chunk(&r, "{\"id\":\"chatcmpl-8b5c\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
                               "\"model\":\"Qwen/Qwen2.5-VL-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":"
                               "{\"content\":\" A cat \\u00e9\\n\"},\"logprobs\":null,\"finish_reason\":null}]}"), 0);
    assert_string_equal(r.content, " A cat \xC3\xA9\n");
    assert_int_equal(r.content_len, 10);

    assert_int_equal(chunk(&r, "{\"id\":\"chatcmpl-8b5c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},"
                               "\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}]}"), 0);
    assert_string_equal(r.finish_reason, "stop");

    assert_int_equal(chunk(&r, "{\"id\":\"chatcmpl-8b5c\",\"object\":\"chat.completion.chunk\",\"choices\":[],"
                               "\"usage\":{\"prompt_tokens\":1234,\"total_tokens\":1260,\"completion_tokens\":26}}"), 0);
    assert_true(r.has_usage);
    assert_int_equal(r.prompt_tokens, 1234);
    assert_int_equal(r.completion_tokens, 26);
    assert_int_equal(r.content_len, 0);

    assert_int_equal(chunk(&r, "[DONE]"), 0);
    assert_true(r.is_done);
    assert_int_equal(chunk(&r, " [DONE]\r\n"), 0);
    assert_true(r.is_done);
    lv_chatresp_clear(&r);
}

static void test_ollama_stream(void **state)
{
    (void)state;
    lv_chatresp_t r;
    lv_chatresp_init(&r);
    assert_int_equal(chunk(&r, "{\"id\":\"chatcmpl-536\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,"
                               "\"model\":\"llava:7b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,"
                               "\"delta\":{\"role\":\"assistant\",\"content\":\" cat\"},\"finish_reason\":null}]}"), 0);
    assert_string_equal(r.content, " cat");
    assert_string_equal(r.model, "llava:7b");
    assert_int_equal(chunk(&r, "{\"id\":\"chatcmpl-536\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,"
                               "\"model\":\"llava:7b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,"
                               "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":\"length\"}]}"), 0);
    assert_string_equal(r.finish_reason, "length");
    lv_chatresp_clear(&r);
}

static void test_openai_stream(void **state)
{
    (void)state;
    lv_chatresp_t r;
    lv_chatresp_init(&r);
    assert_int_equal(chunk(&r, "{\"id\":\"chatcmpl-AbC\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                               "\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_x\",\"choices\":[{\"index\":0,"
                               "\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,"
                               "\"finish_reason\":null}],\"usage\":null}"), 0);
    assert_false(r.has_usage);
    assert_int_equal(chunk(&r, "{\"id\":\"chatcmpl-AbC\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},"
                               "\"finish_reason\":null}],\"usage\":null}"), 0);
    assert_string_equal(r.content, "Hi");
    /* "usage":null in every chunk (include_usage) keeps the common chunk on the fast scanner */
    assert_non_null(r.priv_fast);
    assert_int_equal(chunk(&r, "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},"
                               "\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}"), 0);
    assert_non_null(r.priv_fast); /* plain usage counts stay on the fast scanner too */
    assert_true(r.has_usage);
    assert_string_equal(r.content, "x");
    /* null content (tool-call or role-only deltas) is an empty delta */
    assert_int_equal(chunk(&r, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":null}}]}"), 0);
    assert_string_equal(r.content, "");
    assert_int_equal(chunk(&r, "{\"choices\":[{\"index\":0,\"delta\":{}}]}"), 0);
    assert_int_equal(r.content_len, 0);
    assert_int_equal(chunk(&r, "{\"choices\":[{\"index\":0}]}"), 0);
    assert_int_equal(chunk(&r, "{}"), 0);
    lv_chatresp_clear(&r);
}

static void test_errors(void **state)
{
    (void)state;
    lv_chatresp_t r;
    lv_chatresp_init(&r);
    assert_int_equal(chunk(&r, "{\"error\":{\"message\":\"The model `x` does not exist.\",\"type\":\"NotFoundError\","
                               "\"param\":null,\"code\":404}}"), LV_EBACKEND);
    assert_string_equal(r.error_message, "The model `x` does not exist.");
    assert_int_equal(chunk(&r, "{\"error\":\"model not loaded\"}"), LV_EBACKEND);
    assert_string_equal(r.error_message, "model not loaded");
    assert_int_equal(chunk(&r, "{\"error\":{\"code\":500}}"), LV_EBACKEND);
    assert_non_null(r.error_message);
    assert_int_equal(completion(&r, "{\"object\":\"error\",\"message\":\"bad image\",\"type\":\"BadRequestError\","
                                    "\"param\":null,\"code\":400}"), LV_EBACKEND);
    assert_string_equal(r.error_message, "bad image");
    /* "error": null is no error */
    assert_int_equal(chunk(&r, "{\"error\":null,\"choices\":[{\"delta\":{\"content\":\"x\"}}]}"), 0);
    assert_string_equal(r.content, "x");
    assert_null(r.error_message);
    lv_chatresp_clear(&r);
}

static void test_wrong_types(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "not json",
        "[1,2]",
        "\"str\"",
        "{\"choices\":{}}",
        "{\"choices\":[1]}",
        "{\"choices\":[{\"delta\":\"x\"}]}",
        "{\"choices\":[{\"delta\":{\"content\":5}}]}",
        "{\"choices\":[{\"delta\":{\"content\":[\"a\"]}}]}",
        "{\"choices\":[{\"delta\":{},\"finish_reason\":1}]}",
        "{\"usage\":5}",
        "{\"usage\":{\"prompt_tokens\":\"3\"}}",
        "{\"usage\":{\"completion_tokens\":-1}}",
        "{\"usage\":{\"completion_tokens\":1.5}}",
        "{\"usage\":{\"completion_tokens\":99999999999}}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\"}}]} trailing",
        "{\"choices\":[{\"delta\":{\"content\":\"a\\u0000b\"}}]}",
        "[DONE]x",
    };
    lv_chatresp_t r;
    lv_chatresp_init(&r);
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        int rc = chunk(&r, bad[i]);
        if (rc != LV_EPARSE)
            fail_msg("payload %zu (%s): rc %d", i, bad[i], rc);
        assert_string_equal(r.content, "");
        assert_null(r.priv_doc);
    }
    lv_chatresp_clear(&r);
}

static void test_cap(void **state)
{
    (void)state;
    lv_chatresp_t r;
    lv_chatresp_init(&r);
    const char *p = "{\"choices\":[{\"delta\":{\"content\":\"abc\"}}]}";
    assert_int_equal(lv_chatresp_parse_chunk(&r, p, strlen(p), strlen(p)), 0);
    assert_int_equal(lv_chatresp_parse_chunk(&r, p, strlen(p), strlen(p) - 1), LV_ELIMIT);
    assert_int_equal(lv_chatresp_parse_completion(&r, p, strlen(p), 3), LV_ELIMIT);
    lv_chatresp_clear(&r);
}

static void test_completion(void **state)
{
    (void)state;
    lv_chatresp_t r;
    lv_chatresp_init(&r);
    assert_int_equal(completion(&r, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"llava\","
                                    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                                    "\"A red \\\"mug\\\".\"},\"finish_reason\":\"stop\"}],"
                                    "\"usage\":{\"prompt_tokens\":600,\"completion_tokens\":5,\"total_tokens\":605}}"), 0);
    assert_string_equal(r.content, "A red \"mug\".");
    assert_string_equal(r.finish_reason, "stop");
    assert_int_equal(r.prompt_tokens, 600);
    assert_int_equal(r.completion_tokens, 5);
    assert_string_equal(r.model, "llava");
    assert_int_equal(completion(&r, "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":null}}]}"), 0);
    assert_string_equal(r.content, "");
    assert_int_equal(completion(&r, "{\"choices\":[]}"), LV_EPARSE);
    assert_int_equal(completion(&r, "{\"object\":\"chat.completion\"}"), LV_EPARSE);
    assert_int_equal(completion(&r, "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}"), LV_EPARSE);
    assert_int_equal(completion(&r, "{\"choices\":[{\"message\":{\"content\":1}}]}"), LV_EPARSE);
    assert_int_equal(completion(&r, "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\"}}"),
                     LV_EBACKEND);
    assert_string_equal(r.error_message, "Rate limit reached");
    lv_chatresp_clear(&r);
}


/* The common chunk takes a fast scanner instead of a JSON tree: same results, escapes included,
 * and anything unusual still goes through the full parser. */
static void test_fast_path_escapes(void **state)
{
    (void)state;
    lv_chatresp_t r;
    lv_chatresp_init(&r);
    static const struct {
        const char *json, *content;
    } cases[] = {
        {"{\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"line\\nnext \\\"q\\\" \\\\ \\/\"},\"finish_reason\":null}]}",
         "line\nnext \"q\" \\ /"},
        {"{\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"caf\\u00e9 \\u20ac \\ud83d\\ude00\"},\"finish_reason\":null}]}",
         "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"{\"choices\":[{\"delta\":{\"content\":\"\"},\"finish_reason\":null}]}", ""},
        /* content text that looks like keys is only text */
        {"{\"choices\":[{\"delta\":{\"content\":\"\\\"error\\\": \\\"usage\\\"\"},\"finish_reason\":null}]}",
         "\"error\": \"usage\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(lv_chatresp_parse_chunk(&r, cases[i].json, strlen(cases[i].json), 1 << 20), 0);
        assert_string_equal(r.content, cases[i].content);
        assert_int_equal(r.content_len, strlen(cases[i].content));
        assert_null(r.finish_reason);
    }
    /* a lone low surrogate, a truncated object and a stray bracket are still refused */
    static const char *bad[] = {
        "{\"choices\":[{\"delta\":{\"content\":\"x\\udc00\"},\"finish_reason\":null}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]",
        "{\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(lv_chatresp_parse_chunk(&r, bad[i], strlen(bad[i]), 1 << 20), LV_EPARSE);
    lv_chatresp_clear(&r);
}

/* ---- the fast scanner against the full parser ----
 * lv_chatresp_parse_chunk() takes a one-pass scanner for the common token chunk and the jansson
 * parser for everything else; lv_chatresp_parse_chunk_full() always takes jansson. Every payload
 * below goes through both, and any difference (return code, content bytes, id, model, finish
 * reason, usage, error text) fails. Where the scanner should take a payload, it must. */

typedef struct {
    int total, fast;
} cmp_stats_t;

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

/* Returns 1 when the fast scanner took the payload. */
static int same_both_ways(const char *p, size_t n, cmp_stats_t *st)
{
    lv_chatresp_t a, b;
    lv_chatresp_init(&a);
    lv_chatresp_init(&b);
    int rca = lv_chatresp_parse_chunk(&a, p, n, CAP);
    int rcb = lv_chatresp_parse_chunk_full(&b, p, n, CAP);
    int fast = a.priv_fast != NULL;
    int same = rca == rcb && a.is_done == b.is_done && a.content_len == b.content_len &&
               memcmp(a.content, b.content, a.content_len) == 0 && a.content[a.content_len] == '\0' &&
               same_str(a.finish_reason, b.finish_reason) && a.has_usage == b.has_usage &&
               a.prompt_tokens == b.prompt_tokens && a.completion_tokens == b.completion_tokens &&
               same_str(a.error_message, b.error_message) && same_str(a.id, b.id) && same_str(a.model, b.model);
    if (!same)
        fail_msg("fast %d vs full: rc %d/%d content %zu/%zu \"%.*s\"/\"%.*s\" id %s/%s model %s/%s finish %s/%s "
                 "usage %d/%d %d/%d %d/%d for %zu bytes: %.*s",
                 fast, rca, rcb, a.content_len, b.content_len, (int)a.content_len, a.content, (int)b.content_len,
                 b.content, a.id ? a.id : "(null)", b.id ? b.id : "(null)", a.model ? a.model : "(null)",
                 b.model ? b.model : "(null)", a.finish_reason ? a.finish_reason : "(null)",
                 b.finish_reason ? b.finish_reason : "(null)", a.has_usage, b.has_usage, a.prompt_tokens,
                 b.prompt_tokens, a.completion_tokens, b.completion_tokens, n, (int)n, p);
    if (fast && (rca != 0 || b.priv_doc == NULL))
        fail_msg("the fast scanner took what the full parser did not: %.*s", (int)n, p);
    lv_chatresp_clear(&a);
    lv_chatresp_clear(&b);
    st->total++;
    st->fast += fast;
    return fast;
}

/* Damage each payload in every place: each prefix (a truncated chunk), each byte dropped, each
 * byte replaced by one that matters to JSON. The scanner may refuse all of them, but whatever it
 * takes must read the same as jansson reads it. */
static void same_mutated(const char *p, size_t n, cmp_stats_t *st)
{
    static const char swaps[] = {'"', '\\', '}', ']', ',', ':', '\0', '0', ' ', (char)0xC3, 'u'};
    char m[2048];
    assert_true(n < sizeof m);
    for (size_t len = 0; len < n; len++)
        same_both_ways(p, len, st);
    for (size_t i = 0; i < n; i++) {
        memcpy(m, p, i);
        memcpy(m + i, p + i + 1, n - i - 1);
        same_both_ways(m, n - 1, st);
        memcpy(m, p, n);
        for (size_t k = 0; k < sizeof swaps; k++) {
            if (p[i] == swaps[k])
                continue;
            m[i] = swaps[k];
            same_both_ways(m, n, st);
        }
    }
}

/* The payload with blanks after every ':' and ',' and around brackets outside strings, as a
 * pretty-printing backend might send it. */
static size_t spaced(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    int in_str = 0;
    for (size_t i = 0; i < n && o + 4 < cap; i++) {
        char c = p[i];
        if (in_str) {
            out[o++] = c;
            if (c == '\\' && i + 1 < n)
                out[o++] = p[++i];
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '}' || c == ']')
            out[o++] = '\n';
        out[o++] = c;
        if (c == '"')
            in_str = 1;
        else if (c == ':' || c == ',')
            out[o++] = ' ';
        else if (c == '{' || c == '[')
            out[o++] = '\t';
    }
    assert_true(o + 4 < cap);
    return o;
}

/* fmt with its one "%s" replaced by content (no printf: the templates are data). */
static size_t fill(char *out, size_t cap, const char *fmt, const char *content)
{
    const char *hole = strstr(fmt, "%s");
    assert_non_null(hole);
    size_t head = (size_t)(hole - fmt), cn = strlen(content), tail = strlen(hole + 2);
    assert_true(head + cn + tail < cap);
    memcpy(out, fmt, head);
    memcpy(out + head, content, cn);
    memcpy(out + head + cn, hole + 2, tail + 1);
    return head + cn + tail;
}

static void test_fast_equals_full_templates(void **state)
{
    (void)state;
    /* %s is the delta's content value. fast: a chunk of this shape, with a plain string content,
     * is one the scanner must take. */
    static const struct {
        int fast;
        const char *fmt;
    } tmpl[] = {
        /* fakevlm (tools/fakevlm emit_word with include_usage) */
        {1, "{\"id\":\"chatcmpl-fakevlm-1234\",\"object\":\"chat.completion.chunk\",\"created\":1749547231,"
            "\"model\":\"fake/vlm\",\"system_fingerprint\":\"fakevlm-0.1.0\",\"choices\":[{\"index\":0,\"delta\":"
            "{\"content\":%s},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}"},
        /* vLLM */
        {1, "{\"id\":\"chatcmpl-6c0e\",\"object\":\"chat.completion.chunk\",\"created\":1749547231,\"model\":"
            "\"Qwen/Qwen2.5-VL-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%s},\"logprobs\":null,"
            "\"finish_reason\":null}]}"},
        /* Ollama */
        {1, "{\"id\":\"chatcmpl-611\",\"object\":\"chat.completion.chunk\",\"created\":1749546847,\"model\":"
            "\"gemma3:4b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
            "\"assistant\",\"content\":%s},\"finish_reason\":null}]}"},
        /* OpenAI */
        {1, "{\"id\":\"chatcmpl-CNm3\",\"object\":\"chat.completion.chunk\",\"created\":1759744931,\"model\":"
            "\"gpt-4o-mini\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":[{"
            "\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":%s,\"refusal\":null},\"logprobs\":null,"
            "\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"3kq1\"}"},
        /* llama.cpp: choices first, finish_reason before delta, no finish_reason at all */
        {1, "{\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":%s}}],\"created\":1749547400,"
            "\"id\":\"chatcmpl-Wq2o\",\"model\":\"qwen2.5-vl-7b\",\"object\":\"chat.completion.chunk\"}"},
        {1, "{\"choices\":[{\"delta\":{\"content\":%s}}]}"},
        {1, " \r\n{ \"id\" : \"x\" , \"choices\" : [ { \"delta\" : { \"content\" : %s } } ] }\n\t "},
        /* other fields nest, hold braces, quotes and key names in strings, numbers of all forms */
        {1, "{\"id\":\"a}\\\"b\",\"model\":\"m\\/x \\u00e9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%s,"
            "\"x\":{\"content\":\"decoy\",\"y\":[1,-2.5e-3,0,true,false,null,{},[]]}},\"logprobs\":{\"content\":"
            "[{\"token\":\"}]\",\"logprob\":-0.25,\"bytes\":[125,93],\"top_logprobs\":[]}]},\"finish_reason\":null}],"
            "\"extra\":\"\\\"content\\\":\\\"decoy\\\"\",\"n\":[[[[[[[[[[1]]]]]]]]]],\"e\":1E+2,\"f\":-0}"},
        {1, "{\"decoy\":{\"choices\":[{\"delta\":{\"content\":\"no\"}}],\"usage\":{\"prompt_tokens\":1}},"
            "\"choices\":[{\"delta\":{\"content\":%s}}]}"},
        {1, "{\"id\":5,\"model\":null,\"object\":7,\"choices\":[{\"delta\":{\"content\":%s}}]}"},
        {1, "{\"id\":\"\\u0061\\ud83d\\ude00\",\"choices\":[{\"delta\":{\"content\":%s}}],\"error_x\":1}"},
        /* a last token with its finish reason and usage in the same chunk */
        {1, "{\"choices\":[{\"delta\":{\"content\":%s},\"finish_reason\":\"stop\"}]}"},
        {1, "{\"choices\":[{\"delta\":{\"content\":%s}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}"},
        /* what the full parser must read (or refuse) */
        {0, "{\"choices\":[{\"delta\":{\"content\":%s},\"finish_reason\":1}]}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s},\"finish_reason\":\"st\\u006fp\"}]}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}],\"usage\":{\"prompt_tokens\":3,\"prompt_tokens\":4}}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}],\"usage\":{\"completion_tokens\":1.0}}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}],\"usage\":5}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}},{\"delta\":{\"content\":\"two\"}}]}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}},{\"index\":1}]}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s,\"tool_calls\":[{\"index\":0}]}}]}"},
        {0, "{\"error\":null,\"choices\":[{\"delta\":{\"content\":%s}}]}"},
        {0, "{\"error\":{\"message\":\"boom\"},\"choices\":[{\"delta\":{\"content\":%s}}]}"},
        {0, "{\"object\":\"error\",\"message\":\"bad\",\"choices\":[{\"delta\":{\"content\":%s}}]}"},
        {0, "{\"object\":\"err\\u006fr\",\"message\":\"bad\",\"choices\":[{\"delta\":{\"content\":%s}}]}"},
        {0, "{\"id\":\"a\",\"id\":\"b\",\"choices\":[{\"delta\":{\"content\":%s}}]}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s,\"content\":\"again\"}}]}"},
        {0, "{\"choices\":[{\"delta\":{\"con\\u0074ent\":%s}}]}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}],\"created\":99999999999999999999}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}],\"x\":1e400}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}],\"x\":01}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}],\"x\":1.}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}],\"x\":.5}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}],\"x\":nul}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}],}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}]}{}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}]} x"},
        {0, "\xEF\xBB\xBF{\"choices\":[{\"delta\":{\"content\":%s}}]}"},
        {0, "{\"choices\":[{\"delta\":{\"content\":%s}}],\"deep\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"},
        {0, "{\"choices\":{\"delta\":{\"content\":%s}}}"},
        {0, "{\"choices\":[{\"delta\":[%s]}]}"},
        {0, "[{\"choices\":[{\"delta\":{\"content\":%s}}]}]"},
    };
    /* content values: ok = a string the scanner must take (in a fast template) */
    static const struct {
        int ok;
        const char *json;
    } content[] = {
        {1, "\"word\""},
        {1, "\"\""},
        {1, "\" A cat \\u00e9\\n\""},
        {1, "\"\\ud83d\\ude00 \\uD83D\\uDE00\""},
        {1, "\"\\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t\""},
        {1, "\"{\\\"content\\\":\\\"x\\\"}]}\\\"error\\\": tool_calls \\\"usage\\\":{}\""},
        {1, "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF\""},
        {1, "\"\\u0001\\u001f\\u007f\\u0080\\u07ff\\u0800\\uffff\""},
        {1, "\"x\\u0026\\u003c\\u003e\""},
        /* bytes next to the ones the scanner stops at, deep in a long run (it skips 8 at a time) */
        {1, "\"0123456789abcdef\x7F~ !#$%&'()*+-.0123456789;<=>?@[]^_`{|}\""},
        {0, "\"0123456789abc\x1F" "defghijklmnopqrstuvwxyz\""},
        {0, "\"0123456789abc\x80" "defghijklmnopqrstuvwxyz\""},
        {0, "null"}, /* an empty delta: the scanner takes it; not counted as must-be-fast */
        {0, "\"a\\u0000b\""},
        {0, "\"\\ud83d\""},
        {0, "\"\\ud83dx\""},
        {0, "\"\\ud83d\\u0041\""},
        {0, "\"\\ude00\""},
        {0, "\"\\x\""},
        {0, "\"\\u12\""},
        {0, "\"\\u00G0\""},
        {0, "\"\xC3\""},
        {0, "\"\xC0\xAF\""},
        {0, "\"\xED\xA0\x80\""},
        {0, "\"\xF4\x90\x80\x80\""},
        {0, "\"\xFF\""},
        {0, "\"a\tb\""},
        {0, "\"a\x01\""},
        {0, "5"},
        {0, "true"},
        {0, "[\"a\"]"},
        {0, "{}"},
        {0, "\"unterminated"},
        {0, ""},
    };
    cmp_stats_t st = {0};
    char buf[4096], sp[8192];
    for (size_t t = 0; t < LV_ARRAY_LEN(tmpl); t++) {
        for (size_t c = 0; c < LV_ARRAY_LEN(content); c++) {
            size_t n = fill(buf, sizeof buf, tmpl[t].fmt, content[c].json);
            int fast = same_both_ways(buf, n, &st);
            if (tmpl[t].fast && content[c].ok && !fast)
                fail_msg("the fast scanner refused a common chunk: %s", buf);
            if ((!tmpl[t].fast || (!content[c].ok && strcmp(content[c].json, "null") != 0)) && fast)
                fail_msg("the fast scanner took what it should leave to jansson: %s", buf);
            size_t sn = spaced(buf, n, sp, sizeof sp);
            if (same_both_ways(sp, sn, &st) != fast)
                fail_msg("blanks changed the path: %.*s", (int)sn, sp);
        }
    }
    /* a content longer than the struct's inline room: the decoded text goes to the heap */
    char big[3 * LV_CHATRESP_INLINE_MAX];
    size_t o = 0;
    big[o++] = '"';
    while (o + 10 < sizeof big) {
        memcpy(big + o, "ab\\u00e9\\n", 10);
        o += 10;
    }
    big[o++] = '"';
    big[o] = '\0';
    for (size_t t = 0; t < LV_ARRAY_LEN(tmpl); t++) {
        size_t n = fill(buf, sizeof buf, tmpl[t].fmt, big);
        assert_int_equal(same_both_ways(buf, n, &st), tmpl[t].fast);
    }
    print_message("fast vs full, templates: %d payloads, %d on the fast scanner\n", st.total, st.fast);
    assert_true(st.fast > 200);
}

static void test_fast_equals_full_mutated(void **state)
{
    (void)state;
    static const char *base[] = {
        "{\"id\":\"chatcmpl-6c0e\",\"object\":\"chat.completion.chunk\",\"created\":1749547231,\"model\":\"Qwen/Qw"
        "en2.5-VL-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"The\"},\"logprobs\":null,"
        "\"finish_reason\":null}],\"usage\":null}",
        "{\"id\":\"a\\\"b\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"x\\u00e9\\ud83d\\ude00\\n"
        "\xC3\xA9\"},\"finish_reason\":null}],\"n\":[-1.5e+3,true,{\"k\":\"v\"}]}",
        " {\"choices\" : [ {\"finish_reason\":null,\"delta\":{\"content\":\"}\"}} ],\"model\":\"m\"} ",
    };
    cmp_stats_t st = {0};
    for (size_t i = 0; i < LV_ARRAY_LEN(base); i++) {
        assert_int_equal(same_both_ways(base[i], strlen(base[i]), &st), 1);
        same_mutated(base[i], strlen(base[i]), &st);
    }
    print_message("fast vs full, damaged chunks: %d payloads, %d on the fast scanner\n", st.total, st.fast);
    assert_true(st.fast > 100);
}

/* ---- the chunks that end an answer ----
 * Every answer ends with a chunk that carries the finish reason and one that carries usage (or one
 * that carries both). They take the fast scanner in each backend's shape; what they read is held
 * to literal values and to the full parser, spaced out and damaged too. */

typedef struct {
    const char *json;
    int rc;
    const char *finish;
    int has_usage, prompt, completion;
} end_case_t;

/* One payload: the same both ways, on the path expected (want_fast), and reading what the case says. */
static void check_end_case(const end_case_t *c, int want_fast, cmp_stats_t *st)
{
    size_t n = strlen(c->json);
    int fast = same_both_ways(c->json, n, st);
    if (fast != want_fast)
        fail_msg("%s the fast scanner: %s", want_fast ? "refused by" : "wrongly taken by", c->json);
    lv_chatresp_t r;
    lv_chatresp_init(&r);
    int rc = lv_chatresp_parse_chunk(&r, c->json, n, CAP);
    if (rc != c->rc)
        fail_msg("rc %d, want %d: %s", rc, c->rc, c->json);
    if (rc == 0 && (!same_str(r.finish_reason, c->finish) || r.has_usage != c->has_usage ||
                    r.prompt_tokens != c->prompt || r.completion_tokens != c->completion))
        fail_msg("read finish %s usage %d %d/%d, want %s %d %d/%d: %s", r.finish_reason ? r.finish_reason : "(null)",
                 r.has_usage, r.prompt_tokens, r.completion_tokens, c->finish ? c->finish : "(null)", c->has_usage,
                 c->prompt, c->completion, c->json);
    lv_chatresp_clear(&r);
}

static void test_fast_end_chunks(void **state)
{
    (void)state;
    static const end_case_t common[] = {
        /* fakevlm (tools/fakevlm emit_end): the finish chunk, then usage when include_usage */
        {"{\"id\":\"chatcmpl-fakevlm-7\",\"object\":\"chat.completion.chunk\",\"created\":1749547231,\"model\":"
         "\"fake/vlm\",\"system_fingerprint\":\"fakevlm-0.1.0\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":"
         "null,\"finish_reason\":\"stop\"}],\"usage\":null}",
         0, "stop", 0, 0, 0},
        {"{\"id\":\"chatcmpl-fakevlm-7\",\"object\":\"chat.completion.chunk\",\"created\":1749547231,\"model\":"
         "\"fake/vlm\",\"system_fingerprint\":\"fakevlm-0.1.0\",\"choices\":[],\"usage\":{\"prompt_tokens\":812,"
         "\"completion_tokens\":15,\"total_tokens\":827}}",
         0, NULL, 1, 812, 15},
        {"{\"id\":\"chatcmpl-fakevlm-8\",\"object\":\"chat.completion.chunk\",\"created\":1749547231,\"model\":"
         "\"fake/vlm\",\"system_fingerprint\":\"fakevlm-0.1.0\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":"
         "null,\"finish_reason\":\"length\"}]}",
         0, "length", 0, 0, 0},
        /* vLLM: stop_reason next to finish_reason (null, or the stop token's id), total before completion */
        {"{\"id\":\"chatcmpl-6c0e\",\"object\":\"chat.completion.chunk\",\"created\":1749547231,\"model\":"
         "\"Qwen/Qwen2.5-VL-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"logprobs\":null,"
         "\"finish_reason\":\"stop\",\"stop_reason\":null}]}",
         0, "stop", 0, 0, 0},
        {"{\"id\":\"chatcmpl-6c0e\",\"object\":\"chat.completion.chunk\",\"created\":1749547231,\"model\":"
         "\"Qwen/Qwen2.5-VL-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" kitchen\"},\"logprobs\":"
         "null,\"finish_reason\":\"length\",\"stop_reason\":151645}]}",
         0, "length", 0, 0, 0},
        {"{\"id\":\"chatcmpl-6c0e\",\"object\":\"chat.completion.chunk\",\"created\":1749547231,\"model\":"
         "\"Qwen/Qwen2.5-VL-7B-Instruct\",\"choices\":[],\"usage\":{\"prompt_tokens\":1347,\"total_tokens\":1363,"
         "\"completion_tokens\":16}}",
         0, NULL, 1, 1347, 16},
        /* vLLM with --enable-prompt-tokens-details; the same with a null details member */
        {"{\"id\":\"chatcmpl-6c0e\",\"object\":\"chat.completion.chunk\",\"created\":1749547231,\"model\":"
         "\"Qwen/Qwen2.5-VL-7B-Instruct\",\"choices\":[],\"usage\":{\"prompt_tokens\":1347,\"total_tokens\":1363,"
         "\"completion_tokens\":16,\"prompt_tokens_details\":{\"cached_tokens\":1024}}}",
         0, NULL, 1, 1347, 16},
        {"{\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"total_tokens\":12,\"completion_tokens\":3,"
         "\"prompt_tokens_details\":null,\"reasoning_tokens\":0}}",
         0, NULL, 1, 9, 3},
        /* OpenAI with stream_options.include_usage: finish with "usage":null, then usage with details */
        {"{\"id\":\"chatcmpl-CNm3\",\"object\":\"chat.completion.chunk\",\"created\":1759744931,\"model\":"
         "\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":"
         "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null,\"obfuscation\":"
         "\"Ye2b\"}",
         0, "stop", 0, 0, 0},
        {"{\"id\":\"chatcmpl-CNm3\",\"object\":\"chat.completion.chunk\",\"created\":1759744931,\"model\":"
         "\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\"choices\":"
         "[],\"usage\":{\"prompt_tokens\":8512,\"completion_tokens\":13,\"total_tokens\":8525,"
         "\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":"
         "{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"
         "\"rejected_prediction_tokens\":0}},\"obfuscation\":\"Vx\"}",
         0, NULL, 1, 8512, 13},
        {"{\"id\":\"chatcmpl-CNm3\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":"
         "20,\"completion_tokens\":5,\"total_tokens\":25,\"completion_tokens_details\":null,\"prompt_tokens_details\":"
         "null}}",
         0, NULL, 1, 20, 5},
        /* llama.cpp: finish and usage in one chunk, with its "timings" (reals) beside them; the newer
         * usage-only chunk after an empty choices */
        {"{\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"delta\":{}}],\"created\":1749547401,\"id\":"
         "\"chatcmpl-Wq2o\",\"model\":\"qwen2.5-vl-7b\",\"system_fingerprint\":\"b5350-c6a2c9e7\",\"object\":"
         "\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":15,\"prompt_tokens\":812,\"total_tokens\":827},"
         "\"timings\":{\"prompt_n\":812,\"prompt_ms\":388.123,\"prompt_per_token_ms\":0.477984,\"prompt_per_second\":"
         "2092.12,\"predicted_n\":15,\"predicted_ms\":152.874,\"predicted_per_token_ms\":10.1916,"
         "\"predicted_per_second\":98.12}}",
         0, "stop", 1, 812, 15},
        {"{\"choices\":[],\"created\":1760000001,\"id\":\"chatcmpl-9zT4\",\"model\":\"qwen2.5-vl-7b\",\"object\":"
         "\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":8,\"prompt_tokens\":812,\"total_tokens\":820},"
         "\"timings\":{\"cache_n\":0,\"prompt_n\":812,\"prompt_ms\":391.005,\"predicted_per_second\":99.859}}",
         0, NULL, 1, 812, 8},
        /* Ollama: an empty content beside the finish reason; usage after an empty choices */
        {"{\"id\":\"chatcmpl-611\",\"object\":\"chat.completion.chunk\",\"created\":1749546848,\"model\":\"gemma3:4b\","
         "\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":"
         "\"\"},\"finish_reason\":\"stop\"}]}",
         0, "stop", 0, 0, 0},
        {"{\"id\":\"chatcmpl-611\",\"object\":\"chat.completion.chunk\",\"created\":1749546848,\"model\":\"gemma3:4b\","
         "\"system_fingerprint\":\"fp_ollama\",\"choices\":[],\"usage\":{\"prompt_tokens\":283,"
         "\"completion_tokens\":17,\"total_tokens\":300}}",
         0, NULL, 1, 283, 17},
        /* counts at their edges: 0, INT_MAX, 10 digits, null or absent (0); an empty usage; a choice
         * without delta; any other finish reason */
        {"{\"choices\":[],\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":2147483647}}", 0, NULL, 1, 0, INT32_MAX},
        {"{\"choices\":[],\"usage\":{\"prompt_tokens\":1000000000,\"completion_tokens\":null}}", 0, NULL, 1,
         1000000000, 0},
        {"{\"usage\":{\"total_tokens\":5}}", 0, NULL, 1, 0, 0},
        {"{\"usage\":{}}", 0, NULL, 1, 0, 0},
        {"{\"choices\":[{\"index\":0,\"finish_reason\":\"content_filter\"}]}", 0, "content_filter", 0, 0, 0},
        {"{\"choices\":[{\"finish_reason\":\"\"}]}", 0, "", 0, 0, 0},
        {"{\"choices\":[{\"finish_reason\":\"tool_calls\",\"delta\":{\"content\":\"x\"}}],\"usage\":"
         "{\"completion_tokens\":1,\"prompt_tokens\":2}}",
         0, "tool_calls", 1, 2, 1},
        /* extra usage members of every JSON type, nested */
        {"{\"choices\":[],\"usage\":{\"a\":[1,-2.5e-3,true,false,null,\"s\\\"}\",{\"b\":[[]]}],\"prompt_tokens\":4,"
         "\"c\":{\"prompt_tokens\":-1,\"completion_tokens\":\"x\"},\"completion_tokens\":6,\"d\":-0.5}}",
         0, NULL, 1, 4, 6},
    };
    /* What the fast scanner leaves to jansson: the full parser's verdict, written out here. */
    static const end_case_t odd[] = {
        /* finish_reason: escaped, of another type, twice (jansson keeps the last) */
        {"{\"choices\":[{\"delta\":{},\"finish_reason\":\"st\\u006fp\"}]}", 0, "stop", 0, 0, 0},
        {"{\"choices\":[{\"delta\":{},\"finish_reason\":\"\\u00e9\\n\"}]}", 0, "\xC3\xA9\n", 0, 0, 0},
        {"{\"choices\":[{\"delta\":{},\"finish_reason\":\"a\\u0000b\"}]}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"choices\":[{\"delta\":{},\"finish_reason\":1}]}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"choices\":[{\"delta\":{},\"finish_reason\":true}]}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"choices\":[{\"delta\":{},\"finish_reason\":{}}]}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"choices\":[{\"delta\":{},\"finish_reason\":[\"stop\"]}]}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"choices\":[{\"finish_reason\":\"stop\",\"finish_reason\":null}]}", 0, NULL, 0, 0, 0},
        {"{\"choices\":[{\"finish_reason\":null,\"finish_reason\":\"length\"}]}", 0, "length", 0, 0, 0},
        {"{\"choices\":[{\"finish_re\\u0061son\":\"stop\"}]}", 0, "stop", 0, 0, 0},
        {"{\"choices\":[{\"finish_reason\":\"stop\"},{\"finish_reason\":\"length\"}]}", 0, "stop", 0, 0, 0},
        /* usage not an object, twice, with an escaped key */
        {"{\"choices\":[],\"usage\":5}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"choices\":[],\"usage\":\"x\"}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"choices\":[],\"usage\":[]}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"choices\":[],\"usage\":true}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"prompt_tokens\":1},\"usage\":null}", 0, NULL, 0, 0, 0},
        {"{\"usage\":null,\"usage\":{\"prompt_tokens\":1}}", 0, NULL, 1, 1, 0},
        {"{\"usage\":{\"prompt_tokens\":1,\"prompt_tokens\":2}}", 0, NULL, 1, 2, 0},
        {"{\"usage\":{\"completion_tokens\":1,\"completion_tokens\":null}}", 0, NULL, 1, 0, 0},
        {"{\"usage\":{\"prompt_tok\\u0065ns\":5}}", 0, NULL, 1, 5, 0},
        /* counts: negative, -0 (an integer 0 to jansson), reals, leading zero, past INT_MAX, past
         * 2^53, past UINT64, a string, true */
        {"{\"usage\":{\"prompt_tokens\":-1}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"prompt_tokens\":-0}}", 0, NULL, 1, 0, 0},
        {"{\"usage\":{\"prompt_tokens\":1.5}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"prompt_tokens\":1.0}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"prompt_tokens\":0.0}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"prompt_tokens\":1e2}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"prompt_tokens\":5E+0}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"prompt_tokens\":01}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"prompt_tokens\":2147483648}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"completion_tokens\":10000000000}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"completion_tokens\":9007199254740993}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"completion_tokens\":18446744073709551616}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"completion_tokens\":-9223372036854775809}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"completion_tokens\":\"3\"}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"completion_tokens\":true}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"usage\":{\"completion_tokens\":[]}}", LV_EPARSE, NULL, 0, 0, 0},
        /* an "error" or "tool_calls" key anywhere, nesting past the scanner's depth */
        {"{\"usage\":{\"prompt_tokens\":1,\"x\":{\"error\":null}}}", 0, NULL, 1, 1, 0},
        {"{\"choices\":[{\"finish_reason\":\"tool_calls\",\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}", 0,
         "tool_calls", 0, 0, 0},
        {"{\"usage\":{\"prompt_tokens\":1,\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
         "1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}",
         0, NULL, 1, 1, 0},
        /* usage beside a choice the full parser refuses */
        {"{\"choices\":[1],\"usage\":{\"prompt_tokens\":1}}", LV_EPARSE, NULL, 0, 0, 0},
        {"{\"choices\":[{\"delta\":5,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1}}", LV_EPARSE, NULL, 0,
         0, 0},
    };
    cmp_stats_t st = {0};
    char sp[4096];
    for (size_t i = 0; i < LV_ARRAY_LEN(common); i++) {
        check_end_case(&common[i], 1, &st);
        size_t sn = spaced(common[i].json, strlen(common[i].json), sp, sizeof sp);
        if (!same_both_ways(sp, sn, &st))
            fail_msg("the fast scanner refused the spaced-out form of: %s", common[i].json);
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(odd); i++)
        check_end_case(&odd[i], 0, &st);
    /* damaged: the scanner may refuse any of them, but what it takes must read as jansson reads it */
    for (size_t i = 0; i < LV_ARRAY_LEN(common); i += 3)
        same_mutated(common[i].json, strlen(common[i].json), &st);
    print_message("fast vs full, end chunks: %d payloads, %d on the fast scanner\n", st.total, st.fast);
}

/* Every "data:" payload of the recorded backend formats, whole and damaged. */
static void test_fast_equals_full_wire(void **state)
{
    (void)state;
    char path[1400], line[8192];
    const char *dir = wire_dir();
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    cmp_stats_t st = {0};
    int files = 0, tokens = 0, ends = 0;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 4, ".txt") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        files++;
        while (fgets(line, sizeof line, f)) {
            size_t n = strlen(line);
            while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                n--;
            if (n < 6 || memcmp(line, "data: ", 6) != 0)
                continue;
            const char *p = line + 6;
            n -= 6;
            line[6 + n] = '\0';
            int fast = same_both_ways(p, n, &st);
            /* a token chunk: the scanner's whole reason to be */
            if (strstr(p, "\"content\":\"") && strstr(p, "\"finish_reason\":null") && !strstr(p, "\"usage\":{") &&
                !strstr(p, "\"error\"")) {
                tokens++;
                if (!fast)
                    fail_msg("%s: the fast scanner refused a token chunk: %s", e->d_name, p);
            }
            /* a finish-reason or usage chunk, the two that end every answer */
            if ((strstr(p, "\"finish_reason\":\"") || strstr(p, "\"usage\":{")) && !strstr(p, "\"error\"") &&
                !strstr(p, "tool_calls")) {
                ends++;
                if (!fast)
                    fail_msg("%s: the fast scanner refused an end chunk: %s", e->d_name, p);
            }
            if (n < 1000)
                same_mutated(p, n, &st);
        }
        fclose(f);
    }
    closedir(d);
    print_message("fast vs full, wire formats: %d files, %d token chunks, %d end chunks, %d payloads, %d on the fast "
                  "scanner\n",
                  files, tokens, ends, st.total, st.fast);
    assert_true(files >= 10 && tokens >= 50 && ends >= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_path_escapes),
        cmocka_unit_test(test_vllm_stream),
        cmocka_unit_test(test_ollama_stream),
        cmocka_unit_test(test_openai_stream),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_completion),
        cmocka_unit_test(test_fast_equals_full_templates),
        cmocka_unit_test(test_fast_equals_full_mutated),
        cmocka_unit_test(test_fast_end_chunks),
        cmocka_unit_test(test_fast_equals_full_wire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
