/* lv_db_sqlite.c - the SQLite engine of lv_db: one connection to <config dir>/livevlm.db (or the
 * --db path), WAL, synchronous=NORMAL, a 5 s busy timeout (the CLI and a server write the same
 * file), foreign keys on. $N parameters are rewritten to ?N. Prepared statements are kept in a
 * small LRU cache keyed by their SQL text: the usage INSERT runs thousands of times a second and
 * preparing it each time was a few percent of the server's CPU. */
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

#define STMT_CACHE_SLOTS 32
#define STMT_CACHE_SQL_MAX 4096 /* longer statements are prepared per call: bounds the cache's memory */

/* One cached statement. sql is a copy of the caller's $N text (the key: callers build some SQL in
 * stack buffers, so the pointer says nothing); st is NULL in an empty slot. Between calls every st
 * is reset with no bindings, so it holds no read transaction, lock or pointer into a caller's
 * params. */
typedef struct {
    uint32_t hash;
    size_t len;
    char *sql;
    sqlite3_stmt *st;
    uint64_t used; /* the cache's clock at the last use: the smallest is evicted */
} stmt_slot_t;

/* What db->conn points to for this engine; freed by sqlite_close. */
typedef struct {
    sqlite3 *c;
    stmt_slot_t slots[STMT_CACHE_SLOTS];
    uint64_t clock;
    uint64_t prepares, hits;
} sqlite_conn_t;

static sqlite3 *conn_of(lv_db_t *db) { return ((sqlite_conn_t *)db->conn)->c; }

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
    sqlite3 *c = conn_of(db);
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

static stmt_slot_t *cache_find(sqlite_conn_t *sc, const char *sql, uint32_t hash, size_t len)
{
    for (size_t i = 0; i < STMT_CACHE_SLOTS; i++) {
        stmt_slot_t *e = &sc->slots[i];
        if (e->st && e->hash == hash && e->len == len && !memcmp(e->sql, sql, len))
            return e;
    }
    return NULL;
}

/* An empty slot, or else the least recently used one, emptied (its statement finalized). */
static stmt_slot_t *cache_victim(sqlite_conn_t *sc)
{
    stmt_slot_t *v = &sc->slots[0];
    for (size_t i = 0; i < STMT_CACHE_SLOTS; i++) {
        stmt_slot_t *e = &sc->slots[i];
        if (!e->st)
            return e;
        if (e->used < v->used)
            v = e;
    }
    sqlite3_finalize(v->st);
    free(v->sql);
    memset(v, 0, sizeof(*v));
    return v;
}

/* True when the rest after the first statement is only whitespace: only such strings are cached
 * (a string with more statements runs its first one, as it always did, uncached). */
static bool tail_empty(const char *tail)
{
    if (!tail)
        return true;
    while (*tail == ' ' || *tail == '\t' || *tail == '\n' || *tail == '\r')
        tail++;
    return *tail == '\0';
}

/* The statement for sql: from the cache (reset, no bindings), or prepared and cached, or prepared
 * for this call alone (*owned: the caller finalizes it). *st NULL with 0: an empty statement. */
static int stmt_get(lv_db_t *db, const char *sql, sqlite3_stmt **st, bool *owned)
{
    sqlite_conn_t *sc = db->conn;
    size_t len = strlen(sql);
    uint32_t hash = lv_fnv1a(sql, len);
    *st = NULL;
    *owned = true;
    stmt_slot_t *e = len <= STMT_CACHE_SQL_MAX ? cache_find(sc, sql, hash, len) : NULL;
    if (e) { /* reset with no bindings by the call that last used it (sqlite_exec's out) */
        e->used = ++sc->clock;
        sc->hits++;
        *st = e->st;
        *owned = false;
        return 0;
    }
    char *q = rewrite_params(sql);
    if (!q)
        return lv_db_fail(db, LV_ENOMEM, "out of memory");
    const char *tail = NULL;
    bool cache = len <= STMT_CACHE_SQL_MAX;
    sc->prepares++;
    int src = sqlite3_prepare_v3(sc->c, q, -1, cache ? SQLITE_PREPARE_PERSISTENT : 0, st, &tail);
    int rc = 0;
    if (src != SQLITE_OK) {
        rc = map_error(db, src, "SQLite prepare");
        *st = NULL;
        goto out;
    }
    if (!*st || !cache || !tail_empty(tail))
        goto out;
    char *key = malloc(len + 1);
    if (!key) /* not cached; the statement still runs */
        goto out;
    memcpy(key, sql, len + 1);
    e = cache_victim(sc);
    *e = (stmt_slot_t){hash, len, key, *st, ++sc->clock};
    *owned = false;
out:
    free(q);
    return rc;
}

