/* lv_camera_api.c - GET /api/v1/cameras, the cameras' snapshots and their /metrics lines
 * (lv_camera_api.h). */
#include "lv_camera_api.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lv_camera.h"
#include "lv_common.h"
#include "lv_httputil.h"
#include "lv_rtspurl.h"

#define PREFIX "/api/v1/cameras"

static json_t *camera_json(const lv_camera_t *cam)
{
    lv_camera_info_t in;
    lv_camera_info(cam, &in);
    /* a whole frame rate reads as 30, a measured one keeps two decimals */
    double fps = round(in.fps * 100.0) / 100.0;
    json_t *jfps = fps == floor(fps) ? json_integer((json_int_t)fps) : json_real(fps);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:o, s:I, s:o, s:s}", "id", in.id, "state",
                     lv_camera_state_name(in.state), "reason", in.reason, "url", in.url, "codec", in.codec, "width",
                     in.width, "height", in.height, "fps", jfps, "watchers", (json_int_t)in.watchers,
                     "last_frame_age_ms",
                     in.last_frame_age_ms < 0 ? json_null() : json_integer((json_int_t)in.last_frame_age_ms), "decode",
                     in.keyframes_only ? "keyframes" : "all");
}

static int respond_json(lv_req_t *r, int status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text)
        return lv_req_respond_error(r, 500, "internal", "out of memory");
    int rc = lv_req_respond(r, status, "application/json", text, strlen(text), true, NULL); /* no-store: httpd's */
    free(text);
    return rc;
}

static int list(lv_app_t *app, lv_req_t *r)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < lv_cameras_count(app->cameras); i++) {
        json_t *c = camera_json(lv_cameras_at(app->cameras, i));
        if (!c || json_array_append_new(arr, c) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return respond_json(r, 200, arr ? json_pack("{s:o}", "cameras", arr) : NULL);
}

static int snapshot(lv_app_t *app, lv_req_t *r, lv_camera_t *cam)
{
    char arg[16];
    uint32_t seq = 0;
    if (lv_query_get(r->query, "seq", arg, sizeof(arg)) == 0) {
        char *end;
        unsigned long v = strtoul(arg, &end, 10);
        if (end == arg || *end || v > 0xffffffffUL)
            return lv_req_respond_error(r, 400, "bad_request", "seq must be a sample number (answer_start's "
                                        "camera_frame)");
        seq = (uint32_t)v;
    }
    lv_frame_t *f = lv_camera_snapshot(cam, seq);
    if (!f)
        return lv_req_respond_error(r, 503, "no_frame", "the camera has no picture yet (it opens when a session "
                                    "watches it)");
    char hdr[96];
    /* httpd adds "cache-control: no-cache" to a non-JSON answer; the two combine (RFC 9111 5.2),
     * and no-store wins */
    snprintf(hdr, sizeof(hdr), "cache-control: no-store\r\nx-frame-seq: %u\r\n",
             (unsigned)(f->share_key & 0xffffffffu));
    int rc = lv_req_respond(r, 200, "image/jpeg", f->data, f->len, true, hdr);
    lv_frame_unref(f);
    return rc;
}

int lv_camera_api_get(lv_app_t *app, lv_req_t *r)
{
    const char *rest = r->path + strlen(PREFIX);
    if (strncmp(r->path, PREFIX, strlen(PREFIX)) != 0)
        return lv_req_respond_error(r, 404, "not_found", "no such API route");
    if (*rest == '\0' || strcmp(rest, "/") == 0)
        return list(app, r);
    /* /{id}/snapshot */
    if (*rest != '/')
        return lv_req_respond_error(r, 404, "not_found", "no such API route");
    rest++;
    const char *slash = strchr(rest, '/');
    if (!slash || strcmp(slash, "/snapshot") != 0)
        return lv_req_respond_error(r, 404, "not_found", "no such API route");
    size_t id_len = (size_t)(slash - rest);
    lv_camera_t *cam = lv_camera_id_valid(rest, id_len) ? lv_cameras_find(app->cameras, rest, id_len) : NULL;
    if (!cam)
        return lv_req_respond_error(r, 404, "camera_not_found", "no camera with that id is configured");
    return snapshot(app, r, cam);
}

int lv_camera_api_metrics(lv_app_t *app, lv_buf_t *out)
{
    size_t n = lv_cameras_count(app->cameras);
    int rc = 0;
    if (n == 0)
        return 0;
    static const lv_camera_state_t states[] = {LV_CAMERA_IDLE, LV_CAMERA_STARTING, LV_CAMERA_LIVE,
                                               LV_CAMERA_RECONNECTING, LV_CAMERA_FAILED};
    /* one family at a time (the exposition format wants a family's samples together) */
    rc = lv_buf_append_str(out, "# HELP livevlm_camera_state A camera's state: 1 for the one it is in.\n"
                                "# TYPE livevlm_camera_state gauge\n");
    for (size_t i = 0; !rc && i < n; i++) {
        lv_camera_info_t in;
        lv_camera_info(lv_cameras_at(app->cameras, i), &in);
        for (size_t k = 0; !rc && k < sizeof(states) / sizeof(states[0]); k++)
            rc = lv_buf_printf(out, "livevlm_camera_state{camera=\"%s\",state=\"%s\"} %d\n", in.id,
                               lv_camera_state_name(states[k]), in.state == states[k]);
    }
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"livevlm_camera_frames_total", "counter", "Pictures a camera's decoder delivered."},
        {"livevlm_camera_samples_total", "counter", "JPEG samples made of a camera for its watchers."},
        {"livevlm_camera_reconnects_total", "counter", "Restarts of a camera's stream after an error, its end or a stall."},
        {"livevlm_camera_watchers", "gauge", "Sessions watching a camera."},
        {"livevlm_camera_keyframes_only", "gauge", "1 while only a camera's keyframes are decoded."},
    };
    for (size_t f = 0; !rc && f < sizeof(fams) / sizeof(fams[0]); f++) {
        rc = lv_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help, fams[f].name, fams[f].type);
        for (size_t i = 0; !rc && i < n; i++) {
            lv_camera_info_t in;
            lv_camera_info(lv_cameras_at(app->cameras, i), &in);
            unsigned long long v = f == 0   ? in.frames
                                   : f == 1 ? in.samples
                                   : f == 2 ? in.reconnects
                                   : f == 3 ? in.watchers
                                            : (unsigned long long)in.keyframes_only;
            rc = lv_buf_printf(out, "%s{camera=\"%s\"} %llu\n", fams[f].name, in.id, v);
        }
    }
    return rc;
}
