/* test_db.c - lv_db on a real SQLite file (always) and a real PostgreSQL (scripts/pg-test.sh):
 * statements and rows, $N parameters, unique violations, migrations applied once and refused when
 * newer, bad URLs, and the thread: FIFO order of work and done, done on the loop thread, the queue
 * cap, close draining. */
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
