/* test_db.c - lv_db on a real SQLite file (always) and a real PostgreSQL (scripts/pg-test.sh):
 * statements and rows, $N parameters, unique violations, migrations applied once and refused when
 * newer, bad URLs, and the thread: FIFO order of work and done, done on the loop thread, the queue
 * cap, close draining; on SQLite the prepared-statement cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <semaphore.h>
#include <sys/stat.h>

#include "db_fixture.h"
#include "lv_common.h"
#include "lv_db.h"
#include "lv_db_engine.h"

static void test_open_sqlite_files(void **state)
{
    dbfx_t *fx = *state;
    char dir[300], path[400];
    snprintf(dir, sizeof(dir), "%s/conf/sub", fx->dir);
    lv_db_t *db = NULL;
    char err[512];
    assert_int_equal(lv_db_open(NULL, "", dir, &db, err, sizeof(err)), 0);
    assert_int_equal(lv_db_kind(db), LV_DB_SQLITE);
    snprintf(path, sizeof(path), "sqlite:%s/livevlm.db", dir);
    assert_string_equal(lv_db_url_clean(db), path);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/livevlm.db", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    lv_db_rows_t r;
    assert_int_equal(lv_db_exec(db, "PRAGMA journal_mode", 0, NULL, &r), 0);
    assert_string_equal(lv_db_cell(&r, 0, 0), "wal");
    lv_db_rows_free(&r);
    assert_int_equal(lv_db_exec(db, "PRAGMA foreign_keys", 0, NULL, &r), 0);
    assert_int_equal(lv_db_int(&r, 0, 0, -1), 1);
    lv_db_rows_free(&r);
    assert_int_equal(lv_db_exec(db, "PRAGMA synchronous", 0, NULL, &r), 0);
    assert_int_equal(lv_db_int(&r, 0, 0, -1), 1); /* NORMAL */
    lv_db_rows_free(&r);
    lv_db_close(db);

    /* "sqlite:PATH" and a plain path name the same file. */
    assert_int_equal(lv_db_open(NULL, path, NULL, &db, err, sizeof(err)), 0);
    lv_db_close(db);
    char url[450];
    snprintf(url, sizeof(url), "sqlite:%s", path);
    assert_int_equal(lv_db_open(NULL, url, NULL, &db, err, sizeof(err)), 0);
    lv_db_close(db);
    /* "" without a config dir: a sentence. */
    assert_int_equal(lv_db_open(NULL, "", NULL, &db, err, sizeof(err)), LV_EINVAL);
    assert_non_null(strstr(err, "no database path"));
}

static void test_exec_rows_params(void **state)
{
    dbfx_t *fx = *state;
    lv_db_t *db = dbfx_open(fx, NULL);
    assert_non_null(db);
    lv_db_rows_t r;
    assert_int_equal(lv_db_exec(db, "CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT, s TEXT)", 0, NULL, NULL), 0);
    const char *p1[] = {"a", "5", NULL};
    assert_int_equal(lv_db_exec(db, "INSERT INTO t (k, n, s) VALUES ($1, $2, $3)", 3, p1, NULL), 0);
    const char *p2[] = {"b", "-7", "x'y"};
    assert_int_equal(lv_db_exec(db, "INSERT INTO t (k, n, s) VALUES ($1, $2, $3)", 3, p2, NULL), 0);
    /* A '$1' inside a string literal is text, not a parameter. */
    const char *p3[] = {"b"};
    assert_int_equal(lv_db_exec(db, "SELECT k, n, s, '$1' FROM t WHERE k >= $1 ORDER BY k", 1, p3, &r), 0);
    assert_int_equal(r.rows, 1);
    assert_int_equal(r.cols, 4);
    assert_string_equal(lv_db_cell(&r, 0, 0), "b");
    assert_int_equal(lv_db_int(&r, 0, 1, 0), -7);
    assert_string_equal(lv_db_cell(&r, 0, 2), "x'y");
    assert_string_equal(lv_db_cell(&r, 0, 3), "$1");
    assert_null(lv_db_cell(&r, 1, 0));
    assert_null(lv_db_cell(&r, 0, 4));
    lv_db_rows_free(&r);
    lv_db_rows_free(&r); /* twice is fine */
    assert_int_equal(lv_db_exec(db, "SELECT k, n, s FROM t ORDER BY k", 0, NULL, &r), 0);
    assert_int_equal(r.rows, 2);
    assert_null(lv_db_cell(&r, 0, 2)); /* SQL NULL */
    assert_int_equal(lv_db_int(&r, 0, 2, 42), 42);
    assert_int_equal(lv_db_int(&r, 0, 0, 42), 42); /* "a" is no number */
    lv_db_rows_free(&r);
    /* Integers compare as integers although they travel as text. */
    const char *p4[] = {"0"};
    assert_int_equal(lv_db_exec(db, "SELECT k FROM t WHERE n > $1", 1, p4, &r), 0);
    assert_int_equal(r.rows, 1);
    assert_string_equal(lv_db_cell(&r, 0, 0), "a");
    lv_db_rows_free(&r);
    /* Transactions: a rolled back insert is gone. */
    assert_int_equal(lv_db_begin(db), 0);
    const char *p5[] = {"c", "1", "z"};
    assert_int_equal(lv_db_exec(db, "INSERT INTO t (k, n, s) VALUES ($1, $2, $3)", 3, p5, NULL), 0);
    lv_db_rollback(db);
    assert_int_equal(lv_db_exec(db, "SELECT COUNT(*) FROM t", 0, NULL, &r), 0);
    assert_int_equal(lv_db_int(&r, 0, 0, 0), 2);
    lv_db_rows_free(&r);
    /* Too many parameters; a syntax error with a sentence. */
    const char *many[LV_DB_MAX_PARAMS + 1] = {0};
    assert_int_equal(lv_db_exec(db, "SELECT 1", LV_DB_MAX_PARAMS + 1, many, NULL), LV_EINVAL);
    assert_int_equal(lv_db_exec(db, "SELEKT 1", 0, NULL, &r), LV_EIO);
    assert_true(strlen(lv_db_error(db)) > 0);
    assert_null(r.cells);
    lv_db_close(db);
}

