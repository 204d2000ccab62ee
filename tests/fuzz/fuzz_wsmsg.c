/* fuzz_wsmsg.c - libFuzzer driver for client text messages and error replies.
 * fuzz-sources: src/proto/lv_wsmsg.c
 * fuzz-sources: src/common/lv_buf.c src/common/lv_common.c src/common/lv_json_str.c src/common/lv_utf8.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_utf8.h"
#include "lv_wsmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lv_client_msg_t m;
    const char *code = NULL, *text = NULL;
    /* The production caps: 64 KiB, depth 16. */
    int rc = lv_wsmsg_parse((const char *)data, size, 65536, 16, &m, &code, &text);
    if (rc == 0) {
        /* Touch everything the caller would use. */
        if (!m.root || !m.type_name || strlen(m.type_name) > size)
            abort();
        if (m.session_id && strlen(m.session_id) > LV_WSMSG_ID_MAX)
            abort();
        if (m.resume_secret && strlen(m.resume_secret) > LV_WSMSG_ID_MAX)
            abort();
        if (m.settings && !json_is_object(m.settings))
            abort();
        if (m.t && !json_is_number(m.t))
            abort();
    } else if (!code || !text || m.root) {
        abort();
    }
    lv_wsmsg_free(&m);

    /* The same bytes as message and field of an error reply (any bytes, made a C string). */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char *reply = lv_wsmsg_error("bad_message", s, size & 1 ? s : NULL);
    if (!reply)
        abort();
    json_t *back = json_loads(reply, JSON_REJECT_DUPLICATES, NULL);
    if (!back)
        abort(); /* a reply must always be valid JSON */
    /* and says back exactly the text it was given when that text was UTF-8 */
    json_t *msg = json_object_get(back, "message");
    if (!json_is_string(msg) || (lv_utf8_valid(s, strlen(s)) && strcmp(json_string_value(msg), s) != 0))
        abort();
    json_decref(back);
    free(reply);
    free(s);
    return 0;
}
