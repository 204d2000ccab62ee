/* lv_session_rec.h - the durable part of a session as a plain value: what the store port
 * (src/core/lv_store.h) keeps and the state file (lv_statefile.h) encodes. No behaviour. */
#ifndef LV_SESSION_REC_H
#define LV_SESSION_REC_H

#include <stdbool.h>
#include <stdint.h>

#include "lv_principal.h"
#include "lv_secret.h"
#include "lv_settings.h"

#define LV_SESSION_ID_LEN 32 /* hex chars */

/* The durable part of a session. */
typedef struct {
    char id[LV_SESSION_ID_LEN + 1];
    char secret_hash[LV_SECRET_HASH_LEN + 1];
    char principal[LV_PRINCIPAL_KEY_MAX]; /* who created it (lv_principal.h): per-principal caps */
    char tenant[LV_PRINCIPAL_ID_MAX];     /* the principal's tenant when it was created: the fair
                                           * queue's first level ("default" without accounts and
                                           * in records written before tenants existed) */
    lv_settings_t settings;
    bool started;
    uint64_t created_ms;                  /* wall clock */
    uint64_t total_inferences;
    double avg_latency_ms;
} lv_session_rec_t;

#endif