static void test_unique_violation(void **state)
{
    dbfx_t *fx = *state;
    lv_db_t *db = dbfx_open(fx, NULL);
    assert_non_null(db);
    assert_int_equal(lv_db_exec(db, "CREATE TABLE u (k TEXT PRIMARY KEY, name TEXT UNIQUE)", 0, NULL, NULL), 0);
    const char *p1[] = {"1", "x"};
    const char *p2[] = {"1", "y"};
    const char *p3[] = {"2", "x"};
    assert_int_equal(lv_db_exec(db, "INSERT INTO u VALUES ($1, $2)", 2, p1, NULL), 0);
    assert_int_equal(lv_db_exec(db, "INSERT INTO u VALUES ($1, $2)", 2, p2, NULL), LV_EEXIST); /* primary key */
    assert_int_equal(lv_db_exec(db, "INSERT INTO u VALUES ($1, $2)", 2, p3, NULL), LV_EEXIST); /* unique */
    assert_true(strlen(lv_db_error(db)) > 0);
    assert_int_equal(lv_db_exec(db, "INSERT INTO u VALUES ($1, $2) ON CONFLICT (k) DO NOTHING", 2, p2, NULL), 0);
    lv_db_close(db);
}

static void test_row_cap(void **state)
{
    dbfx_t *fx = *state;
    lv_db_t *db = dbfx_open(fx, NULL);
    assert_non_null(db);
    lv_db_rows_t r;
    char sql[200];
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d) SELECT x FROM c",
             LV_DB_MAX_ROWS);
    assert_int_equal(lv_db_exec(db, sql, 0, NULL, &r), 0);
    assert_int_equal(r.rows, LV_DB_MAX_ROWS);
    assert_int_equal(lv_db_int(&r, LV_DB_MAX_ROWS - 1, 0, 0), LV_DB_MAX_ROWS);
    lv_db_rows_free(&r);
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d) SELECT x FROM c",
             LV_DB_MAX_ROWS + 1);
    assert_int_equal(lv_db_exec(db, sql, 0, NULL, &r), LV_ELIMIT);
    assert_null(r.cells);
    lv_db_close(db);
}

static int64_t count_of(lv_db_t *db, const char *sql)
{
    lv_db_rows_t r;
    if (lv_db_exec(db, sql, 0, NULL, &r))
        return -1;
    int64_t v = lv_db_int(&r, 0, 0, -1);
    lv_db_rows_free(&r);
    return v;
}

