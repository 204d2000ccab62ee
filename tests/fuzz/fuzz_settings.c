/* fuzz_settings.c - libFuzzer driver: parse JSON with jansson, apply onto the defaults, and check
 * that the result is always within range and survives a round trip through its JSON form.
 * fuzz-sources: src/proto/lv_settings.c
 * fuzz-sources: src/common/lv_utf8.c src/common/lv_common.c src/proto/lv_rtspurl.c
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_settings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_ranges(const lv_settings_t *s)
{
    size_t plen = strnlen(s->prompt, sizeof(s->prompt));
    if (plen == 0 || plen > LV_PROMPT_MAX || s->max_tokens < 1 || s->max_tokens > 4096 ||
        !(s->temperature >= 0 && s->temperature <= 2) || s->interval_ms < 100 ||
        s->interval_ms > 3600000 || strnlen(s->backend, sizeof(s->backend)) > LV_BACKEND_ID_MAX ||
        strnlen(s->model, sizeof(s->model)) > LV_MODEL_MAX || s->frame_max_side < 64 ||
        s->frame_max_side > 4096 || s->jpeg_quality < 10 || s->jpeg_quality > 100 ||
        (s->stats_interval_ms != 0 && (s->stats_interval_ms < 250 || s->stats_interval_ms > 60000)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *obj = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!obj)
        return 0;
    lv_settings_t s, before;
    const char *field = NULL, *why = NULL;
    lv_settings_defaults(&s);
    before = s;
    int rc = lv_settings_apply_json(&s, obj, &field, &why);
    if (rc != 0) {
        if (rc != LV_EINVAL || !field || !why || memcmp(&s, &before, sizeof(s)) != 0)
            abort(); /* a rejected update changes nothing */
    }
    check_ranges(&s);

    /* The JSON form of any accepted settings is itself accepted and gives the same settings. */
    json_t *j = lv_settings_to_json(&s);
    if (!j)
        abort();
    lv_settings_t again;
    lv_settings_defaults(&again);
    if (lv_settings_apply_json(&again, j, NULL, NULL) != 0 || memcmp(&s, &again, sizeof(s)) != 0)
        abort();
    json_decref(j);
    json_decref(obj);
    return 0;
}
