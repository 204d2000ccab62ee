/* lv_settings.c - session settings: defaults, strict all-or-nothing validation, JSON form, presets. */
#include "lv_settings.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "lv_common.h"
#include "lv_rtspurl.h"
#include "lv_utf8.h"

/* Ranges from docs/protocol.md, "Settings object". */
#define MAX_TOKENS_MIN 1
#define MAX_TOKENS_MAX 4096
#define MAX_TOKENS_DEFAULT 512
#define TEMPERATURE_MIN 0.0
#define TEMPERATURE_MAX 2.0
#define TEMPERATURE_DEFAULT 0.7
#define INTERVAL_MS_MIN 100
#define INTERVAL_MS_MAX 3600000
#define INTERVAL_MS_DEFAULT 1000
#define FRAME_MAX_SIDE_MIN 64
#define FRAME_MAX_SIDE_MAX 4096
#define FRAME_MAX_SIDE_DEFAULT 768
#define JPEG_QUALITY_MIN 10
#define JPEG_QUALITY_MAX 100
#define JPEG_QUALITY_DEFAULT 80
#define STATS_INTERVAL_MS_MIN 250 /* 0 is also allowed: off */
#define STATS_INTERVAL_MS_MAX 60000
#define STATS_INTERVAL_MS_DEFAULT 1000

/* Our own wording. "scene" comes first and is the default prompt (one sentence, see header). */
static const lv_preset_t presets[] = {
    {"scene", "Scene description",
     "Describe in one or two sentences what is happening in this picture."},
    {"objects", "Object list",
     "List the distinct objects you can see in this picture, one per line, most prominent first."},
    {"activity", "Activity",
     "What are the people or animals in this picture doing right now? Answer in one short sentence, "
     "or say that nobody is visible."},
    {"safety", "Safety check",
     "Look for hazards in this picture: fire, smoke, a person lying on the floor, a weapon, a fall, "
     "spilled liquid, or anyone in distress. Start your answer with \"ALERT:\" followed by what you "
     "see if there is any such hazard; otherwise answer only \"SAFE\"."},
    {"emotion", "Facial expression",
     "For each clearly visible face, say which emotion its expression most likely shows (for example "
     "happy, sad, surprised, angry, neutral) and how sure you are. If no face is visible, say so."},
    {"accessibility", "Describe for a blind user",
     "You are helping someone who cannot see. Describe the surroundings in this picture plainly: "
     "where things are relative to the viewer, any obstacles or steps ahead, and any visible text "
     "that matters. Keep it short."},
    {"ocr", "Read text",
     "Transcribe all legible text in this picture exactly as written, keeping line breaks. If there "
     "is no readable text, answer \"NO TEXT\"."},
    {"yesno", "Yes/no question",
     "Is there a person in this picture? Answer with a single word, YES or NO."},
    {"robot_simple", "Robot: velocity command",
     "You steer a small wheeled robot whose camera took this picture. Choose the next move to go "
     "forward safely while avoiding obstacles. Reply with exactly one line of the form "
     "\"linear=<m/s> angular=<rad/s>\" with linear between -0.3 and 0.3 and angular between -1.0 "
     "and 1.0; use linear=0 angular=0 to stop."},
    {"robot_ros", "Robot: ROS cmd_vel plan",
     "You plan the next few seconds of motion for a ROS robot whose camera took this picture. Reply "
     "only with a JSON array of at most 5 steps, each {\"linear_x\": m/s, \"angular_z\": rad/s, "
     "\"duration_s\": s}, where |linear_x| <= 0.5, |angular_z| <= 1.5 and 0.1 <= duration_s <= 2.0. "
     "Stop (zeros) if the way is blocked or unclear."},
};

const lv_preset_t *lv_presets(size_t *count)
{
    if (count)
        *count = LV_ARRAY_LEN(presets);
    return presets;
}

/* Copy and zero the rest of dst, so no stale bytes of an older value linger behind the NUL and
 * two settings structs with equal values compare equal with memcmp(). */
static void copy_str(char *dst, size_t dst_size, const char *src, size_t len)
{
    if (len >= dst_size)
        len = dst_size - 1;
    memcpy(dst, src, len);
    memset(dst + len, 0, dst_size - len);
}