static void test_migrations_once_and_newer_refused(void **state)
{
    dbfx_t *fx = *state;
    lv_db_t *db = dbfx_open(fx, NULL);
    assert_non_null(db);
    assert_true(lv_db_migrations_count >= 1);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM schema_migrations"), (int64_t)lv_db_migrations_count);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM tenants WHERE id = 'default'"), 1);
    assert_int_equal(count_of(db, "SELECT v FROM meta WHERE k = 'version'"), 1);
    for (int i = 0; i < 3; i++) { /* re-open: nothing applied twice */
        lv_db_close(db);
        db = dbfx_open(fx, NULL);
        assert_non_null(db);
        assert_int_equal(count_of(db, "SELECT COUNT(*) FROM schema_migrations"), (int64_t)lv_db_migrations_count);
        assert_int_equal(count_of(db, "SELECT COUNT(*) FROM tenants"), 1);
        assert_int_equal(count_of(db, "SELECT COUNT(*) FROM meta"), 1);
    }
    assert_int_equal(lv_db_exec(db, "INSERT INTO schema_migrations VALUES (999, 'future', 0)", 0, NULL, NULL), 0);
    lv_db_close(db);
    char err[512];
    assert_int_not_equal(lv_db_open(NULL, fx->url, fx->dir, &db, err, sizeof(err)), 0);
    assert_null(db);
    assert_non_null(strstr(err, "newer than this livevlm"));
    assert_non_null(strstr(err, "999"));
}

static void test_bad_urls(void **state)
{
    (void)state;
    lv_db_t *db = (lv_db_t *)1;
    char err[512];
    assert_int_equal(lv_db_open(NULL, "mysql://root@localhost/x", "/tmp", &db, err, sizeof(err)), LV_EINVAL);
    assert_null(db);
    assert_non_null(strstr(err, "unsupported database URL scheme 'mysql'"));
    /* Port 1 on loopback: refused at once. The sentence names the database, never the password. */
    assert_int_equal(lv_db_open(NULL, "postgres://alice:sekret99@127.0.0.1:1/livevlm?sslmode=disable", NULL, &db, err,
                                sizeof(err)),
                     LV_EIO);
    assert_null(strstr(err, "sekret99"));
    assert_non_null(strstr(err, "postgres://alice@127.0.0.1:1/livevlm"));
    assert_int_equal(lv_db_open(NULL, "postgresql://x:y@127.0.0.1:1/db?password=sekret98", NULL, &db, err,
                                sizeof(err)),
                     LV_EIO);
    assert_null(strstr(err, "sekret98"));
    char longurl[LV_DB_URL_MAX + 10];
    memset(longurl, 'a', sizeof(longurl) - 1);
    longurl[sizeof(longurl) - 1] = '\0';
    assert_int_equal(lv_db_open(NULL, longurl, NULL, &db, err, sizeof(err)), LV_EINVAL);
    assert_non_null(strstr(err, "longer than"));
    /* A path SQLite cannot open: a sentence with the path. */
    assert_int_equal(lv_db_open(NULL, "sqlite:/proc/nonexistent/dir/x.db", NULL, &db, err, sizeof(err)), LV_EIO);
    assert_non_null(strstr(err, "/proc/nonexistent"));
}

/* ---------- SQLite's statement cache ---------- */

static lv_db_stmt_stats_t stmt_stats(lv_db_t *db)
{
    lv_db_stmt_stats_t s;
    lv_db_sqlite_stmt_stats(db, &s);
    return s;
}

/* The usage INSERT's pattern: one statement, thousands of times in a transaction, prepared once.
 * The key is the text: the same SQL in another buffer hits, other SQL in the same buffer does not. */