static int sqlite_exec(lv_db_t *db, const char *sql, size_t n, const char *const *params, lv_db_rows_t *rows)
{
    sqlite3_stmt *st = NULL;
    bool owned = true, begun = false;
    lv_db_rows_build_t b;
    int rc, src, cols = 0;
    if ((rc = stmt_get(db, sql, &st, &owned)) || !st) /* !st: an empty statement */
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
    for (;;) {
        src = sqlite3_step(st);
        if (src != SQLITE_ROW && src != SQLITE_DONE) {
            rc = map_error(db, src, "SQLite");
            goto out;
        }
        /* The columns are counted after the first step: a cached statement that SQLite prepared
         * again there for a changed schema (SELECT * after ALTER TABLE ADD COLUMN) may have more. */
        if (!begun) {
            cols = sqlite3_column_count(st);
            if (rows && cols > 0)
                lv_db_rows_begin(&b, rows, (size_t)cols);
            begun = true;
        }
        if (src == SQLITE_DONE)
            break;
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
    if (owned) {
        sqlite3_finalize(st);
    } else if (st) {
        /* Reset here, not only when next used: a statement left mid-step (the row cap above) keeps
         * its read transaction, which would hold off WAL checkpoints and the accounts CLI. */
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    return rc;
}

static int sqlite_script(lv_db_t *db, const char *sql)
{
    char *msg = NULL;
    int src = sqlite3_exec(conn_of(db), sql, NULL, NULL, &msg);
    if (src != SQLITE_OK) {
        int rc = lv_db_fail(db, LV_EIO, "SQLite: %s", msg ? msg : sqlite3_errstr(src));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

static void sqlite_close(lv_db_t *db)
{
    sqlite_conn_t *sc = db->conn;
    for (size_t i = 0; i < STMT_CACHE_SLOTS; i++) {
        sqlite3_finalize(sc->slots[i].st);
        free(sc->slots[i].sql);
    }
    sqlite3_close_v2(sc->c);
    free(sc);
    db->conn = NULL;
}

void lv_db_sqlite_stmt_stats(const lv_db_t *db, lv_db_stmt_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (db->kind != LV_DB_SQLITE || !db->conn)
        return;
    const sqlite_conn_t *sc = db->conn;
    out->prepares = sc->prepares;
    out->hits = sc->hits;
    out->capacity = STMT_CACHE_SLOTS;
    for (size_t i = 0; i < STMT_CACHE_SLOTS; i++)
        out->cached += sc->slots[i].st != NULL;
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
    sqlite_conn_t *sc = calloc(1, sizeof(*sc));
    if (!sc) {
        snprintf(err, err_size, "out of memory opening the SQLite database %s", path);
        sqlite3_close_v2(c);
        return LV_ENOMEM;
    }
    sc->c = c;
    db->conn = sc;
    sqlite3_extended_result_codes(c, 1);
    sqlite3_busy_timeout(c, 5000);
    rc = sqlite_script(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
    if (rc) {
        snprintf(err, err_size, "cannot set up the SQLite database %s: %s", path, db->err);
        return rc;
    }
    return 0;
}
