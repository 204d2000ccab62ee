/* test_chatresp.c - chunk and completion parsing on payloads shaped like vLLM, Ollama, OpenAI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lv_chatresp.h"
#include "lv_common.h"

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
    assert_null(r.priv_fast); /* real usage: the full parser reads it */
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