static void test_sqlite_stmt_cache_prepares_once(void **state)
{
    dbfx_t *fx = *state;
    lv_db_t *db = dbfx_open(fx, NULL);
    assert_non_null(db);
    assert_int_equal(stmt_stats(db).capacity, 32);
    assert_int_equal(lv_db_exec(db, "CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT)", 0, NULL, NULL), 0);
    static const char ins[] = "INSERT INTO t (k, n) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING";
    char copy[sizeof(ins)];
    memcpy(copy, ins, sizeof(ins));
    assert_int_equal(lv_db_begin(db), 0);
    lv_db_stmt_stats_t s0 = stmt_stats(db);
    enum { N = 10000 };
    for (int i = 0; i < N; i++) {
        char k[16], n[16];
        snprintf(k, sizeof(k), "k%d", i);
        snprintf(n, sizeof(n), "%d", i);
        const char *p[] = {k, n};
        assert_int_equal(lv_db_exec(db, i % 2 ? copy : ins, 2, p, NULL), 0);
    }
    lv_db_stmt_stats_t s1 = stmt_stats(db);
    assert_int_equal(s1.prepares - s0.prepares, 1);
    assert_int_equal(s1.hits - s0.hits, N - 1);
    assert_int_equal(lv_db_commit(db), 0);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM t"), N);
    assert_int_equal(count_of(db, "SELECT SUM(n) FROM t"), (int64_t)N * (N - 1) / 2);
    /* A conflicting row is skipped by the cached statement as it was by a fresh one. */
    const char *dup[] = {"k5", "-1"};
    assert_int_equal(lv_db_exec(db, ins, 2, dup, NULL), 0);
    assert_int_equal(count_of(db, "SELECT n FROM t WHERE k = 'k5'"), 5);
    /* Parameters do not stick to a cached statement: a NULL binds NULL the next time. */
    const char *withnull[] = {"z", NULL};
    assert_int_equal(lv_db_exec(db, ins, 2, withnull, NULL), 0);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM t WHERE k = 'z' AND n IS NULL"), 1);
    /* Other SQL written into the same stack buffer is another statement. */
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT MIN(n) FROM t");
    assert_int_equal(count_of(db, sql), 0);
    snprintf(sql, sizeof(sql), "SELECT MAX(n) FROM t");
    assert_int_equal(count_of(db, sql), N - 1);
    lv_db_close(db);
}

/* More distinct statements than the cache holds all run; the least recently used one goes. */
static void test_sqlite_stmt_cache_eviction(void **state)
{
    dbfx_t *fx = *state;
    lv_db_t *db = dbfx_open(fx, NULL);
    assert_non_null(db);
    size_t cap = stmt_stats(db).capacity;
    assert_true(cap >= 2);
    char sql[64];
    const char *p[] = {"1000"};
    /* Three rounds over 3 x cap statements, each built in the same stack buffer. */
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < 3 * cap; i++) {
            snprintf(sql, sizeof(sql), "SELECT $1 + %zu", i);
            lv_db_rows_t r;
            assert_int_equal(lv_db_exec(db, sql, 1, p, &r), 0);
            assert_int_equal(lv_db_int(&r, 0, 0, -1), 1000 + (int64_t)i);
            lv_db_rows_free(&r);
        }
        assert_int_equal(stmt_stats(db).cached, cap);
    }
    /* Fill the cache with S0..S(cap-1), touch S0, add one more: S1 is evicted, S0 stays. */
    for (size_t i = 0; i < cap; i++) {
        snprintf(sql, sizeof(sql), "SELECT %zu AS lru", i);
        assert_int_equal(count_of(db, sql), (int64_t)i);
    }
    assert_int_equal(count_of(db, "SELECT 0 AS lru"), 0);
    snprintf(sql, sizeof(sql), "SELECT %zu AS lru", cap);
    assert_int_equal(count_of(db, sql), (int64_t)cap);
    lv_db_stmt_stats_t s0 = stmt_stats(db);
    assert_int_equal(count_of(db, "SELECT 0 AS lru"), 0);
    lv_db_stmt_stats_t s1 = stmt_stats(db);
    assert_int_equal(s1.prepares, s0.prepares);
    assert_int_equal(s1.hits, s0.hits + 1);
    assert_int_equal(count_of(db, "SELECT 1 AS lru"), 1);
    lv_db_stmt_stats_t s2 = stmt_stats(db);
    assert_int_equal(s2.prepares, s1.prepares + 1);
    assert_int_equal(s2.hits, s1.hits);
    lv_db_close(db);
}

/* A statement that does not prepare fails with SQLite's sentence each time and takes no slot; a
 * string of several statements runs its first, as before, uncached. */
