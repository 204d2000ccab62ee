/* lv_fair.c - the fair queue's weights from the accounts snapshot (lv_fair.h). */
#include "lv_fair.h"

#include "lv_app.h"

void lv_fair_apply(struct lv_app *app)
{
    (void)app;
}
