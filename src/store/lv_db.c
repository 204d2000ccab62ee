/* lv_db.c - the engine-neutral half of the accounts database: URL parsing, the database thread and
 * its FIFO job queue, the uv_async hand-back of done callbacks in submission order, result rows and
 * the migrations runner. The engines are lv_db_sqlite.c and lv_db_pg.c. */
#include "lv_db.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_db_engine.h"

#define LV_DB_DONE_PER_WAKEUP 256 /* done callbacks per loop wake-up (STYLE 12) */
/* Any constant works as long as every frontend uses the same: pg_advisory_xact_lock holds it until
 * the migration's transaction ends, so frontends starting at once apply each migration once. */
#define LV_DB_MIGRATE_LOCK_SQL "SELECT pg_advisory_xact_lock(7468730001)"

int lv_db_fail(lv_db_t *db, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->err, sizeof(db->err), fmt, ap);
    va_end(ap);
    return code;
}

/* ---------- rows ---------- */

/* While building, a cell holds (offset into the arena + 1), or 0 for NULL: the arena moves as it
 * grows, so the pointers are made once at the end. */
int lv_db_rows_begin(lv_db_rows_build_t *b, lv_db_rows_t *rows, size_t cols)
{
    memset(rows, 0, sizeof(*rows));
    memset(b, 0, sizeof(*b));
    b->rows = rows;
    rows->cols = cols;
    return cols ? 0 : LV_EINVAL;
}

int lv_db_rows_cell(lv_db_rows_build_t *b, const char *s, size_t len)
{
    lv_db_rows_t *r = b->rows;
    if (b->ncells % r->cols == 0 && b->ncells / r->cols >= LV_DB_MAX_ROWS)
        return LV_ELIMIT;
    if (b->ncells == b->cells_cap) {
        size_t cap = b->cells_cap ? b->cells_cap * 2 : 16 * r->cols;
        char **c = realloc(r->cells, cap * sizeof(*c));
        if (!c)
            return LV_ENOMEM;
        r->cells = c;
        b->cells_cap = cap;
    }
    if (!s) {
        r->cells[b->ncells++] = NULL;
        goto row;
    }
    if (len > LV_DB_ROWS_MAX_BYTES || b->arena_len + len + 1 > LV_DB_ROWS_MAX_BYTES)
        return LV_ELIMIT;
    if (b->arena_len + len + 1 > b->arena_cap) {
        size_t cap = b->arena_cap ? b->arena_cap : 1024;
        while (cap < b->arena_len + len + 1)
            cap *= 2;
        char *a = realloc(r->arena, cap);
        if (!a)
            return LV_ENOMEM;
        r->arena = a;
        b->arena_cap = cap;
    }
    memcpy(r->arena + b->arena_len, s, len);
    r->arena[b->arena_len + len] = '\0';
    r->cells[b->ncells++] = (char *)(uintptr_t)(b->arena_len + 1);
    b->arena_len += len + 1;
row:
    r->rows = b->ncells / r->cols;
    return 0;
}

int lv_db_rows_end(lv_db_rows_build_t *b)
{
    lv_db_rows_t *r = b->rows;
    if (b->ncells % r->cols)
        return LV_EINVAL;
    for (size_t i = 0; i < b->ncells; i++) {
        uintptr_t off = (uintptr_t)r->cells[i];
        r->cells[i] = off ? r->arena + (off - 1) : NULL;
    }
    return 0;
}

void lv_db_rows_free(lv_db_rows_t *r)
{
    if (!r)
        return;
    free(r->cells);
    free(r->arena);
    memset(r, 0, sizeof(*r));
}

const char *lv_db_cell(const lv_db_rows_t *rows, size_t r, size_t c)
{
    if (!rows || !rows->cells || r >= rows->rows || c >= rows->cols)
        return NULL;
    return rows->cells[r * rows->cols + c];
}

int64_t lv_db_int(const lv_db_rows_t *rows, size_t r, size_t c, int64_t def)
{
    const char *s = lv_db_cell(rows, r, c);
    if (!s || !*s)
        return def;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || *end)
        return def;
    return (int64_t)v;
}

/* ---------- statements ---------- */