static void test_sqlite_stmt_cache_errors_not_cached(void **state)
{
    dbfx_t *fx = *state;
    lv_db_t *db = dbfx_open(fx, NULL);
    assert_non_null(db);
    lv_db_stmt_stats_t s0 = stmt_stats(db);
    for (int i = 0; i < 3; i++) {
        lv_db_rows_t r;
        assert_int_equal(lv_db_exec(db, "SELEKT 1", 0, NULL, &r), LV_EIO);
        assert_string_equal(lv_db_error(db), "SQLite prepare: near \"SELEKT\": syntax error");
        assert_null(r.cells);
    }
    lv_db_stmt_stats_t s1 = stmt_stats(db);
    assert_int_equal(s1.cached, s0.cached);
    assert_int_equal(s1.prepares, s0.prepares + 3);
    assert_int_equal(s1.hits, s0.hits);
    assert_int_equal(lv_db_exec(db, "CREATE TABLE m (x INTEGER)", 0, NULL, NULL), 0);
    s0 = stmt_stats(db);
    for (int i = 0; i < 2; i++)
        assert_int_equal(lv_db_exec(db, "INSERT INTO m VALUES (1); INSERT INTO m VALUES (2)", 0, NULL, NULL), 0);
    s1 = stmt_stats(db);
    assert_int_equal(s1.cached, s0.cached);
    assert_int_equal(s1.prepares, s0.prepares + 2);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM m"), 2);
    assert_int_equal(count_of(db, "SELECT SUM(x) FROM m"), 2);
    /* Trailing whitespace is no second statement: cached. */
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM m;\n  "), 2);
    s0 = stmt_stats(db);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM m;\n  "), 2);
    assert_int_equal(stmt_stats(db).hits, s0.hits + 1);
    lv_db_close(db);
}

/* Cached statements hold no read transaction between calls: another connection to the file can
 * write and checkpoint the whole WAL away (busy = 0), after a SELECT that read all its rows and
 * after one stopped early by the row cap. */
static void checkpoint_not_busy(lv_db_t *other, const char *k)
{
    const char *p[] = {k};
    assert_int_equal(lv_db_exec(other, "INSERT INTO w (k) VALUES ($1)", 1, p, NULL), 0);
    lv_db_rows_t r;
    assert_int_equal(lv_db_exec(other, "PRAGMA wal_checkpoint(TRUNCATE)", 0, NULL, &r), 0);
    assert_int_equal(r.rows, 1);
    assert_int_equal(lv_db_int(&r, 0, 0, -1), 0); /* busy */
    lv_db_rows_free(&r);
}

static void test_sqlite_stmt_cache_no_open_read(void **state)
{
    dbfx_t *fx = *state;
    lv_db_t *db = dbfx_open(fx, NULL);
    lv_db_t *other = dbfx_open(fx, NULL);
    assert_non_null(db);
    assert_non_null(other);
    /* Without this a held reader would show as a 5 s wait and then busy = 1. */
    assert_int_equal(lv_db_exec(other, "PRAGMA busy_timeout = 200", 0, NULL, NULL), 0);
    assert_int_equal(lv_db_exec(db, "CREATE TABLE w (k TEXT)", 0, NULL, NULL), 0);
    assert_int_equal(lv_db_exec(db, "INSERT INTO w (k) VALUES ('a'), ('b'), ('c')", 0, NULL, NULL), 0);
    for (int i = 0; i < 2; i++) {
        lv_db_stmt_stats_t s0 = stmt_stats(db);
        lv_db_rows_t r;
        assert_int_equal(lv_db_exec(db, "SELECT k FROM w ORDER BY k", 0, NULL, &r), 0);
        assert_int_equal(r.rows, (size_t)3 + (size_t)i);
        lv_db_rows_free(&r);
        if (i == 1)
            assert_int_equal(stmt_stats(db).hits, s0.hits + 1);
        checkpoint_not_busy(other, i ? "e" : "d");
    }
    /* Stopped mid-step by the row cap: the cached statement still let go of its snapshot. */
    char sql[200];
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d) "
             "SELECT x FROM c, (SELECT k FROM w LIMIT 1)",
             LV_DB_MAX_ROWS + 1);
    for (int i = 0; i < 2; i++) {
        lv_db_rows_t r;
        assert_int_equal(lv_db_exec(db, sql, 0, NULL, &r), LV_ELIMIT);
        assert_null(r.cells);
        checkpoint_not_busy(other, i ? "g" : "f");
    }
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM w"), 7);
    lv_db_close(other);
    lv_db_close(db);
}

/* Schema changes under cached statements, by a statement and by a migration-style script: SELECT *
 * shows the new column; a table dropped and made again under a cached INSERT. */
