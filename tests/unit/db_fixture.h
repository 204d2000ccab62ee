/* db_fixture.h - a fresh accounts database per test for test_db.c and test_acct.c: SQLite in a new
 * temp dir always; PostgreSQL when LIVEVLM_TEST_PG holds a URL (scripts/pg-test.sh starts one),
 * where each test gets a schema of its own (search_path in the URL) dropped afterwards. */
#ifndef DB_FIXTURE_H
#define DB_FIXTURE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_db.h"
#include "lv_rand.h"

typedef struct {
    bool pg;
    char dir[256];       /* SQLite: the config dir */
    char schema[40];     /* PostgreSQL: the test's schema */
    char url[1024];
} dbfx_t;

static const char *dbfx_pg_base(void)
{
    const char *u = getenv("LIVEVLM_TEST_PG");
    return u && *u ? u : NULL;
}

static void dbfx_quiet(void *arg, const char *msg) { (void)arg, (void)msg; }

static int dbfx_pg_admin(const char *sql)
{
    PGconn *c = PQconnectdb(dbfx_pg_base());
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "dbfx: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    PQsetNoticeProcessor(c, dbfx_quiet, NULL);
    PGresult *r = PQexec(c, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        fprintf(stderr, "dbfx: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    return rc;
}

/* kind: "sqlite" or "pg" (a cmocka prestate). */
static int dbfx_setup(void **state)
{
    const char *kind = *state;
    dbfx_t *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    fx->pg = !strcmp(kind, "pg");
    if (fx->pg) {
        char hex[17];
        if (!dbfx_pg_base() || lv_rand_hex(hex, sizeof(hex), 8))
            goto fail;
        snprintf(fx->schema, sizeof(fx->schema), "t_%s", hex);
        char sql[128];
        snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", fx->schema);
        if (dbfx_pg_admin(sql))
            goto fail;
        const char *base = dbfx_pg_base();
        snprintf(fx->url, sizeof(fx->url), "%s%coptions=-csearch_path%%3D%s", base, strchr(base, '?') ? '&' : '?',
                 fx->schema);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(fx->dir, sizeof(fx->dir), "%s/lvdb.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(fx->dir))
            goto fail;
        fx->url[0] = '\0';
    }
    *state = fx;
    return 0;
fail:
    free(fx);
    return -1;
}

static int dbfx_teardown(void **state)
{
    dbfx_t *fx = *state;
    char cmd[512];
    if (fx->pg) {
        snprintf(cmd, sizeof(cmd), "DROP SCHEMA %s CASCADE", fx->schema);
        dbfx_pg_admin(cmd);
    } else {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "dbfx: could not remove %s\n", fx->dir);
    }
    free(fx);
    return 0;
}

static lv_db_t *dbfx_open(dbfx_t *fx, uv_loop_t *loop)
{
    lv_db_t *db = NULL;
    char err[512];
    int rc = lv_db_open(loop, fx->url, fx->dir, &db, err, sizeof(err));
    if (rc)
        fprintf(stderr, "dbfx_open: %s\n", err);
    return rc ? NULL : db;
}

/* Each test twice: on SQLite, and on PostgreSQL when LIVEVLM_TEST_PG is set. */
#define DBFX_TEST(fn) cmocka_unit_test_prestate_setup_teardown(fn, dbfx_setup, dbfx_teardown, (void *)"sqlite")
#define DBFX_TEST_PG(fn) cmocka_unit_test_prestate_setup_teardown(fn, dbfx_setup, dbfx_teardown, (void *)"pg")

/* Run tests[0..n) (SQLite) and then pg[0..n_pg) when a PostgreSQL URL is given. */
static int dbfx_run(const char *name, const struct CMUnitTest *tests, size_t n, const struct CMUnitTest *pg,
                    size_t n_pg)
{
    int failed = 0;
    /* scripts/test.sh runs these binaries a second time under scripts/pg-test.sh for PostgreSQL
     * alone, so its SQLite cases are not counted twice. */
    const char *pg_only = getenv("LIVEVLM_TEST_PG_ONLY");
    if (!(pg_only && !strcmp(pg_only, "1")))
        failed += _cmocka_run_group_tests(name, tests, n, NULL, NULL);
    if (dbfx_pg_base()) {
        char pname[128];
        snprintf(pname, sizeof(pname), "%s_postgres", name);
        failed += _cmocka_run_group_tests(pname, pg, n_pg, NULL, NULL);
    } else {
        printf("[  SKIPPED ] %s on PostgreSQL: LIVEVLM_TEST_PG is not set (scripts/pg-test.sh sets it)\n", name);
    }
    return failed;
}

#endif
