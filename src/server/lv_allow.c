/* lv_allow.c - tenants' allowed backends and models (lv_allow.h). */
#include "lv_allow.h"

#include <stdio.h>
#include <string.h>

#include "lv_accounts.h"
#include "lv_allowlist.h"
#include "lv_app.h"
#include "lv_backend.h"
#include "lv_common.h"

void lv_allow_of(lv_app_t *app, const char *tenant, lv_allow_t *out)
{
    const lv_acct_snap_t *snap = lv_accounts_snap(app);
    const char *id = tenant && tenant[0] ? tenant : LV_ACCT_DEFAULT_TENANT;
    const lv_tenant_t *t = snap ? lv_acct_snap_tenant(snap, id) : NULL;
    out->tenant = id;
    out->backends = t ? t->backends : "";
    out->models = t ? t->models : "";
}

bool lv_allow_backend(const lv_allow_t *a, const char *backend_id)
{
    return lv_allowlist_has(a->backends, backend_id);
}

bool lv_allow_model(const lv_allow_t *a, const char *model) { return lv_allowlist_has(a->models, model); }

const char *lv_allow_check(const lv_allow_t *a, const lv_settings_t *st, const char **field, char *msg,
                           size_t msg_size)
{
    if (st->backend[0] && !lv_allow_backend(a, st->backend)) {
        *field = "backend";
        snprintf(msg, msg_size, "backend '%.64s' is not allowed for tenant '%.32s' (it may use: %.200s)", st->backend,
                 a->tenant, a->backends);
        return "backend_not_allowed";
    }
    if (!lv_allow_model(a, st->model)) {
        *field = "model";
        if (st->model[0])
            snprintf(msg, msg_size, "model '%.256s' is not allowed for tenant '%.32s' (it may use: %.200s)", st->model,
                     a->tenant, a->models);
        else
            snprintf(msg, msg_size, "tenant '%.32s' may use only some models: choose one of %.200s", a->tenant,
                     a->models);
        return "model_not_allowed";
    }
    return NULL;
}

/* 1 when a backend the tenant may use lists model (its last known list) */
static bool served_for(lv_app_t *app, const lv_allow_t *a, const char *model)
{
    if (!lv_allowlist_restricts(a->backends))
        return lv_pool_model_known(app->pool, "", model) == 1;
    char id[LV_BACKEND_ID_MAX + 1];
    for (size_t i = 0; lv_allowlist_at(a->backends, i, id, sizeof(id)) == 0; i++)
        if (lv_pool_find(app->pool, id) && lv_pool_model_known(app->pool, id, model) == 1)
            return true;
    return false;
}

int lv_allow_default_model(lv_app_t *app, const lv_allow_t *a, char *out, size_t out_size)
{
    const char *def = lv_pool_default_model(app->pool);
    char m[LV_MODEL_MAX + 1];
    out[0] = '\0';
    if (def && lv_allow_model(a, def) && served_for(app, a, def)) {
        snprintf(out, out_size, "%s", def);
        return 0;
    }
    if (lv_allowlist_restricts(a->models)) {
        for (size_t i = 0; lv_allowlist_at(a->models, i, m, sizeof(m)) == 0; i++)
            if (served_for(app, a, m)) {
                snprintf(out, out_size, "%s", m);
                return 0;
            }
        lv_allowlist_at(a->models, 0, out, out_size); /* nobody listed theirs yet: try it */
        return 0;
    }
    /* any model, some backends: the first model of the first allowed backend in rotation */
    for (size_t i = 0; lv_allowlist_at(a->backends, i, m, sizeof(m)) == 0; i++) {
        const lv_backend_t *b = lv_pool_find(app->pool, m);
        if (b && b->healthy && b->n_models) {
            snprintf(out, out_size, "%s", b->models[0]);
            return 0;
        }
    }
    if (!def)
        return LV_ENOTFOUND;
    snprintf(out, out_size, "%s", def);
    return 0;
}

void lv_allow_fill(const lv_allow_t *a, lv_settings_t *st)
{
    snprintf(st->allow_backends, sizeof(st->allow_backends), "%s", a->backends);
}