static void test_sqlite_stmt_cache_schema_changes(void **state)
{
    dbfx_t *fx = *state;
    lv_db_t *db = dbfx_open(fx, NULL);
    assert_non_null(db);
    assert_int_equal(lv_db_exec(db, "CREATE TABLE s (a TEXT, b TEXT)", 0, NULL, NULL), 0);
    const char *ins = "INSERT INTO s (a, b) VALUES ($1, $2)";
    const char *p[] = {"x", "y"};
    assert_int_equal(lv_db_exec(db, ins, 2, p, NULL), 0);
    lv_db_rows_t r;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(lv_db_exec(db, "SELECT * FROM s", 0, NULL, &r), 0);
        assert_int_equal(r.cols, 2);
        lv_db_rows_free(&r);
    }
    lv_db_stmt_stats_t s0 = stmt_stats(db);
    assert_int_equal(lv_db_exec(db, "ALTER TABLE s ADD COLUMN c TEXT DEFAULT 'zz'", 0, NULL, NULL), 0);
    assert_int_equal(lv_db_exec(db, "SELECT * FROM s", 0, NULL, &r), 0);
    assert_int_equal(stmt_stats(db).hits, s0.hits + 1); /* the cached one, prepared again by SQLite */
    assert_int_equal(r.cols, 3);
    assert_int_equal(r.rows, 1);
    assert_string_equal(lv_db_cell(&r, 0, 2), "zz");
    lv_db_rows_free(&r);
    /* The same statement with no rows still reports its new columns. */
    assert_int_equal(lv_db_exec(db, "SELECT * FROM s WHERE a = 'none'", 0, NULL, &r), 0);
    lv_db_rows_free(&r);
    assert_int_equal(lv_db_exec(db, "ALTER TABLE s ADD COLUMN d TEXT", 0, NULL, NULL), 0);
    assert_int_equal(lv_db_exec(db, "SELECT * FROM s WHERE a = 'none'", 0, NULL, &r), 0);
    assert_int_equal(r.rows, 0);
    assert_int_equal(r.cols, 4);
    lv_db_rows_free(&r);

    /* A migration (the engine's script, as lv_db.c runs them) in a transaction whose BEGIN and
     * COMMIT come from the cache: drop the table under the cached INSERT and SELECT *, make it
     * again with other columns. A cached statement left active would make DROP fail (locked). */
    assert_int_equal(lv_db_begin(db), 0);
    assert_int_equal(db->eng->script(db, "DROP TABLE s;\n"
                                         "CREATE TABLE s (a TEXT, b TEXT, e TEXT DEFAULT 'ee');\n"
                                         "CREATE INDEX s_a ON s (a);"),
                     0);
    assert_int_equal(lv_db_commit(db), 0);
    assert_int_equal(lv_db_exec(db, ins, 2, p, NULL), 0);
    assert_int_equal(lv_db_exec(db, "SELECT * FROM s", 0, NULL, &r), 0);
    assert_int_equal(r.cols, 3);
    assert_int_equal(r.rows, 1);
    assert_string_equal(lv_db_cell(&r, 0, 2), "ee");
    lv_db_rows_free(&r);
    /* Dropped for good: the cached INSERT fails with SQLite's sentence, and works once it is back. */
    assert_int_equal(db->eng->script(db, "DROP TABLE s;"), 0);
    assert_int_equal(lv_db_exec(db, ins, 2, p, NULL), LV_EIO);
    assert_non_null(strstr(lv_db_error(db), "no such table"));
    assert_int_equal(db->eng->script(db, "CREATE TABLE s (a TEXT, b TEXT);"), 0);
    assert_int_equal(lv_db_exec(db, ins, 2, p, NULL), 0);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM s"), 1);
    lv_db_close(db); /* with statements cached: the ASan build checks nothing leaks */
}

/* ---------- the thread ---------- */

#define N_JOBS 300

typedef struct {
    pthread_t loop_thread;
    int work_order[N_JOBS], done_order[N_JOBS];
    int n_work, n_done;
    bool done_on_loop, work_off_loop, saw_rows;
    sem_t gate; /* the first job of the cap test waits on it */
    bool gated;
    lv_db_t *db;
    int submit_in_done_rc;
} fifo_t;

typedef struct {
    fifo_t *f;
    int i;
} fifo_job_t;

static fifo_job_t jobs[LV_DB_MAX_QUEUED + 8];

