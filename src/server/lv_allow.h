/* lv_allow.h - what a principal's tenant may use: its allowed backends and models (lv_acct.h
 * lv_tenant_t backends/models, comma lists, "" = all), enforced wherever a model or backend is
 * chosen: the catalogue (GET /api/v1/models, /api/v1/config), a session's settings (hello,
 * update_settings, and again before each credit, so narrowing a tenant stops its running
 * sessions), POST /api/v1/analyze, and the dispatcher's choice of backend (the engine copies the
 * tenant's backends into lv_settings_t.allow_backends; lv_dispatch_local picks only among them).
 * Without accounts, or for a tenant the snapshot does not hold, everything is allowed (the tenant
 * table is where restrictions live). Loop thread only: it reads the accounts snapshot. */
#ifndef LV_ALLOW_H
#define LV_ALLOW_H

#include <stdbool.h>
#include <stddef.h>

#include "lv_settings.h"

struct lv_app;

/* A tenant's lists, borrowed from the snapshot: valid until the next loop turn. */
typedef struct {
    const char *tenant;   /* the id asked about */
    const char *backends; /* "" = all */
    const char *models;   /* "" = all */
} lv_allow_t;

/** The allow-lists of tenant (NULL or "" = "default"). */
void lv_allow_of(struct lv_app *app, const char *tenant, lv_allow_t *out);

/** Whether a may use backend id / model (exact, or Ollama's ":latest" twin). */
bool lv_allow_backend(const lv_allow_t *a, const char *backend_id);
bool lv_allow_model(const lv_allow_t *a, const char *model);

/** Check st's model and backend against a. NULL when both are allowed; else the error code
 * ("model_not_allowed" or "backend_not_allowed"), *field set to "model" or "backend" and a
 * sentence naming the model or backend and the tenant in msg. */
const char *lv_allow_check(const lv_allow_t *a, const lv_settings_t *st, const char **field, char *msg,
                           size_t msg_size);

/** The model a session of a's tenant gets when it names none: the pool's default
 * (lv_pool_default_model) when the tenant may use it on one of its backends; else the first
 * allowed model an allowed backend lists; else, when the tenant names models, its first one (the
 * backends have not listed theirs yet); else the pool's default. 0 with out filled, or
 * LV_ENOTFOUND (out = ""). */
int lv_allow_default_model(struct lv_app *app, const lv_allow_t *a, char *out, size_t out_size);

/** Copy a's backends into st->allow_backends (what the dispatcher filters on). */
void lv_allow_fill(const lv_allow_t *a, lv_settings_t *st);

#endif
