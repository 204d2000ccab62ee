/* lv_admin_api.h - the admin's routes under /api/v1/admin/: users, API keys, tenants, live sessions (kick), backends (drain/enable), the audit log. Loop thread only. */
#ifndef LV_ADMIN_API_H
#define LV_ADMIN_API_H

#include <stdbool.h>

#include "lv_httpd.h"
#include "lv_principal.h"

struct lv_app;

/** True when path is one of these routes. */
bool lv_admin_api_route(const char *path);
/** Answer r (GET, HEAD or POST on one of these routes). who is the authenticated principal, or
 * NULL when the request carried no valid credential (only the routes that need none accept that). */
int lv_admin_api_handle(struct lv_app *app, lv_req_t *r, const lv_principal_t *who);

#endif