void lv_settings_defaults(lv_settings_t *s)
{
    memset(s, 0, sizeof(*s));
    copy_str(s->prompt, sizeof(s->prompt), presets[0].prompt, strlen(presets[0].prompt));
    s->max_tokens = MAX_TOKENS_DEFAULT;
    s->temperature = TEMPERATURE_DEFAULT;
    s->interval_ms = INTERVAL_MS_DEFAULT;
    s->backend[0] = '\0';
    s->model[0] = '\0'; /* "" = the first vision model found, resolved by the caller */
    s->frame_max_side = FRAME_MAX_SIDE_DEFAULT;
    s->jpeg_quality = JPEG_QUALITY_DEFAULT;
    s->stats_interval_ms = STATS_INTERVAL_MS_DEFAULT;
    s->debug = false;
    copy_str(s->source, sizeof(s->source), "page", 4);
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Each checker validates one JSON value and, when valid, stores it into the scratch copy. They
 * return NULL on success or a static reason. */
static const char *check_int(const json_t *v, long long min, long long max, int *dst)
{
    if (!json_is_integer(v))
        return "must be an integer";
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return "out of range";
    *dst = (int)x;
    return NULL;
}

static const char *check_prompt(const json_t *v, lv_settings_t *s)
{
    if (!json_is_string(v))
        return "must be a string";
    const unsigned char *p = (const unsigned char *)json_string_value(v);
    size_t len = json_string_length(v);
    if (memchr(p, '\0', len))
        return "must not contain NUL";
    /* Jansson validates UTF-8 when it parses, but json_stringn_nocheck() can smuggle anything
     * in, and a prompt is forwarded to backends verbatim: check it here. */
    if (!lv_utf8_valid(p, len))
        return "must be valid UTF-8";
    /* Trim first so "   " counts as empty and stray newlines do not eat into the cap. */
    while (len > 0 && is_space(p[0]))
        p++, len--;
    while (len > 0 && is_space(p[len - 1]))
        len--;
    if (len == 0)
        return "must not be empty";
    if (len > LV_PROMPT_MAX)
        return "longer than 4000 bytes";
    copy_str(s->prompt, sizeof(s->prompt), (const char *)p, len);
    return NULL;
}

static const char *check_backend(const json_t *v, lv_settings_t *s)
{
    if (!json_is_string(v))
        return "must be a string";
    const char *p = json_string_value(v);
    size_t len = json_string_length(v);
    if (len > LV_BACKEND_ID_MAX)
        return "longer than 64 bytes";
    /* Backend ids appear in logs, metrics labels and JSON; keep them to a boring alphabet. */
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return "may only contain A-Z a-z 0-9 . _ -";
    }
    copy_str(s->backend, sizeof(s->backend), p, len);
    return NULL;
}

static const char *check_model(const json_t *v, lv_settings_t *s)
{
    if (!json_is_string(v))
        return "must be a string";
    const unsigned char *p = (const unsigned char *)json_string_value(v);
    size_t len = json_string_length(v);
    if (len > LV_MODEL_MAX)
        return "longer than 256 bytes";
    /* Model ids are free-form upstream ("org/name:tag", sometimes non-ASCII), so accept any
     * UTF-8 text but no control characters: the id goes into request bodies and log lines. */
    if (!lv_utf8_valid(p, len))
        return "must be valid UTF-8";
    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7F)
            return "must not contain control characters";
        /* C1 controls U+0080..U+009F are encoded as C2 80..C2 9F. */
        if (p[i] == 0xC2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9F)
            return "must not contain control characters";
    }
    copy_str(s->model, sizeof(s->model), (const char *)p, len);
    return NULL;
}

static const char *check_temperature(const json_t *v, lv_settings_t *s)
{
    /* Integers are accepted too: "temperature": 1 is a perfectly good number in JSON. */
    if (!json_is_number(v))
        return "must be a number";
    double t = json_number_value(v);
    if (!isfinite(t) || t < TEMPERATURE_MIN || t > TEMPERATURE_MAX)
        return "out of range";
    s->temperature = t == 0 ? 0.0 : t; /* -0.0 would come back out as "-0.0" */
    return NULL;
}

