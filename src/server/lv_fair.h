/* lv_fair.h - the fair queue's weights from the accounts snapshot: tenants' weights and users'
 * weights within their tenant (docs/internals/accounts.md "Tenants and the fair queue"). Loop
 * thread only. */
#ifndef LV_FAIR_H
#define LV_FAIR_H

struct lv_app;

/** Apply the current snapshot's tenant and user weights to the scheduler (single node) or to what
 * this frontend sends with its jobs (cluster). lv_accounts.c calls it after every snapshot it
 * installs. */
void lv_fair_apply(struct lv_app *app);

#endif
