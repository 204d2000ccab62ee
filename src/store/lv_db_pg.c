/* lv_db_pg.c - the PostgreSQL engine of lv_db (--db postgres://..., what a cluster's frontends
 * share): libpq, text parameters through PQexecParams, SQLSTATE mapped to LV_E* codes, and one
 * reconnect per statement when the connection dropped (never inside a transaction: that one is gone
 * with the connection, so the caller gets LV_EIO and starts over). */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_db_engine.h"

/* "postgres://user:secret@host:5432/db?sslmode=require" -> "postgres://user@host:5432/db": no
 * password, and no query string (it may hold password=...). */
static void clean_url(const char *url, char *out, size_t out_size)
{
    const char *rest = strstr(url, "://");
    rest = rest ? rest + 3 : url;
    size_t scheme_len = (size_t)(rest - url);
    size_t auth_len = strcspn(rest, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < auth_len; i++)
        if (rest[i] == '@')
            at = rest + i;
    const char *host = at ? at + 1 : rest;
    size_t user_len = 0;
    if (at) {
        user_len = strcspn(rest, ":@");
        if (rest + user_len > at)
            user_len = (size_t)(at - rest);
    }
    size_t host_len = auth_len - (size_t)(host - rest);
    size_t path_len = strcspn(rest + auth_len, "?#");
    snprintf(out, out_size, "%.*s%.*s%s%.*s%.*s", (int)scheme_len, url, (int)user_len, rest, at ? "@" : "",
             (int)host_len, host, (int)path_len, rest + auth_len);
}

static void quiet_notice(void *arg, const char *message) { (void)arg, (void)message; }

static int map_result(lv_db_t *db, PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    int code = LV_EIO;
    if (state && !strcmp(state, "23505"))
        code = LV_EEXIST;
    else if (state && !strcmp(state, "23503"))
        code = LV_ENOTFOUND;
    else if (state && !strncmp(state, "23", 2))
        code = LV_EINVAL;
    else if (state && (!strcmp(state, "40001") || !strcmp(state, "40P01")))
        code = LV_EAGAIN;
    const char *msg = PQresultErrorMessage(res);
    size_t len = strcspn(msg, "\n");
    return lv_db_fail(db, code, "PostgreSQL: %.*s", (int)len, msg);
}

/* True when the connection is gone and was made again (once; not inside a transaction). */
static bool reconnected(lv_db_t *db, bool *tried)
{
    if (*tried || PQstatus(db->conn) != CONNECTION_BAD || db->in_tx)
        return false;
    *tried = true;
    PQreset(db->conn);
    return PQstatus(db->conn) == CONNECTION_OK;
}

static int pg_exec(lv_db_t *db, const char *sql, size_t n, const char *const *params, lv_db_rows_t *rows)
{
    bool tried = false;
    PGresult *res;
    int rc = 0;
    lv_db_rows_build_t b;
again:
    res = PQexecParams(db->conn, sql, (int)n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        if (PQstatus(db->conn) == CONNECTION_BAD) {
            PQclear(res);
            if (reconnected(db, &tried))
                goto again;
            if (db->in_tx)
                db->in_tx = false; /* the server rolled it back with the connection */
            return lv_db_fail(db, LV_EIO, "PostgreSQL connection to %s lost: %.*s", db->url_clean,
                              (int)strcspn(PQerrorMessage(db->conn), "\n"), PQerrorMessage(db->conn));
        }
        rc = res ? map_result(db, res) : lv_db_fail(db, LV_ENOMEM, "PostgreSQL: no result");
        goto out;
    }
    if (!rows || st != PGRES_TUPLES_OK || PQnfields(res) <= 0)
        goto out;
    int nr = PQntuples(res), nc = PQnfields(res);
    if (nr > LV_DB_MAX_ROWS) {
        rc = lv_db_fail(db, LV_ELIMIT, "result over %d rows", LV_DB_MAX_ROWS);
        goto out;
    }
    lv_db_rows_begin(&b, rows, (size_t)nc);
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) {
            bool null = PQgetisnull(res, r, c);
            rc = lv_db_rows_cell(&b, null ? NULL : PQgetvalue(res, r, c), null ? 0 : (size_t)PQgetlength(res, r, c));
            if (rc) {
                lv_db_fail(db, rc, "result too large");
                goto out;
            }
        }
    rc = lv_db_rows_end(&b);
out:
    PQclear(res);
    return rc;
}

static int pg_script(lv_db_t *db, const char *sql)
{
    PGresult *res = PQexec(db->conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = res ? map_result(db, res) : lv_db_fail(db, LV_EIO, "PostgreSQL: %s", PQerrorMessage(db->conn));
    PQclear(res);
    return rc;
}

static void pg_close(lv_db_t *db)
{
    PQfinish(db->conn);
    db->conn = NULL;
}

static const lv_db_engine_t pg_engine = {pg_exec, pg_script, "BEGIN", pg_close};

int lv_db_pg_open(lv_db_t *db, const char *url, char *err, size_t err_size)
{
    db->kind = LV_DB_POSTGRES;
    db->eng = &pg_engine;
    clean_url(url, db->url_clean, sizeof(db->url_clean));
    /* connect_timeout first so that the URL's own wins (later keywords override earlier ones): libpq
     * would otherwise wait for an unreachable host without end. */
    const char *keys[] = {"connect_timeout", "dbname", NULL};
    const char *vals[] = {"10", url, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        snprintf(err, err_size, "out of memory connecting to %s", db->url_clean);
        return LV_ENOMEM;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        const char *m = PQerrorMessage(c);
        /* libpq's messages name the host and the user, never the password. */
        snprintf(err, err_size, "cannot connect to the database %s: %.*s", db->url_clean, (int)strcspn(m, "\n"), m);
        PQfinish(c);
        return LV_EIO;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL); /* "relation already exists, skipping" and the like */
    db->conn = c;
    return 0;
}
