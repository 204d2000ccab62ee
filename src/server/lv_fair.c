/* lv_fair.c - the fair queue's weights from the accounts snapshot (lv_fair.h): tenants' weights
 * and users' (keyed by their principal key "u:<id>") into the scheduler, which the cluster's
 * dispatcher also asks for what each job carries (lv_cluster.c). --user-weight (per client
 * address, token mode) is applied too, so one place decides every weight. */
#include "lv_fair.h"

#include <stdio.h>

#include "lv_accounts.h"
#include "lv_app.h"
#include "lv_log.h"

typedef struct {
    lv_drr_t *drr;
    size_t failed;
} apply_t;

static int apply_tenant(const lv_tenant_t *t, void *ud)
{
    apply_t *a = ud;
    if (t->weight != 1 && lv_drr_set_tenant_weight(a->drr, t->id, t->weight) != 0)
        a->failed++;
    return 0;
}

static int apply_user(const lv_user_t *u, void *ud)
{
    apply_t *a = ud;
    char key[LV_PRINCIPAL_KEY_MAX];
    /* the principal's key with accounts (lv_principal.h) */
    snprintf(key, sizeof(key), "u:%s", u->id);
    if (u->weight != 1 && lv_drr_set_weight(a->drr, key, u->weight) != 0)
        a->failed++;
    return 0;
}

void lv_fair_apply(struct lv_app *app)
{
    lv_drr_t *drr = &app->drr;
    if (drr->quantum == 0) /* the scheduler is not made yet: lv_engine_start applies it then */
        return;
    /* weights not in the new set (a user removed, a weight back to 1) must not linger */
    if (lv_drr_clear_weights(drr) != 0) { /* never from inside a run: a bug if so */
        LV_WARN("fair queue: weights not updated (the scheduler is running)");
        return;
    }
    apply_t a = {.drr = drr, .failed = 0};
    for (size_t i = 0; i < app->cfg.n_user_weights; i++)
        if (lv_drr_set_weight(drr, app->cfg.user_weights[i].user, app->cfg.user_weights[i].weight) != 0)
            a.failed++;
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    if (snap) {
        lv_acct_snap_each_tenant(snap, apply_tenant, &a);
        lv_acct_snap_each_user(snap, apply_user, &a);
    }
    if (a.failed)
        LV_WARN("fair queue: %zu weights not applied (more than %d users or tenants with a weight other "
                "than 1, or out of memory); they count as 1",
                a.failed, LV_DRR_MAX_WEIGHTS);
}