static int fifo_work(lv_db_t *db, void *ud)
{
    fifo_job_t *j = ud;
    fifo_t *f = j->f;
    if (f->gated && j->i == 0)
        sem_wait(&f->gate);
    if (pthread_equal(pthread_self(), f->loop_thread))
        f->work_off_loop = false;
    if (j->i < N_JOBS)
        f->work_order[f->n_work] = j->i;
    f->n_work++;
    lv_db_rows_t r;
    if (j->i == 1 && lv_db_exec(db, "SELECT COUNT(*) FROM tenants", 0, NULL, &r) == 0) {
        f->saw_rows = lv_db_int(&r, 0, 0, 0) == 1;
        lv_db_rows_free(&r);
    }
    return j->i == 7 ? LV_EINVAL : 0;
}

static void fifo_done(int rc, void *ud)
{
    fifo_job_t *j = ud;
    fifo_t *f = j->f;
    if (!pthread_equal(pthread_self(), f->loop_thread))
        f->done_on_loop = false;
    assert_int_equal(rc, j->i == 7 ? LV_EINVAL : 0);
    if (j->i < N_JOBS)
        f->done_order[f->n_done] = j->i;
    f->n_done++;
}

static void run_until(uv_loop_t *loop, int *counter, int target)
{
    uint64_t t0 = lv_now_ms();
    while (*counter < target && lv_now_ms() - t0 < 20000)
        uv_run(loop, UV_RUN_ONCE);
}