lv_db_kind_t lv_db_kind(const lv_db_t *db) { return db->kind; }
const char *lv_db_url_clean(const lv_db_t *db) { return db->url_clean; }
const char *lv_db_error(const lv_db_t *db) { return db->err; }

int lv_db_exec(lv_db_t *db, const char *sql, size_t n, const char *const *params, lv_db_rows_t *rows)
{
    if (rows)
        memset(rows, 0, sizeof(*rows));
    if (!sql || n > LV_DB_MAX_PARAMS || (n && !params))
        return lv_db_fail(db, LV_EINVAL, "bad statement (more than %d parameters, or none given)", LV_DB_MAX_PARAMS);
    if (strlen(sql) > LV_DB_SQL_MAX)
        return lv_db_fail(db, LV_ELIMIT, "statement longer than %u bytes", LV_DB_SQL_MAX);
    db->err[0] = '\0';
    int rc = db->eng->exec(db, sql, n, params, rows);
    if (rc && rows)
        lv_db_rows_free(rows);
    return rc;
}

int lv_db_begin(lv_db_t *db)
{
    int rc = lv_db_exec(db, db->eng->begin_sql, 0, NULL, NULL);
    if (rc == 0)
        db->in_tx = true;
    return rc;
}

int lv_db_commit(lv_db_t *db)
{
    int rc = lv_db_exec(db, "COMMIT", 0, NULL, NULL);
    if (rc)
        lv_db_rollback(db);
    db->in_tx = false;
    return rc;
}

void lv_db_rollback(lv_db_t *db)
{
    if (!db->in_tx)
        return;
    /* Keep the error that made the caller roll back, not ROLLBACK's own. */
    char keep[LV_DB_ERR_MAX];
    memcpy(keep, db->err, sizeof(keep));
    (void)lv_db_exec(db, "ROLLBACK", 0, NULL, NULL);
    memcpy(db->err, keep, sizeof(keep));
    db->in_tx = false;
}

/* ---------- migrations ---------- */

static int migrate_one(lv_db_t *db, const lv_db_migration_t *m, int known_max, char *err, size_t err_size)
{
    lv_db_rows_t r = {0};
    int rc = lv_db_begin(db);
    if (rc)
        goto out;
    if (db->kind == LV_DB_POSTGRES && (rc = lv_db_exec(db, LV_DB_MIGRATE_LOCK_SQL, 0, NULL, NULL)))
        goto out;
    rc = lv_db_exec(db,
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_ms BIGINT NOT NULL)",
                    0, NULL, NULL);
    if (rc)
        goto out;
    rc = lv_db_exec(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", 0, NULL, &r);
    if (rc)
        goto out;
    int64_t have = lv_db_int(&r, 0, 0, 0);
    lv_db_rows_free(&r);
    if (have > known_max) {
        snprintf(err, err_size,
                 "the database %s is at schema version %lld, newer than this livevlm knows (%d): "
                 "upgrade livevlm or point --db at another database",
                 db->url_clean, (long long)have, known_max);
        lv_db_rollback(db);
        return LV_EINVAL;
    }
    if (!m) {
        lv_db_rollback(db);
        return 0;
    }
    char ver[24], now[24];
    snprintf(ver, sizeof(ver), "%d", m->version);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)lv_wall_ms());
    const char *p1[] = {ver};
    rc = lv_db_exec(db, "SELECT version FROM schema_migrations WHERE version = $1", 1, p1, &r);
    if (rc)
        goto out;
    bool applied = r.rows > 0;
    lv_db_rows_free(&r);
    if (!applied) {
        if ((rc = db->eng->script(db, m->sql)))
            goto out;
        const char *p3[] = {ver, m->name, now};
        rc = lv_db_exec(db, "INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)", 3, p3,
                        NULL);
        if (rc)
            goto out;
    }
    rc = lv_db_commit(db);
out:
    lv_db_rows_free(&r);
    if (rc) {
        snprintf(err, err_size, "migration %03d_%s on %s failed: %s", m ? m->version : 0, m ? m->name : "check",
                 db->url_clean, db->err);
        lv_db_rollback(db);
    }
    return rc;
}

