/* lv_camera_api.h - the HTTP side of the admin's cameras (lv_camera.h): GET /api/v1/cameras, GET
 * /api/v1/cameras/{id}/snapshot and the cameras' lines in /metrics (docs/protocol.md "Cameras").
 * Loop thread only; nothing here shows a camera's credentials (only url_clean and scrubbed
 * reasons leave lv_camera). */
#ifndef LV_CAMERA_API_H
#define LV_CAMERA_API_H

#include "lv_app.h"
#include "lv_buf.h"
#include "lv_httpd.h"

/** Answer a GET whose path starts with /api/v1/cameras (the caller checked the credential). Returns
 * what lv_req_respond returns. */
int lv_camera_api_get(lv_app_t *app, lv_req_t *r);
/** Append the cameras' metrics (Prometheus text; labels: the admin's camera ids) to out. 0 or
 * LV_ELIMIT/LV_ENOMEM. */
int lv_camera_api_metrics(lv_app_t *app, lv_buf_t *out);

#endif
