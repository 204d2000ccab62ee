/* lv_settings.h - a session's analysis settings: defaults, validation and JSON form.
 * Pure: no I/O. Ranges are the ones documented in docs/protocol.md ("Settings object"). */
#ifndef LV_SETTINGS_H
#define LV_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "lv_allowlist.h"

/* jansson's tree type, declared (not included) so that core, which holds settings, never sees
 * jansson; only the callers of the two JSON functions below include <jansson.h>. */
typedef struct json_t json_t;

#define LV_PROMPT_MAX 4000
#define LV_MODEL_MAX 256
#define LV_BACKEND_ID_MAX 64
#define LV_SOURCE_MAX 48           /* "page", "webrtc" or "camera:<id>" (id at most 32 bytes) */

typedef struct {
    char prompt[LV_PROMPT_MAX + 1];
    int max_tokens;            /* 1..4096 */
    double temperature;        /* 0..2 */
    int interval_ms;           /* 100..3600000 */
    char backend[LV_BACKEND_ID_MAX + 1]; /* "" = any backend serving the model */
    char model[LV_MODEL_MAX + 1];
    int frame_max_side;        /* 64..4096 */
    int jpeg_quality;          /* 10..100 */
    int stats_interval_ms;     /* 0 or 250..60000 */
    bool debug;
    /* where the session's frames come from: "page" (the page sends JPEGs on credits; default),
     * "camera:<id>" (an admin-defined camera; whether it exists is the server's check) or
     * "webrtc" (a video stream sent with POST /offer) */
    char source[LV_SOURCE_MAX + 1];
    /* Not a client's setting: never read from or written to JSON. The backend ids the session's
     * tenant may use ("" = any), set by the server from the principal's tenant (lv_allow.h) and
     * copied into each job with the rest, so the dispatcher picks only among them. */
    char allow_backends[LV_ALLOWLIST_MAX];
} lv_settings_t;

/** Fill s with the built-in defaults (prompt = the "scene" preset, model = ""). */
void lv_settings_defaults(lv_settings_t *s);

/** Apply a JSON object holding any subset of the fields onto *s, all or nothing.
 * Unknown fields are ignored. On a bad field returns LV_EINVAL, leaves *s untouched and points
 * *bad_field at the offending field's name (a static string) and *why at a reason (static). */
int lv_settings_apply_json(lv_settings_t *s, const json_t *obj, const char **bad_field, const char **why);

/** New JSON object with every field (caller owns the reference). */
json_t *lv_settings_to_json(const lv_settings_t *s);

/** A built-in prompt preset (ten of them, our own wording). */
typedef struct {
    const char *id;
    const char *label;
    const char *prompt;
} lv_preset_t;

/** Presets table; *count receives its length. */
const lv_preset_t *lv_presets(size_t *count);

#endif