static void test_fifo_on_loop(void **state)
{
    dbfx_t *fx = *state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    static fifo_t f;
    memset(&f, 0, sizeof(f));
    f.loop_thread = pthread_self();
    f.done_on_loop = f.work_off_loop = true;
    lv_db_t *db = dbfx_open(fx, &loop);
    assert_non_null(db);
    for (int i = 0; i < N_JOBS; i++) {
        jobs[i] = (fifo_job_t){&f, i};
        assert_int_equal(lv_db_submit(db, fifo_work, fifo_done, &jobs[i]), 0);
    }
    assert_true(lv_db_queued(db) > 0);
    run_until(&loop, &f.n_done, N_JOBS);
    assert_int_equal(f.n_done, N_JOBS);
    assert_int_equal(f.n_work, N_JOBS);
    for (int i = 0; i < N_JOBS; i++) {
        assert_int_equal(f.work_order[i], i);
        assert_int_equal(f.done_order[i], i);
    }
    assert_true(f.done_on_loop);
    assert_true(f.work_off_loop);
    assert_true(f.saw_rows);
    assert_int_equal(lv_db_queued(db), 0);
    assert_int_equal(lv_db_oldest_wait_ms(db), 0);
    lv_db_close(db);
    uv_run(&loop, UV_RUN_DEFAULT); /* the async handle's close callback frees the db */
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void done_submits(int rc, void *ud)
{
    fifo_job_t *j = ud;
    fifo_done(rc, ud);
    if (j->i == 3)
        j->f->submit_in_done_rc = lv_db_submit(j->f->db, fifo_work, fifo_done, &jobs[N_JOBS]);
}

static void test_queue_cap_and_close_drains(void **state)
{
    dbfx_t *fx = *state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    static fifo_t f;
    memset(&f, 0, sizeof(f));
    f.loop_thread = pthread_self();
    f.done_on_loop = f.work_off_loop = true;
    f.gated = true;
    sem_init(&f.gate, 0, 0);
    lv_db_t *db = dbfx_open(fx, &loop);
    assert_non_null(db);
    f.db = db;
    /* The first job holds the thread: the queue fills up to its cap, then refuses. */
    int i = 0;
    for (; i < LV_DB_MAX_QUEUED + 8; i++) {
        jobs[i] = (fifo_job_t){&f, i};
        int rc = lv_db_submit(db, fifo_work, i < N_JOBS ? done_submits : fifo_done, &jobs[i]);
        if (rc) {
            assert_int_equal(rc, LV_ELIMIT);
            break;
        }
    }
    assert_int_equal(i, LV_DB_MAX_QUEUED);
    assert_int_equal(lv_db_queued(db), LV_DB_MAX_QUEUED);
    usleep(20 * 1000);
    assert_true(lv_db_oldest_wait_ms(db) >= 10);
    /* close without turning the loop: every job still runs and its done is called, in order, from
     * lv_db_close itself; a submit from a done then is refused. */
    sem_post(&f.gate);
    lv_db_close(db);
    assert_int_equal(f.n_work, LV_DB_MAX_QUEUED);
    assert_int_equal(f.n_done, LV_DB_MAX_QUEUED);
    for (int k = 0; k < N_JOBS; k++)
        assert_int_equal(f.done_order[k], k);
    assert_int_equal(f.submit_in_done_rc, LV_ECLOSED);
    assert_true(f.done_on_loop);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sem_destroy(&f.gate);
}

/* ---------- PostgreSQL only ---------- */

typedef struct {
    const char *url;
    int rc;
    char err[512];
} opener_t;

static void *open_thread(void *arg)
{
    opener_t *o = arg;
    lv_db_t *db = NULL;
    o->rc = lv_db_open(NULL, o->url, NULL, &db, o->err, sizeof(o->err));
    lv_db_close(db);
    return NULL;
}

/* Several frontends starting at once on a fresh database: every open succeeds and each migration
 * is recorded (and its rows inserted) exactly once. */
static void test_pg_concurrent_opens(void **state)
{
    dbfx_t *fx = *state;
    enum { N = 4 };
    opener_t o[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        o[i] = (opener_t){.url = fx->url};
        assert_int_equal(pthread_create(&t[i], NULL, open_thread, &o[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        if (o[i].rc)
            fprintf(stderr, "open %d: %s\n", i, o[i].err);
        assert_int_equal(o[i].rc, 0);
    }
    lv_db_t *db = dbfx_open(fx, NULL);
    assert_non_null(db);
    assert_int_equal(lv_db_kind(db), LV_DB_POSTGRES);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM schema_migrations"), (int64_t)lv_db_migrations_count);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM meta"), 1);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM tenants"), 1);
    lv_db_close(db);
}

/* The connection dropped (the server ended it): the next statement reconnects once and works;
 * inside a transaction it fails with LV_EIO instead (that transaction is gone). */
static void kill_backend(lv_db_t *db)
{
    lv_db_rows_t r;
    assert_int_equal(lv_db_exec(db, "SELECT pg_backend_pid()", 0, NULL, &r), 0);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", lv_db_cell(&r, 0, 0));
    lv_db_rows_free(&r);
    assert_int_equal(dbfx_pg_admin(sql), 0);
    usleep(200 * 1000); /* the backend exits on its own time */
}

static void test_pg_reconnect(void **state)
{
    dbfx_t *fx = *state;
    lv_db_t *db = dbfx_open(fx, NULL);
    assert_non_null(db);
    kill_backend(db);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM tenants"), 1);
    assert_int_equal(lv_db_begin(db), 0);
    kill_backend(db);
    assert_int_equal(lv_db_exec(db, "INSERT INTO meta (k, v) VALUES ('x', 1)", 0, NULL, NULL), LV_EIO);
    assert_non_null(strstr(lv_db_error(db), "lost"));
    lv_db_rollback(db);
    assert_int_equal(count_of(db, "SELECT COUNT(*) FROM meta"), 1);
    lv_db_close(db);
}

int main(void)
{
    const struct CMUnitTest sqlite[] = {
        DBFX_TEST(test_open_sqlite_files),
        DBFX_TEST(test_exec_rows_params),
        DBFX_TEST(test_unique_violation),
        DBFX_TEST(test_row_cap),
        DBFX_TEST(test_migrations_once_and_newer_refused),
        cmocka_unit_test(test_bad_urls),
        DBFX_TEST(test_fifo_on_loop),
        DBFX_TEST(test_queue_cap_and_close_drains),
        DBFX_TEST(test_sqlite_stmt_cache_prepares_once),
        DBFX_TEST(test_sqlite_stmt_cache_eviction),
        DBFX_TEST(test_sqlite_stmt_cache_errors_not_cached),
        DBFX_TEST(test_sqlite_stmt_cache_no_open_read),
        DBFX_TEST(test_sqlite_stmt_cache_schema_changes),
    };
    const struct CMUnitTest pg[] = {
        DBFX_TEST_PG(test_exec_rows_params),
        DBFX_TEST_PG(test_unique_violation),
        DBFX_TEST_PG(test_row_cap),
        DBFX_TEST_PG(test_migrations_once_and_newer_refused),
        DBFX_TEST_PG(test_fifo_on_loop),
        DBFX_TEST_PG(test_queue_cap_and_close_drains),
        DBFX_TEST_PG(test_pg_concurrent_opens),
        DBFX_TEST_PG(test_pg_reconnect),
    };
    return dbfx_run("db", sqlite, LV_ARRAY_LEN(sqlite), pg, LV_ARRAY_LEN(pg));
}
