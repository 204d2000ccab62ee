/* lv_account_api.h - the signed-in person's own routes: sign-in with a password, sign-out (here or everywhere), who am I, own API keys, redeem an invite (/api/v1/login, /api/v1/logout, /api/v1/me, /api/v1/keys..., /api/v1/invite). Loop thread only. */
#ifndef LV_ACCOUNT_API_H
#define LV_ACCOUNT_API_H

#include <stdbool.h>

#include "lv_httpd.h"
#include "lv_principal.h"

struct lv_app;

/** True when path is one of these routes. */
bool lv_account_api_route(const char *path);
/** Answer r (GET, HEAD or POST on one of these routes). who is the authenticated principal, or
 * NULL when the request carried no valid credential (only the routes that need none accept that). */
int lv_account_api_handle(struct lv_app *app, lv_req_t *r, const lv_principal_t *who);

#endif
