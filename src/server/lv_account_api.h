/* lv_account_api.h - the signed-in person's own routes: sign-in with a password (or, with --auth
 * token, the access token), sign-out here or everywhere, who am I, own API keys, password change,
 * invite redemption (/api/v1/login, /logout, /me, /keys..., /password, /invite). Loop thread only. */
#ifndef LV_ACCOUNT_API_H
#define LV_ACCOUNT_API_H

#include <stdbool.h>

#include "lv_httpd.h"

struct lv_app;

/** True when path is one of these routes. */
bool lv_account_api_route(const char *path);
/** Answer r (GET, HEAD or POST on one of these routes). It authenticates r itself (lv_auth_check),
 * route by route: sign-in and invite need no credential and must not count a stale cookie as a
 * failed one; sign-out of this browser works with an expired one; the others need an account.
 * The caller has already refused a POST from another site's page (Origin). */
int lv_account_api_handle(struct lv_app *app, lv_req_t *r);

#endif