static int migrate(lv_db_t *db, char *err, size_t err_size)
{
    int known_max = 0;
    for (size_t i = 0; i < lv_db_migrations_count; i++)
        known_max = LV_MAX(known_max, lv_db_migrations[i].version);
    if (lv_db_migrations_count == 0)
        return migrate_one(db, NULL, 0, err, err_size);
    for (size_t i = 0; i < lv_db_migrations_count; i++) {
        int rc = migrate_one(db, &lv_db_migrations[i], known_max, err, err_size);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------- the thread ---------- */

static void *db_thread(void *arg)
{
    lv_db_t *db = arg;
    pthread_mutex_lock(&db->mu);
    for (;;) {
        while (db->run == db->tail && !db->stop)
            pthread_cond_wait(&db->cv, &db->mu);
        if (db->run == db->tail)
            break; /* stopping and drained */
        lv_db_job_t job = db->ring[db->run % LV_DB_MAX_QUEUED];
        pthread_mutex_unlock(&db->mu);
        int rc = job.work ? job.work(db, job.ud) : 0;
        if (db->in_tx) /* a job that forgot to commit must not leave the next one inside its tx */
            lv_db_rollback(db);
        pthread_mutex_lock(&db->mu);
        db->ring[db->run % LV_DB_MAX_QUEUED].rc = rc;
        db->run++;
        pthread_mutex_unlock(&db->mu);
        uv_async_send(&db->async);
        pthread_mutex_lock(&db->mu);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* Call the done callbacks of finished jobs, in order, at most max of them. true when more wait. */
static bool run_dones(lv_db_t *db, size_t max)
{
    for (size_t i = 0; i < max; i++) {
        pthread_mutex_lock(&db->mu);
        if (db->head == db->run) {
            pthread_mutex_unlock(&db->mu);
            return false;
        }
        lv_db_job_t job = db->ring[db->head % LV_DB_MAX_QUEUED];
        db->head++;
        pthread_mutex_unlock(&db->mu);
        if (job.done)
            job.done(job.rc, job.ud);
    }
    pthread_mutex_lock(&db->mu);
    bool more = db->head != db->run;
    pthread_mutex_unlock(&db->mu);
    return more;
}

static void on_async(uv_async_t *a)
{
    lv_db_t *db = a->data;
    if (db->closing)
        return; /* lv_db_close runs what is left itself */
    if (run_dones(db, LV_DB_DONE_PER_WAKEUP))
        uv_async_send(&db->async);
}

int lv_db_submit(lv_db_t *db, lv_db_work_fn work, lv_db_done_fn done, void *ud)
{
    if (!db || !db->loop)
        return LV_EINVAL;
    if (db->closing)
        return LV_ECLOSED;
    pthread_mutex_lock(&db->mu);
    if (db->tail - db->head >= LV_DB_MAX_QUEUED) {
        pthread_mutex_unlock(&db->mu);
        return LV_ELIMIT;
    }
    db->ring[db->tail % LV_DB_MAX_QUEUED] = (lv_db_job_t){work, done, ud, 0, lv_now_ms()};
    db->tail++;
    pthread_cond_signal(&db->cv);
    pthread_mutex_unlock(&db->mu);
    return 0;
}

size_t lv_db_queued(const lv_db_t *db)
{
    if (!db || !db->loop)
        return 0;
    lv_db_t *m = (lv_db_t *)db; /* the mutex is not part of the value */
    pthread_mutex_lock(&m->mu);
    size_t n = (size_t)(m->tail - m->head);
    pthread_mutex_unlock(&m->mu);
    return n;
}

uint64_t lv_db_oldest_wait_ms(const lv_db_t *db)
{
    if (!db || !db->loop)
        return 0;
    lv_db_t *m = (lv_db_t *)db;
    uint64_t now = lv_now_ms(), w = 0;
    pthread_mutex_lock(&m->mu);
    if (m->run < m->tail) {
        uint64_t t = m->ring[m->run % LV_DB_MAX_QUEUED].submit_ms;
        w = now > t ? now - t : 0;
    }
    pthread_mutex_unlock(&m->mu);
    return w;
}

/* ---------- open and close ---------- */

static void db_free(lv_db_t *db)
{
    if (db->conn && db->eng)
        db->eng->close(db);
    if (db->loop) {
        pthread_mutex_destroy(&db->mu);
        pthread_cond_destroy(&db->cv);
    }
    free(db->ring);
    free(db);
}

static void on_async_closed(uv_handle_t *h) { db_free(h->data); }

int lv_db_open(uv_loop_t *loop, const char *url, const char *config_dir, lv_db_t **out, char *err, size_t err_size)
{
    int rc;
    *out = NULL;
    if (err_size)
        err[0] = '\0';
    if (!url)
        url = "";
    if (strlen(url) >= LV_DB_URL_MAX) {
        snprintf(err, err_size, "the database URL is longer than %d bytes", LV_DB_URL_MAX - 1);
        return LV_EINVAL;
    }
    lv_db_t *db = calloc(1, sizeof(*db));
    if (!db) {
        snprintf(err, err_size, "out of memory opening the database");
        return LV_ENOMEM;
    }
    const char *colon = strstr(url, "://");
    if (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13)) {
        rc = lv_db_pg_open(db, url, err, err_size);
    } else if (colon) {
        snprintf(err, err_size, "unsupported database URL scheme '%.*s': use sqlite:PATH, a file path or postgres://...",
                 (int)LV_MIN((size_t)(colon - url), 32), url);
        rc = LV_EINVAL;
    } else {
        char path[4096];
        const char *p = !strncmp(url, "sqlite:", 7) ? url + 7 : url;
        if (!*p) {
            if (!config_dir || !*config_dir) {
                snprintf(err, err_size, "no database path: give --db sqlite:PATH or a config directory");
                rc = LV_EINVAL;
                goto out;
            }
            if ((size_t)snprintf(path, sizeof(path), "%s/livevlm.db", config_dir) >= sizeof(path)) {
                snprintf(err, err_size, "the config directory path is too long");
                rc = LV_EINVAL;
                goto out;
            }
            p = path;
        }
        rc = lv_db_sqlite_open(db, p, err, err_size);
    }
    if (rc)
        goto out;
    if ((rc = migrate(db, err, err_size)))
        goto out;
    if (loop) {
        db->ring = calloc(LV_DB_MAX_QUEUED, sizeof(*db->ring));
        if (!db->ring) {
            snprintf(err, err_size, "out of memory opening the database");
            rc = LV_ENOMEM;
            goto out;
        }
        pthread_mutex_init(&db->mu, NULL);
        pthread_cond_init(&db->cv, NULL);
        db->loop = loop;
        if (uv_async_init(loop, &db->async, on_async)) {
            snprintf(err, err_size, "cannot make the database's loop wake-up handle");
            pthread_mutex_destroy(&db->mu);
            pthread_cond_destroy(&db->cv);
            db->loop = NULL;
            rc = LV_EIO;
            goto out;
        }
        db->async.data = db;
        if (pthread_create(&db->thread, NULL, db_thread, db)) {
            snprintf(err, err_size, "cannot start the database thread");
            db->closing = true;
            uv_close((uv_handle_t *)&db->async, on_async_closed);
            *out = NULL;
            return LV_EIO;
        }
        db->thread_started = true;
    }
    *out = db;
    return 0;
out:
    db_free(db);
    return rc;
}

void lv_db_close(lv_db_t *db)
{
    if (!db)
        return;
    if (!db->loop) {
        db_free(db);
        return;
    }
    pthread_mutex_lock(&db->mu);
    db->closing = true;
    db->stop = true;
    pthread_cond_signal(&db->cv);
    pthread_mutex_unlock(&db->mu);
    if (db->thread_started)
        pthread_join(db->thread, NULL);
    /* Every job ran; their done callbacks run here, in order, on the loop thread (a submit from one
     * of them gets LV_ECLOSED). */
    while (run_dones(db, SIZE_MAX))
        ;
    if (db->conn)
        db->eng->close(db);
    db->conn = NULL;
    /* The handle is freed by its close callback: the loop must turn once more (uv_run after the
     * last handles are closed, as every livevlm exit path does). */
    uv_close((uv_handle_t *)&db->async, on_async_closed);
}
