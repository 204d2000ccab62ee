/* lv_db.h - the accounts database (docs/internals/accounts.md): SQLite in the config dir by
 * default (WAL), PostgreSQL with --db postgres://... (cluster mode). One connection, owned by one
 * thread of its own: nothing here ever runs on the loop thread except lv_db_submit and the done
 * callbacks it schedules, so the frame path never waits on a disk or a network round trip.
 *
 * SQL is written once for both engines: parameters are $1..$N (turned into ?1..?N for SQLite),
 * types are TEXT, INTEGER and BIGINT, ids are made in C (no SERIAL / AUTOINCREMENT), upserts use
 * INSERT ... ON CONFLICT. Every value travels as text (NULL as a NULL pointer): the callers parse
 * integers with lv_db_int.
 *
 * Migrations are the files db/migrations/NNN_name.sql, embedded in the binary at build time and
 * applied in order at open, each in its own transaction, recorded in schema_migrations. */
#ifndef LV_DB_H
#define LV_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define LV_DB_URL_MAX 512
#define LV_DB_MAX_PARAMS 16
#define LV_DB_MAX_ROWS 100000 /* a query returning more fails with LV_ELIMIT: callers page */
#define LV_DB_MAX_QUEUED 4096 /* jobs waiting, running or awaiting their done: lv_db_submit's cap */

typedef struct lv_db lv_db_t;

typedef enum { LV_DB_SQLITE = 1, LV_DB_POSTGRES = 2 } lv_db_kind_t;

/* The rows of one query: rows x cols text cells (NULL for SQL NULL), owned by the result. */
typedef struct {
    size_t rows, cols;
    char **cells; /* cells[r * cols + c] */
    char *arena;  /* private */
} lv_db_rows_t;

/** Open the database named by url: "" or "sqlite:PATH" or a plain path (SQLite; "" means
 * <config_dir>/livevlm.db), "postgres://..." or "postgresql://..." (libpq connection URI).
 * Applies pending migrations and starts the database thread. Runs on the calling thread (at start,
 * or in a CLI command before any loop). loop may be NULL for a CLI command: then only lv_db_exec
 * from the calling thread may be used (no thread is started). On error a sentence (never the
 * password) goes to err. */
int lv_db_open(uv_loop_t *loop, const char *url, const char *config_dir, lv_db_t **out, char *err, size_t err_size);

/** The engine behind db. */
lv_db_kind_t lv_db_kind(const lv_db_t *db);
/** The URL without its password, for logs ("sqlite:/path" or "postgres://user@host/db"). */
const char *lv_db_url_clean(const lv_db_t *db);

/** Run one statement with params (n <= LV_DB_MAX_PARAMS; NULL entries bind SQL NULL). rows may be
 * NULL for statements whose rows are not wanted. ONLY on the database thread (inside a work
 * callback) or, for a db opened without a loop, on the thread that opened it. 0 or an LV_E* code;
 * LV_EEXIST for a unique-constraint violation; a sentence in lv_db_error(db). */
int lv_db_exec(lv_db_t *db, const char *sql, size_t n, const char *const *params, lv_db_rows_t *rows);
/** BEGIN / COMMIT / ROLLBACK on the database thread. */
int lv_db_begin(lv_db_t *db);
int lv_db_commit(lv_db_t *db);
void lv_db_rollback(lv_db_t *db);
/** The last error's sentence (database thread only). */
const char *lv_db_error(const lv_db_t *db);
/** Set that sentence (printf-style; database thread only) and return code, for
 * `return lv_db_fail(db, LV_EINVAL, "no tenant '%s'", id);` in statements built on lv_db_exec. */
int lv_db_fail(lv_db_t *db, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/** Free a result (safe on a zeroed one, and twice). */
void lv_db_rows_free(lv_db_rows_t *r);
/** Cell (r, c) or NULL. */
const char *lv_db_cell(const lv_db_rows_t *rows, size_t r, size_t c);
/** Cell (r, c) as an integer; def when NULL or not a number. */
int64_t lv_db_int(const lv_db_rows_t *rows, size_t r, size_t c, int64_t def);

/* Work off the loop. work runs on the database thread with the connection; done runs afterwards
 * on the loop thread with what work returned. Jobs run one at a time in submission order, and
 * their done callbacks run in the same order: a job submitted after another sees its writes, and a
 * reload submitted before a write is applied before that write's done (docs/internals/accounts.md
 * relies on this). */
typedef int (*lv_db_work_fn)(lv_db_t *db, void *ud);
typedef void (*lv_db_done_fn)(int rc, void *ud);

/** Queue a job (loop thread only). LV_ELIMIT when max_queued jobs wait already (the caller says
 * "busy, try again" or drops a low-value job); LV_ECLOSED after lv_db_close began. */
int lv_db_submit(lv_db_t *db, lv_db_work_fn work, lv_db_done_fn done, void *ud);
/** Jobs waiting or running (loop thread). */
size_t lv_db_queued(const lv_db_t *db);
/** Milliseconds the oldest waiting job has waited (loop thread), for /metrics. */
uint64_t lv_db_oldest_wait_ms(const lv_db_t *db);

/** Stop: finish the queued jobs (their done callbacks run on the loop while it still runs, so call
 * it before the loop's last turn), join the thread, close the connection. Safe on NULL. */
void lv_db_close(lv_db_t *db);

#endif
