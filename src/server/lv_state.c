/* lv_state.c - wires the session registry to the state file (lv_persist.h, lv_statefile.h), in
 * single-node mode; a cluster keeps its sessions in Redis instead (lv_cluster_sessions.h). */
#include "lv_state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lv_app.h"
#include "lv_auth.h"
#include "lv_common.h"
#include "lv_config.h"
#include "lv_log.h"
#include "lv_persist.h"
#include "lv_session.h"
#include "lv_statefile.h"

/* Changes are written at most once a period; a crash loses about one period plus one write. */
#define SAVE_PERIOD_MS 1000
/* With nothing changed the file is still rewritten this often: it says when its attached sessions
 * were last seen, which decides their expiry after a crash. */
#define HEARTBEAT_MS 60000

typedef struct {
    lv_registry_t *reg;
    uint64_t now_ms;
    size_t refused_full, refused_other;
} restore_ctx_t;

static int restore_one(void *ud, const lv_statefile_session_t *saved)
{
    restore_ctx_t *ctx = ud;
    int rc = lv_registry_restore(ctx->reg, saved, ctx->now_ms);
    if (rc == LV_ELIMIT)
        ctx->refused_full++;
    else if (rc)
        ctx->refused_other++;
    return rc;
}

static int snapshot(void *ud, bool force, size_t encode_budget_bytes, size_t max_bytes, lv_statefile_snap_t *out)
{
    lv_app_t *app = ud;
    return lv_registry_snapshot(app->reg, force, encode_budget_bytes, max_bytes, out);
}

void lv_state_start(lv_app_t *app)
{
    char path[1024];
    lv_persist_t *p = NULL;
    const lv_config_t *cfg = &app->cfg;
    if (app->cluster || cfg->redis_url[0]) {
        /* each session's record is in Redis (lv_cluster_sessions.h): any frontend resumes it */
        LV_INFO("cluster mode: sessions live in Redis; the state file is neither loaded nor written");
        return;
    }
    if (strcmp(cfg->state_file, "none") == 0) {
        LV_INFO("sessions are not kept across restarts (--state-file none)");
        return;
    }
    if (cfg->state_file[0]) {
        snprintf(path, sizeof(path), "%s", cfg->state_file);
    } else {
        if (lv_auth_ensure_dir(cfg->config_dir) != 0) {
            LV_WARN("cannot create %s: sessions will not survive a restart", cfg->config_dir);
            return;
        }
        snprintf(path, sizeof(path), "%s/sessions.db", cfg->config_dir);
    }
    int rc = lv_persist_open(app->loop, path, &p);
    if (rc == LV_EAGAIN) {
        LV_WARN("another livevlm process keeps its sessions in %s: this one's sessions will not survive a "
                "restart (give each server its own --state-file or --config-dir)",
                path);
        return;
    }
    if (rc) {
        LV_WARN("cannot use %s for sessions (%s): they will not survive a restart", path, lv_strerror(rc));
        return;
    }
    lv_statefile_limits_t lim = {LV_STATEFILE_MAX_BYTES, cfg->max_sessions, (uint64_t)cfg->session_idle_s * 1000u};
    lv_statefile_stats_t st;
    restore_ctx_t ctx = {app->reg, lv_now_ms(), 0, 0};
    const char *why = NULL;
    rc = lv_persist_load(p, &lim, lv_wall_ms(), restore_one, &ctx, &st, &why);
    if (rc)
        LV_WARN("starting with no sessions: the saved ones could not be loaded");
    else if (st.sessions)
        LV_INFO("restored %zu of the %zu session(s) saved in %s (%zu expired, %zu over the session cap, %zu "
                "refused)",
                st.delivered - st.refused, st.sessions, path, st.expired, st.over_cap + ctx.refused_full,
                ctx.refused_other);
    if (!rc && st.settings_reset)
        LV_WARN("%zu restored session(s) had settings this version refuses: they have the defaults now",
                st.settings_reset);
    if (lv_persist_start(p, SAVE_PERIOD_MS, HEARTBEAT_MS, snapshot, app) != 0) {
        LV_WARN("cannot start saving sessions to %s: they will not survive a restart", path);
        lv_persist_destroy(p);
        return;
    }
    app->persist = p;
}

void lv_state_save_final(lv_app_t *app)
{
    size_t n = 0;
    if (app->persist && lv_persist_save_now(app->persist, &n) == 0)
        LV_INFO("saved %zu session(s) for the next start", n);
}

void lv_state_destroy(lv_app_t *app)
{
    lv_persist_destroy(app->persist);
    app->persist = NULL;
}
