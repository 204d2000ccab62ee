/* lv_oidc.c - single sign-on (lv_oidc.h). */
#include "lv_oidc.h"

#include "lv_app.h"
#include "lv_common.h"

int lv_oidc_start(struct lv_app *app)
{
    (void)app;
    return 0;
}

void lv_oidc_stop(struct lv_app *app)
{
    (void)app;
}

bool lv_oidc_route(const char *path)
{
    (void)path;
    return false;
}

int lv_oidc_handle(struct lv_app *app, lv_req_t *r)
{
    (void)app;
    return lv_req_respond_error(r, 404, "not_found", "single sign-on is not configured");
}

int lv_oidc_verify_bearer(struct lv_app *app, const char *jwt, lv_principal_t *out, const char **why)
{
    (void)app;
    (void)jwt;
    (void)out;
    *why = "bearer JWTs are not accepted: no --jwt-issuer";
    return LV_EAUTH;
}

bool lv_oidc_enabled(const struct lv_app *app)
{
    return app->oidc != NULL;
}