static const char *check_stats_interval(const json_t *v, lv_settings_t *s)
{
    if (!json_is_integer(v))
        return "must be an integer";
    json_int_t x = json_integer_value(v);
    if (x != 0 && (x < STATS_INTERVAL_MS_MIN || x > STATS_INTERVAL_MS_MAX))
        return "must be 0 or 250..60000";
    s->stats_interval_ms = (int)x;
    return NULL;
}

/* Syntax only: a camera id's existence is the server's to check (it knows the cameras). */
static const char *check_source(const json_t *v, lv_settings_t *s)
{
    if (!json_is_string(v))
        return "must be a string";
    const char *p = json_string_value(v);
    size_t len = json_string_length(v);
    if (!(len == 4 && memcmp(p, "page", 4) == 0) && !(len == 6 && memcmp(p, "webrtc", 6) == 0) &&
        !(len > 7 && memcmp(p, "camera:", 7) == 0 && lv_camera_id_valid(p + 7, len - 7)))
        return "must be \"page\", \"webrtc\" or \"camera:<id>\" (id: 1..32 of a-z 0-9 _ -)";
    copy_str(s->source, sizeof(s->source), p, len);
    return NULL;
}

int lv_settings_apply_json(lv_settings_t *s, const json_t *obj, const char **bad_field, const char **why)
{
    const char *field = NULL, *reason = NULL;
    const json_t *v;
    lv_settings_t tmp;

    if (!s || !json_is_object(obj)) {
        field = "settings";
        reason = "must be an object";
        goto fail;
    }

    /* Validate onto a scratch copy and commit only when every present field passed, so a
     * rejected update leaves the session exactly as it was (protocol: "nothing changes").
     * The struct is ~4.4 KB; on the stack is fine. */
    tmp = *s;

#define FIELD(name, expr)                                                                          \
    do {                                                                                           \
        if ((v = json_object_get(obj, name)) != NULL && (reason = (expr)) != NULL) {               \
            field = name;                                                                          \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

    FIELD("prompt", check_prompt(v, &tmp));
    FIELD("max_tokens", check_int(v, MAX_TOKENS_MIN, MAX_TOKENS_MAX, &tmp.max_tokens));
    FIELD("temperature", check_temperature(v, &tmp));
    FIELD("interval_ms", check_int(v, INTERVAL_MS_MIN, INTERVAL_MS_MAX, &tmp.interval_ms));
    FIELD("backend", check_backend(v, &tmp));
    FIELD("model", check_model(v, &tmp));
    FIELD("frame_max_side", check_int(v, FRAME_MAX_SIDE_MIN, FRAME_MAX_SIDE_MAX, &tmp.frame_max_side));
    FIELD("jpeg_quality", check_int(v, JPEG_QUALITY_MIN, JPEG_QUALITY_MAX, &tmp.jpeg_quality));
    FIELD("stats_interval_ms", check_stats_interval(v, &tmp));
    FIELD("source", check_source(v, &tmp));
    if ((v = json_object_get(obj, "debug")) != NULL) {
        if (!json_is_boolean(v)) {
            field = "debug";
            reason = "must be true or false";
            goto fail;
        }
        tmp.debug = json_is_true(v);
    }
#undef FIELD

    *s = tmp;
    return 0;

fail:
    if (bad_field)
        *bad_field = field;
    if (why)
        *why = reason;
    return LV_EINVAL;
}

json_t *lv_settings_to_json(const lv_settings_t *s)
{
    if (!s)
        return NULL;
    /* json_pack validates the strings as UTF-8; every field here already passed validation
     * (or is a default), so a NULL result means out of memory. */
    return json_pack("{s:s, s:i, s:f, s:i, s:s, s:s, s:i, s:i, s:i, s:b, s:s}",
                     "prompt", s->prompt,
                     "max_tokens", s->max_tokens,
                     "temperature", s->temperature,
                     "interval_ms", s->interval_ms,
                     "backend", s->backend,
                     "model", s->model,
                     "frame_max_side", s->frame_max_side,
                     "jpeg_quality", s->jpeg_quality,
                     "stats_interval_ms", s->stats_interval_ms,
                     "debug", s->debug ? 1 : 0,
                     "source", s->source);
}
