/* lv_db_sqlite.c - the SQLite engine of lv_db: one connection to <config dir>/livevlm.db (or the
 * --db path), WAL, synchronous=NORMAL, a 5 s busy timeout (the CLI and a server write the same
 * file), foreign keys on. $N parameters are rewritten to ?N. */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lv_common.h"
#include "lv_db_engine.h"

/* "$12" -> "?12" outside quotes and comments (same length, so done on a copy in place). SQLite
 * would read "$12" as a named parameter, which binds by name, not by number. */
static char *rewrite_params(const char *sql)
{
    size_t len = strlen(sql);
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    memcpy(s, sql, len + 1);
    char quote = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (quote) {
            if (c == quote)
                quote = 0;
        } else if (c == '\'' || c == '"') {
            quote = c;
        } else if (c == '-' && s[i + 1] == '-') {
            while (i < len && s[i] != '\n')
                i++;
        } else if (c == '$' && s[i + 1] >= '0' && s[i + 1] <= '9') {
            s[i] = '?';
        }
    }
    return s;
}

static int map_error(lv_db_t *db, int src, const char *what)
{
    sqlite3 *c = db->conn;
    int ext = sqlite3_extended_errcode(c);
    int code = LV_EIO;
    if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        code = LV_EEXIST;
    else if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
        code = LV_ENOTFOUND;
    else if ((src & 0xff) == SQLITE_CONSTRAINT)
        code = LV_EINVAL;
    else if ((src & 0xff) == SQLITE_BUSY || (src & 0xff) == SQLITE_LOCKED)
        code = LV_EAGAIN;
    return lv_db_fail(db, code, "%s: %s", what, sqlite3_errmsg(c));
}

static int sqlite_exec(lv_db_t *db, const char *sql, size_t n, const char *const *params, lv_db_rows_t *rows)
{
    sqlite3 *c = db->conn;
    sqlite3_stmt *st = NULL;
    lv_db_rows_build_t b;
    int rc = 0, src;
    char *q = rewrite_params(sql);
    if (!q)
        return lv_db_fail(db, LV_ENOMEM, "out of memory");
    src = sqlite3_prepare_v2(c, q, -1, &st, NULL);
    if (src != SQLITE_OK) {
        rc = map_error(db, src, "SQLite prepare");
        goto out;
    }
    if (!st) /* an empty statement */
        goto out;
    if ((size_t)sqlite3_bind_parameter_count(st) > n) {
        rc = lv_db_fail(db, LV_EINVAL, "statement wants %d parameters, %zu given", sqlite3_bind_parameter_count(st), n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        src = params[i] ? sqlite3_bind_text(st, (int)i + 1, params[i], -1, SQLITE_STATIC)
                        : sqlite3_bind_null(st, (int)i + 1);
        if (src != SQLITE_OK && src != SQLITE_RANGE) {
            rc = map_error(db, src, "SQLite bind");
            goto out;
        }
    }
    int cols = sqlite3_column_count(st);
    if (rows && cols > 0)
        lv_db_rows_begin(&b, rows, (size_t)cols);
    for (;;) {
        src = sqlite3_step(st);
        if (src == SQLITE_DONE)
            break;
        if (src != SQLITE_ROW) {
            rc = map_error(db, src, "SQLite");
            goto out;
        }
        if (!rows || cols <= 0)
            continue;
        for (int i = 0; i < cols; i++) {
            const char *t = NULL;
            size_t len = 0;
            if (sqlite3_column_type(st, i) != SQLITE_NULL) {
                t = (const char *)sqlite3_column_text(st, i);
                len = (size_t)sqlite3_column_bytes(st, i);
                if (!t)
                    t = "";
            }
            if ((rc = lv_db_rows_cell(&b, t, len))) {
                lv_db_fail(db, rc, "result too large (over %d rows or %u bytes)", LV_DB_MAX_ROWS,
                           LV_DB_ROWS_MAX_BYTES);
                goto out;
            }
        }
    }
    if (rows && cols > 0)
        rc = lv_db_rows_end(&b);
out:
    sqlite3_finalize(st);
    free(q);
    return rc;
}

static int sqlite_script(lv_db_t *db, const char *sql)
{
    char *msg = NULL;
    int src = sqlite3_exec(db->conn, sql, NULL, NULL, &msg);
    if (src != SQLITE_OK) {
        int rc = lv_db_fail(db, LV_EIO, "SQLite: %s", msg ? msg : sqlite3_errstr(src));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

static void sqlite_close(lv_db_t *db)
{
    sqlite3_close_v2(db->conn);
    db->conn = NULL;
}

/* IMMEDIATE: a deferred transaction that reads and then writes can fail with SQLITE_BUSY without
 * waiting on the busy timeout (two readers both wanting to write); taking the write lock at BEGIN
 * makes the second one wait instead. */
static const lv_db_engine_t sqlite_engine = {sqlite_exec, sqlite_script, "BEGIN IMMEDIATE", sqlite_close};

/* mkdir -p with mode 0700 for the directories it makes. */
static int make_dirs(const char *dir)
{
    char p[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(p))
        return LV_EINVAL;
    memcpy(p, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char keep = p[i];
        p[i] = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return LV_EIO;
        p[i] = keep;
    }
    return 0;
}

int lv_db_sqlite_open(lv_db_t *db, const char *path, char *err, size_t err_size)
{
    int rc = 0;
    db->kind = LV_DB_SQLITE;
    db->eng = &sqlite_engine;
    snprintf(db->url_clean, sizeof(db->url_clean), "sqlite:%s", path);
    if (strlen(path) >= 4096) {
        snprintf(err, err_size, "the database path is too long");
        return LV_EINVAL;
    }
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        char dir[4096];
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
        if (make_dirs(dir)) {
            snprintf(err, err_size, "cannot create the directory %s for the database: %s", dir, strerror(errno));
            return LV_EIO;
        }
    }
    /* Made here so it is 0600 from the start (SQLite would use the umask); the -wal and -shm files
     * SQLite makes next to it copy this mode. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_size, "cannot open the database file %s: %s", path, strerror(errno));
        return LV_EIO;
    }
    close(fd);
    sqlite3 *c = NULL;
    int src = sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (src != SQLITE_OK) {
        snprintf(err, err_size, "cannot open the SQLite database %s: %s", path, c ? sqlite3_errmsg(c) : sqlite3_errstr(src));
        sqlite3_close_v2(c);
        return LV_EIO;
    }
    db->conn = c;
    sqlite3_extended_result_codes(c, 1);
    sqlite3_busy_timeout(c, 5000);
    rc = sqlite_script(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
    if (rc) {
        snprintf(err, err_size, "cannot set up the SQLite database %s: %s", path, db->err);
        return rc;
    }
    return 0;
}
