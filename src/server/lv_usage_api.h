/* lv_usage_api.h - GET /api/v1/usage: answers recorded, filtered, as JSON or CSV. Loop thread only. */
#ifndef LV_USAGE_API_H
#define LV_USAGE_API_H

#include <stdbool.h>

#include "lv_httpd.h"
#include "lv_principal.h"

struct lv_app;

/** True when path is one of these routes. */
bool lv_usage_api_route(const char *path);
/** Answer r (GET, HEAD or POST on one of these routes). who is the authenticated principal, or
 * NULL when the request carried no valid credential (only the routes that need none accept that). */
int lv_usage_api_handle(struct lv_app *app, lv_req_t *r, const lv_principal_t *who);

#endif
